//! The request `Cookie` header, read in one place.
//!
//! RFC 6265 §4.2.1 / §5.4: a browser sends its cookies as `name=value` pairs separated by `; `,
//! normally in one `Cookie` header; HTTP/2 may split them over several (RFC 9113 §8.2.3), so
//! every header is read, in order. Each piece is trimmed of whitespace and split at its first
//! `=`; a piece without `=` is a cookie of that name with an empty value (what browsers send
//! for a cookie set without a name, and how common servers read it), and a value wrapped in one
//! pair of `"` loses them (the `cookie-value` grammar). Parsing works on bytes: a non-UTF-8
//! piece never hides the other pairs of its header, and [`remove`] can strip an owned cookie
//! from a header that also carries bytes no `str` could hold.
//!
//! Every reader of the header goes through here — the session layer, the login device cookie,
//! the gateway stripping Vestibule's cookies before an upstream, the origin analysis and the
//! live doctor — so they agree on what a request carries.

use axum::http::{HeaderMap, HeaderValue, header};

/// Every `(name, value)` pair of every `Cookie` header, as bytes, in order.
pub(crate) fn raw_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|piece| {
            let piece = piece.trim_ascii();
            if piece.is_empty() {
                return None;
            }
            let (name, value) = match piece.iter().position(|&b| b == b'=') {
                Some(i) => (piece[..i].trim_ascii(), piece[i + 1..].trim_ascii()),
                None => (piece, &b""[..]),
            };
            let value = match value {
                [b'"', inner @ .., b'"'] => inner,
                v => v,
            };
            Some((name, value))
        })
}

/// Every `(name, value)` pair whose name and value are UTF-8, in order.
pub(crate) fn pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    raw_pairs(headers)
        .filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
}

/// The values of every cookie named `name`, in the order they were sent.
pub(crate) fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> {
    pairs(headers)
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Whether any cookie named `name` was sent (whatever its value, UTF-8 or not).
pub(crate) fn has(headers: &HeaderMap, name: &str) -> bool {
    raw_pairs(headers).any(|(n, _)| n == name.as_bytes())
}

/// Removes every cookie whose name is in `names`. The other pairs are kept, in order, in one
/// `Cookie` header (joined with `; `, as RFC 9113 §8.2.3 says to rejoin split ones); the header
/// goes when nothing is left, and is left untouched when it carried none of `names`.
pub(crate) fn remove(headers: &mut HeaderMap, names: &[&str]) {
    let owned = |n: &[u8]| names.iter().any(|o| o.as_bytes() == n);
    if !raw_pairs(headers).any(|(n, _)| owned(n)) {
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        for piece in value.as_bytes().split(|&b| b == b';') {
            let piece = piece.trim_ascii();
            let name = piece.split(|&b| b == b'=').next().unwrap_or_default();
            if piece.is_empty() || owned(name.trim_ascii()) {
                continue;
            }
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(piece);
        }
    }
    headers.remove(header::COOKIE);
    // Rebuilt from bytes of valid header values joined by "; ": always a valid value.
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_bytes(&kept)
    {
        headers.insert(header::COOKIE, v);
    }
}

/// Test support: a header map with one `Cookie` header per value (raw bytes, so tests can send
/// what browsers should not).
#[cfg(test)]
pub(crate) fn test_headers(values: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(v).expect("valid header bytes"),
        );
    }
    h
}

#[cfg(test)]
mod tests {
    use super::test_headers as headers;
    use super::*;

    #[test]
    fn pairs_of_every_header_in_order_trimmed_and_unquoted() {
        let h = headers(&[
            b"a=1;b=2 ;  c = \"3\" ;;",
            b"\xff\xfe=x; sid=v1.abc=; flag",
            b"d=\"unbalanced",
        ]);
        let got: Vec<(&str, &str)> = pairs(&h).collect();
        assert_eq!(
            got,
            vec![
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("sid", "v1.abc="),
                ("flag", ""),
                ("d", "\"unbalanced"),
            ]
        );
        assert_eq!(values(&h, "sid").collect::<Vec<_>>(), vec!["v1.abc="]);
        assert!(has(&h, "flag") && has(&h, "c") && !has(&h, "si"));
        assert!(pairs(&HeaderMap::new()).next().is_none());
    }

    #[test]
    fn two_cookies_of_one_name_are_both_seen() {
        let h = headers(&[b"sid=first; x=1", b"sid=second"]);
        assert_eq!(values(&h, "sid").collect::<Vec<_>>(), ["first", "second"]);
    }

    #[test]
    fn remove_strips_every_named_cookie_from_every_header() {
        let mut h = headers(&[
            b"a=1; sid=secret; vestibule_device=d",
            b"sid=again; b=\"2\"; \xff=raw",
            b"sid",
        ]);
        remove(&mut h, &["sid", "vestibule_device"]);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].as_bytes(), b"a=1; b=\"2\"; \xff=raw");
        // Nothing left: no header at all.
        let mut h = headers(&[b"sid=1", b" sid = 2 "]);
        remove(&mut h, &["sid"]);
        assert!(h.get(header::COOKIE).is_none());
        // Nothing owned: untouched, even split over several headers.
        let mut h = headers(&[b"a=1", b"b=2"]);
        remove(&mut h, &["sid"]);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 2);
        // A name that only starts like an owned one is not owned.
        let mut h = headers(&[b"sidx=1; xsid=2"]);
        remove(&mut h, &["sid"]);
        assert_eq!(h.get(header::COOKIE).expect("kept"), "sidx=1; xsid=2");
    }
}
