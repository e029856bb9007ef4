//! Per-user notes in memory, and the JSON both modes answer with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use vestibule::{Error, ErrorCode};

/// At most this many notes per user: the store is in memory, a client must not fill it.
pub const MAX_NOTES_PER_USER: usize = 100;
/// At most this many characters per note.
pub const MAX_NOTE_CHARS: usize = 1000;

/// Who the handlers act for, however the mode learned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// Vestibule's user id.
    pub id: i64,
    /// The username.
    pub username: String,
}

/// One note.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    /// Sequential id, unique within this process.
    pub id: u64,
    /// What the user wrote.
    pub text: String,
}

/// The body of `POST /api/notes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    /// The note's text (1 to [`MAX_NOTE_CHARS`] characters after trimming).
    pub text: String,
}

/// The answer of `GET /api/notes`: whose notes these are (what the backend saw) and the notes.
#[derive(Debug, Serialize)]
pub struct NoteList {
    /// The user the backend acted for.
    pub user: Owner,
    /// Their notes, oldest first.
    pub notes: Vec<Note>,
}

/// The answer of `POST /api/notes`.
#[derive(Debug, Serialize)]
pub struct Created {
    /// The user the backend acted for.
    pub user: Owner,
    /// The new note.
    pub note: Note,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    by_user: HashMap<i64, Vec<Note>>,
}

/// The notes of every user, shared by the handlers. Cloning shares the same store.
#[derive(Debug, Clone, Default)]
pub struct Notes(Arc<Mutex<Inner>>);

impl Notes {
    /// The notes of `owner`, oldest first.
    pub fn list(&self, owner: &Owner) -> NoteList {
        // A panic while holding the lock cannot leave the map half-written: keep serving.
        let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        NoteList {
            user: owner.clone(),
            notes: inner.by_user.get(&owner.id).cloned().unwrap_or_default(),
        }
    }

    /// Adds a note for `owner`.
    ///
    /// # Errors
    /// 422 `invalid_body` for an empty or too long text, or when the user has too many notes.
    pub fn create(&self, owner: &Owner, new: NewNote) -> Result<Created, Error> {
        let text = new.text.trim();
        if text.is_empty() || text.chars().count() > MAX_NOTE_CHARS {
            return Err(Error::new(
                ErrorCode::InvalidBody,
                format!("a note's text must have 1 to {MAX_NOTE_CHARS} characters"),
            )
            .with_hint("send {\"text\": \"…\"}"));
        }
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.next_id += 1;
        let note = Note {
            id: inner.next_id,
            text: text.to_owned(),
        };
        let list = inner.by_user.entry(owner.id).or_default();
        if list.len() >= MAX_NOTES_PER_USER {
            return Err(Error::new(
                ErrorCode::InvalidBody,
                format!("at most {MAX_NOTES_PER_USER} notes per user in this example"),
            )
            .with_hint("restart notes-api to start over (notes live in memory)"));
        }
        list.push(note.clone());
        Ok(Created {
            user: owner.clone(),
            note,
        })
    }
}
