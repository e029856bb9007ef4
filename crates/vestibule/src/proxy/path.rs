//! The one path normalisation every routing decision of the gateway uses (upstream prefixes,
//! `[dev]` routes, the static site, Vestibule's own `/auth` space).
//!
//! The gateway authorises by path prefix, and a backend decodes the path before it routes:
//! `/%61dmin/panel` is `/admin/panel` to every backend, so a prefix compared on the raw bytes
//! would put it under `/`'s policy instead of `/admin`'s. Prefixes are therefore compared on the
//! RFC 3986 §6.2.2 normal form (percent-encoded unreserved characters decoded, the remaining
//! escapes upper-cased), and that form is what the upstream receives. Encoded `/` and `\`
//! (which some backends decode into a separator) stay encoded, and the caller refuses them when
//! decoding them would move the request to another route ([`NormalPath::separators_decoded`]).

use std::borrow::Cow;

/// A request path in RFC 3986 §6.2.2 normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NormalPath<'a>(Cow<'a, str>);

/// The path has a `%` that does not start a two-digit hex escape: no two parsers agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadEscape;

impl<'a> NormalPath<'a> {
    /// Normalises `path`: `%XX` of an unreserved character (ALPHA, DIGIT, `-._~`) is decoded,
    /// every other escape is upper-cased; the raw path is borrowed when it is normal already.
    pub(crate) fn new(path: &'a str) -> Result<Self, BadEscape> {
        if !path.contains('%') {
            return Ok(Self(Cow::Borrowed(path)));
        }
        let b = path.as_bytes();
        let mut out = String::with_capacity(path.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'%' {
                // Never splits a UTF-8 sequence: `%` is ASCII, so the run up to it is whole.
                let next = path[i..].find('%').map_or(b.len(), |n| i + n);
                out.push_str(&path[i..next]);
                i = next;
                continue;
            }
            let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
            let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2))) else {
                return Err(BadEscape);
            };
            let byte = u8::try_from(h * 16 + l).map_err(|_| BadEscape)?;
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push(upper_hex(byte >> 4));
                out.push(upper_hex(byte & 0xf));
            }
            i += 3;
        }
        Ok(Self(if out == path {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(out)
        }))
    }

    /// The normal form.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether normalising changed the path (then the upstream gets the normal form).
    pub(crate) fn changed(&self) -> bool {
        matches!(self.0, Cow::Owned(_))
    }

    /// The path with encoded `/` and `\` turned into `/`, as a decoding backend reads it, when
    /// it has any: the route chosen for it must be the route chosen for the path itself.
    pub(crate) fn separators_decoded(&self) -> Option<String> {
        let p = self.as_str();
        // Most paths have no `%` at all: one byte scan instead of two substring searches, whose
        // set-up alone cost ≈ 550 instructions per proxied request (callgrind, `proxy`).
        if !p.as_bytes().contains(&b'%') {
            return None;
        }
        (p.contains("%2F") || p.contains("%5C"))
            .then(|| p.replace("%2F", "/").replace("%5C", "/").replace('\\', "/"))
    }
}

fn upper_hex(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0xf)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_escapes_are_decoded_and_others_upper_cased() {
        for (raw, normal) in [
            ("/api/notes", "/api/notes"),
            ("/%61dmin/panel", "/admin/panel"),
            ("/%41%2d%2E%5f%7E", "/A-._~"),
            ("/admin%2fpanel", "/admin%2Fpanel"),
            ("/admin%5cpanel", "/admin%5Cpanel"),
            ("/a%20b", "/a%20b"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/é/%7e", "/é/~"),
        ] {
            let n = NormalPath::new(raw).expect(raw);
            assert_eq!(n.as_str(), normal, "{raw}");
            assert_eq!(n.changed(), raw != normal, "{raw}");
        }
        for bad in ["/a%", "/a%2", "/a%zz", "/%g1"] {
            assert_eq!(NormalPath::new(bad), Err(BadEscape), "{bad}");
        }
    }

    #[test]
    fn encoded_separators_are_shown_decoded() {
        let n = NormalPath::new("/admin%2fpanel").expect("normal");
        assert_eq!(n.separators_decoded().as_deref(), Some("/admin/panel"));
        let n = NormalPath::new("/admin%5Cpanel").expect("normal");
        assert_eq!(n.separators_decoded().as_deref(), Some("/admin/panel"));
        let n = NormalPath::new("/admin/panel").expect("normal");
        assert_eq!(n.separators_decoded(), None);
        // Escapes, none of them a separator.
        let n = NormalPath::new("/a%20b/%C3%A9").expect("normal");
        assert_eq!(n.separators_decoded(), None);
        let n = NormalPath::new("/a%20b\\c%2F").expect("normal");
        assert_eq!(n.separators_decoded().as_deref(), Some("/a%20b/c/"));
    }
}
