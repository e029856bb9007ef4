//! Security audit events: structured `tracing` events under the `vestibule::audit` target, one
//! per security-relevant decision (login success and failure, logout, signup, password change,
//! session and token revocation, token creation, rate-limit trips, CSRF and CORS refusals).
//!
//! Route them anywhere with a filter on the target, e.g.
//! `VESTIBULE_LOG=info,vestibule::audit=info` and `--log-json`. They carry ids, addresses and
//! reasons — never a password, token, cookie or CSRF value (a test greps the log for each).

/// Emits an audit event: `audit!("login.failure", reason = "invalid_credentials", ...)`.
#[macro_export]
#[doc(hidden)]
macro_rules! audit {
    ($event:literal $(, $($field:tt)*)?) => {
        ::tracing::info!(target: "vestibule::audit", event = $event $(, $($field)*)?)
    };
}
