//! The WebAuthn relying party, derived from the origins policy: the RP ID is the host of
//! `public_url`, the allowed origins are `public_url` plus the exact SPA / trusted origins on that
//! host or below it (a passkey is bound to its RP ID, so a page elsewhere could never use it).

use std::sync::Arc;

use webauthn_rs::prelude::Url;
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::origins::OriginsPolicy;

/// What `webauthn_for` decided, for logs and `/auth/passkeys` errors.
#[derive(Debug, Clone)]
pub struct WebauthnSettings {
    /// The relying party, or `None` with the reason passkeys are off.
    pub webauthn: Result<Arc<Webauthn>, String>,
}

/// Why passkeys are off with `session.store = "cookie"`. A WebAuthn ceremony keeps its
/// challenge in the session between start and finish; in a sealed cookie, finishing only takes
/// the challenge out of the *re-sealed* cookie, and a copy of the start cookie still holds it, so
/// one assertion (of a passkey whose counter stays 0, as synced passkeys' do) could be accepted
/// again and again, and one registration start finished twice. Keeping used challenges
/// server-side would be per instance (or need a table); passkeys stay off instead, and say why.
pub const PASSKEYS_NEED_A_SERVER_SIDE_STORE: &str = "passkeys are off with session.store = \"cookie\": a WebAuthn challenge kept in a sealed cookie could be replayed from an earlier copy of the cookie; use a server-side session store (sqlite, database, redis://…) for passkeys";

/// The relying party for this server's origins. Passkeys are off (with the reason) when the
/// public URL's host is an IP address: browsers refuse IP addresses as RP IDs (use
/// `http://localhost:PORT` in development).
pub fn webauthn_for(policy: &OriginsPolicy) -> WebauthnSettings {
    let own = policy.public_origin();
    let webauthn = (|| {
        let host = own.host().trim_start_matches('[').trim_end_matches(']');
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Err(format!(
                "passkeys need a domain name in public_url (browsers refuse the IP address {host} as a WebAuthn RP ID); use http://localhost:PORT in development"
            ));
        }
        let origin = Url::parse(&own.to_string()).map_err(|e| e.to_string())?;
        let mut b = WebauthnBuilder::new(host, &origin)
            .map_err(|e| format!("public_url cannot be a WebAuthn origin: {e}"))?
            .rp_name("Vestibule");
        for p in &policy.csrf_trusted_origins() {
            if let Some(o) = p.as_origin()
                && (o.host() == host || o.host().ends_with(&format!(".{host}")))
                && let Ok(u) = Url::parse(&o.to_string())
            {
                b = b.append_allowed_origin(&u);
            }
        }
        b.build()
            .map(Arc::new)
            .map_err(|e| format!("WebAuthn setup failed: {e}"))
    })();
    WebauthnSettings { webauthn }
}
