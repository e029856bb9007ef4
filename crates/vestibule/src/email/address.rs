//! An email address as Vestibule accepts it.

use std::fmt;

use crate::error::{Error, ErrorCode};

/// A valid address: what `lettre` parses as an address (RFC 5321 `local@domain`), restricted to
/// printable ASCII and at most 254 characters, so that ASCII lowercase is the exact
/// case-insensitive form (`lower(email)`, a unique index in both databases) — the rule that
/// already holds for usernames (`auth::Username`). Internationalised addresses are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Validates `s` (surrounding spaces are ignored).
    ///
    /// # Errors
    /// 422 `invalid_email`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let bad = || {
            Error::new(
                ErrorCode::InvalidEmail,
                "this is not an email address this server accepts",
            )
            .with_hint("send local@domain in ASCII, at most 254 characters")
        };
        if s.is_empty() || s.len() > 254 || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err(bad());
        }
        let parsed: lettre::Address = s.parse().map_err(|_| bad())?;
        if parsed.domain().is_empty() || parsed.user().is_empty() {
            return Err(bad());
        }
        Ok(Self(s.to_owned()))
    }

    /// The canonical form (ASCII lowercase): lookups and rate-limit keys use it.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_validated() {
        for ok in ["a@b.c", "Alice.Smith+tag@Example.COM", "x@localhost"] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a", "@b.c", "a@", "a b@c.d", "ä@b.c", "a@b\n.c", "a\0@b.c", "<a@b.c>",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            EmailAddress::parse("Alice@Example.COM")
                .expect("valid")
                .canonical(),
            "alice@example.com"
        );
    }
}
