//! `vestibule doctor`: the definitive explanation of why a browser drops (or never sends) a
//! session cookie, for any server — Django, Express or Vestibule.
//!
//! - [`rules`]: pure functions over one observed exchange (page origin, API URL, the request the
//!   SPA makes, the preflight and real answers, the follow-up) → findings per browser family,
//!   each citing `browser-cookie-rules.md` ("rule N").
//! - [`probe`] (feature `doctor`): sends what Chromium would send and records the answers.
//! - [`offline`]: the same exchange derived from a Vestibule configuration, with no server.
//! - [`report`]: the verdict for people (colour on a terminal) and for machines (JSON).
//! - [`scan`]: finds fetch/axios/XHR calls in a SPA's source that omit credentials.
//! - [`live`]: the running server notices logins whose cookie never comes back.

pub mod live;
pub mod offline;
pub mod oidc;
#[cfg(feature = "doctor")]
pub mod probe;
pub mod report;
pub mod rules;
pub mod scan;
