//! # Vestibule
//!
//! Django-style session authentication for single-page applications, as axum middleware and as
//! a ready server: server-side sessions behind an id-only cookie, users with Argon2id passwords,
//! login/logout/me, session-id rotation at login, and CSRF protection for cookie-authenticated
//! writes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Router, routing::{get, post}};
//! use vestibule::auth::AuthUser;
//! use vestibule::csrf::CsrfLayer;
//! use vestibule::origin::Origin;
//! use vestibule::origins::{CookieOverrides, OriginsPolicy};
//! use vestibule::problem::ConfigError;
//! use vestibule::session::{Session, SessionConfig, SessionLayer, SessionManager, stores::MemoryStore};
//!
//! async fn hello(user: AuthUser) -> String {
//!     format!("hello {}", user.username)
//! }
//!
//! async fn visit(session: Session) -> Result<String, vestibule::Error> {
//!     let n: u64 = session.get("visits").await?.unwrap_or(0) + 1;
//!     session.insert("visits", n).await?;
//!     Ok(format!("visit {n}"))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // One policy for the origins: who may write with the cookie, and how the cookie looks.
//! let public = Origin::parse("http://localhost:8000")?;
//! let (policy, _warnings) = OriginsPolicy::new(public, vec![], vec![], CookieOverrides::default())
//!     .map_err(ConfigError::Invalid)?;
//! let config = SessionConfig { cookie: policy.session_cookie(), ..SessionConfig::default() };
//! let sessions = SessionManager::new(Arc::new(MemoryStore::default()), config);
//! let app = Router::new()
//!     .route("/hello", get(hello))
//!     .route("/visit", post(visit))
//!     .layer(CsrfLayer::new(Arc::new(policy))) // inner: needs the session
//!     .layer(SessionLayer::new(sessions)); // outer
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! The `vestibule` binary wraps [`server::App`] around the same pieces, with the embedded SQLite
//! store, the `/auth` API and a demo page. See `docs/ARCHITECTURE.md` for the module map.

#[macro_use]
mod audit;
pub mod auth;
pub mod client_ip;
pub mod config;
mod cookie_header;
pub mod cors;
pub mod csrf;
pub mod db;
pub mod doctor;
pub mod email;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod origin;
pub mod origins;
pub mod problem;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod session;
pub mod settings;
pub mod token;

pub use error::{Error, ErrorCode, Result};
