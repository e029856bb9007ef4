//! Library mode: Vestibule mounted in this process. `/auth/*` (signup, login, me, CSRF, sessions,
//! tokens) is Vestibule's own router; `/api/notes` is ours, behind Vestibule's session and CSRF
//! layers, and its handlers take [`AuthUser`] — the user of the session cookie or bearer token.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use vestibule::auth::AuthUser;
use vestibule::config::Config;
use vestibule::csrf::CsrfLayer;
use vestibule::server::{App, Json};
use vestibule::session::SessionLayer;

use crate::notes::{Created, NewNote, NoteList, Notes, Owner};

/// How often expired sessions are purged from the store.
const PURGE_EVERY: Duration = Duration::from_secs(300);

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

/// The whole application: Vestibule's router with `/api/notes` added under the same session and
/// CSRF layers. `config.listen` is not used: the caller serves the router (see [`crate::serve`]).
///
/// Vestibule builds its state (database, store, hasher, rate limits) in `App::build`, which
/// also binds a listener; it is built here on port 0 and only its state is kept.
///
/// # Errors
/// Vestibule's start-up errors (the database cannot be opened, …).
pub async fn router(config: &Config, notes: Notes) -> anyhow::Result<Router> {
    let mut build = config.clone();
    build.listen = ([127, 0, 0, 1], 0).into();
    let app = App::build(build).await?;
    let state = app.state().clone();
    drop(app);

    // `App::run_until` purges expired sessions; this process serves the router itself.
    let store = state.sessions.store().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_EVERY);
        loop {
            tick.tick().await;
            if let Err(e) = store.delete_expired().await {
                tracing::warn!(error = %e, "expired-session purge failed");
            }
        }
    });

    let api = Router::new()
        .route("/api/notes", get(list).post(create))
        .with_state(notes)
        // Inner: CSRF needs the session the outer layer loads.
        .layer(CsrfLayer::new(config.csrf.clone()))
        .layer(SessionLayer::new(state.sessions.clone()));
    Ok(vestibule::server::router(state, config).merge(api))
}
