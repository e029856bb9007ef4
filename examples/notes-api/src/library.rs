//! Library mode: Vestibule mounted in this process. `/auth/*` (signup, login, me, CSRF, sessions,
//! tokens) is Vestibule's own router; `/api/notes` is ours, behind Vestibule's session and CSRF
//! layers, and its handlers take [`AuthUser`] — the user of the session cookie or bearer token.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use vestibule::auth::AuthUser;
use vestibule::config::Config;
use vestibule::server::{App, Json};

use crate::notes::{Created, NewNote, NoteList, Notes, Owner};

fn owner(user: &AuthUser) -> Owner {
    Owner {
        id: user.id,
        username: user.username.clone(),
    }
}

/// `GET /api/notes`: the logged-in user's notes (401 `not_authenticated` otherwise, from the
/// extractor).
async fn list(user: AuthUser, State(notes): State<Notes>) -> axum::Json<NoteList> {
    axum::Json(notes.list(&owner(&user)))
}

/// `POST /api/notes`: adds a note. With the cookie transport the CSRF layer has already checked
/// the origin and `X-CSRF-Token`; a bearer token needs neither.
async fn create(
    user: AuthUser,
    State(notes): State<Notes>,
    Json(new): Json<NewNote>,
) -> Result<(StatusCode, axum::Json<Created>), vestibule::Error> {
    let created = notes.create(&owner(&user), new)?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// The whole application: Vestibule with `/api/notes` mounted inside its layers (request ids,
/// limits, CORS, sessions, CSRF, metrics), so the handlers take [`AuthUser`] like Vestibule's
/// own. [`App::run_until_stopped`] serves it, purges expired sessions and watches the database.
///
/// # Errors
/// Vestibule's start-up errors (the database cannot be opened, the address is taken, …).
pub async fn app(config: Config, notes: Notes) -> anyhow::Result<App> {
    let api = Router::new()
        .route("/api/notes", get(list).post(create))
        .with_state(notes);
    Ok(App::build_with_routes(config, api).await?)
}
