//! The notes API of Vestibule's examples: each user keeps a short list of notes.
//!
//! The same handlers run in two ways, which are the two ways to use Vestibule from a Rust
//! backend:
//!
//! - [`library`]: Vestibule is mounted in-process (its `/auth` router, session and CSRF layers),
//!   and the notes handlers take [`vestibule::auth::AuthUser`] — like Django REST framework's
//!   `request.user`.
//! - [`upstream`]: the backend knows nothing of sessions; a `vestibule serve` gateway in front of
//!   it authenticates each request and passes the identity in `X-Vestibule-User-Id` /
//!   `X-Vestibule-Username` (optionally with a signed assertion, checked by [`assertion`]).

pub mod assertion;
pub mod library;
pub mod notes;
pub mod upstream;

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Serves `router` on `listener` until Ctrl-C / SIGTERM, with the peer address available to
/// extractors (Vestibule's rate limits key on it).
///
/// # Errors
/// The I/O error that stopped the server.
pub async fn serve(listener: TcpListener, router: axum::Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(vestibule::server::shutdown_signal())
    .await
}
