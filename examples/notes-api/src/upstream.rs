//! Upstream mode: behind a `vestibule serve` gateway (`[[upstream]] prefix = "/api"`). The
//! gateway authenticates each request (session cookie + CSRF, or bearer token), strips every
//! `X-Vestibule-*` header a client sent, and sets `X-Vestibule-User-Id` / `X-Vestibule-Username`;
//! this backend only reads them. It must be reachable from the gateway only (loopback or a
//! private network) — or verify the signed assertion too ([`crate::assertion`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::get;
use serde::Serialize;
use vestibule::server::Json;
use vestibule::{Error, ErrorCode};

use crate::assertion::Verifier;
use crate::notes::{Created, NewNote, NoteList, Notes, Owner};

/// The headers the gateway sets.
pub const USER_ID: &str = "x-vestibule-user-id";
/// See [`USER_ID`].
pub const USERNAME: &str = "x-vestibule-username";
/// The signed assertion (with `[[upstream]] identity_assertion = true`).
pub const ASSERTION: &str = "x-vestibule-assertion";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct UpstreamState {
    /// The notes.
    pub notes: Notes,
    /// Set: every request must carry a valid assertion matching the identity headers.
    pub verifier: Option<Arc<Verifier>>,
}

impl FromRef<UpstreamState> for Notes {
    fn from_ref(s: &UpstreamState) -> Self {
        s.notes.clone()
    }
}

fn refused(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::NotAuthenticated, message).with_hint(
        "this backend runs behind `vestibule serve` ([[upstream]]): call it through the gateway",
    )
}

/// The user the gateway vouches for.
#[derive(Debug, Clone)]
pub struct GatewayUser(pub Owner);

impl FromRequestParts<UpstreamState> for GatewayUser {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &UpstreamState,
    ) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let id = header(USER_ID)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| refused("no X-Vestibule-User-Id from the gateway"))?;
        let username = header(USERNAME)
            .ok_or_else(|| refused("no X-Vestibule-Username from the gateway"))?
            .to_owned();
        if let Some(verifier) = &state.verifier {
            let jwt = header(ASSERTION).ok_or_else(|| refused("no X-Vestibule-Assertion"))?;
            let claims = verifier.verify(jwt).await.map_err(|why| {
                tracing::warn!(%why, "identity assertion refused");
                refused(format!("the identity assertion is not valid: {why}"))
            })?;
            if claims.sub != id.to_string() || claims.preferred_username != username {
                return Err(refused(
                    "the identity assertion names another user than the identity headers",
                ));
            }
        }
        Ok(Self(Owner { id, username }))
    }
}

/// `GET /api/notes`.
async fn list(GatewayUser(owner): GatewayUser, State(notes): State<Notes>) -> axum::Json<NoteList> {
    axum::Json(notes.list(&owner))
}

/// `POST /api/notes`. No CSRF check here: the gateway enforces it on every proxied unsafe request.
async fn create(
    GatewayUser(owner): GatewayUser,
    State(notes): State<Notes>,
    Json(new): Json<NewNote>,
) -> Result<(StatusCode, axum::Json<Created>), Error> {
    Ok((StatusCode::CREATED, axum::Json(notes.create(&owner, new)?)))
}

/// The answer of `GET /api/whoami`.
#[derive(Debug, Serialize)]
pub struct WhoAmI {
    /// The user the gateway vouched for.
    pub user: Owner,
    /// The names of every `X-Vestibule-*` header that reached this backend (values are not
    /// echoed: the assertion is a credential): shows that what a client sent was stripped.
    pub vestibule_headers: Vec<String>,
}

/// `GET /api/whoami`: who this backend thinks is calling, and which identity headers it got.
async fn whoami(
    GatewayUser(user): GatewayUser,
    headers: axum::http::HeaderMap,
) -> axum::Json<WhoAmI> {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(k, _)| k.as_str().to_owned())
        .filter(|k| k.starts_with("x-vestibule") || k.starts_with("x_vestibule"))
        .collect();
    names.sort();
    axum::Json(WhoAmI {
        user,
        vestibule_headers: names,
    })
}

/// The upstream application (paths as the gateway forwards them: `/api/...`, no prefix stripping).
pub fn router(state: UpstreamState) -> Router {
    Router::new()
        .route("/api/notes", get(list).post(create))
        .route("/api/whoami", get(whoami))
        .fallback(|| async { Error::new(ErrorCode::NotFound, "no such route in notes-api") })
        .with_state(state)
}
