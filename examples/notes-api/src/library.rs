//! Library mode: Vestibule mounted in this process. `/auth/*` (signup, login, me, CSRF, sessions,
//! tokens) is Vestibule's own router; `/api/notes` and `/api/login` are ours, behind Vestibule's
//! session and CSRF layers. The notes handlers take [`AuthUser`] — the user of the session cookie
//! or bearer token; the login handler logs users in through Vestibule's login flow ([`Login`]).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use vestibule::auth::{AuthUser, Login, LoginStep, LoginTransport, Password};
use vestibule::config::Config;
use vestibule::server::{App, Json};
use vestibule::session::Session;

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

/// `{"username", "password", "transport"?}`.
#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: Password,
    #[serde(default)]
    transport: LoginTransport,
}

/// `POST /api/login`: the application's own login route, on Vestibule's login flow — the same
/// rate limits, password check, second factor (a pending state that `/auth/mfa/*` completes),
/// session rotation and cap, device cookie, audit events and answers as `POST /auth/login`.
async fn login(
    login: Login,
    session: Session,
    Json(form): Json<LoginForm>,
) -> Result<LoginStep, vestibule::Error> {
    login
        .password(&session, &form.username, &form.password, form.transport)
        .await
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
        .with_state(notes)
        .route("/api/login", post(login));
    Ok(App::build_with_routes(config, api).await?)
}
