//! A short label for a session's `User-Agent` ("Chrome 156 on Linux"), for the sessions list.
//!
//! Hand-written on purpose, for the major families only: the label is a hint that helps a user
//! tell their devices apart, never a security decision, so a full parser (the uap-core regex
//! database, several hundred kilobytes of patterns to keep current, or a crate that bundles one)
//! would cost more than the answer is worth. What it does not recognise it leaves to the raw
//! string, which the sessions list returns beside the label.

/// Longest label returned: a User-Agent is the client's own text, and a list cell is small.
const MAX_LABEL: usize = 64;

/// `"{browser} {major}[ on {os}]"`, or for a non-browser client its first product
/// (`"curl 8.5.0"`); `None` for an empty or unreadable string.
pub(crate) fn label(ua: &str) -> Option<String> {
    let ua = ua.trim();
    if ua.is_empty() || !ua.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return None;
    }
    let label = match browser(ua) {
        Some((name, major)) => {
            let mut out = match major {
                Some(v) => format!("{name} {v}"),
                None => name.to_owned(),
            };
            if let Some(os) = os(ua) {
                out.push_str(" on ");
                out.push_str(os);
            }
            out
        }
        None => first_product(ua)?,
    };
    Some(label.chars().take(MAX_LABEL).collect())
}

/// The browser family and major version. Order matters: Chromium-based browsers also say
/// `Chrome/` and `Safari/`, and Chrome says `Safari/`, so the most specific token wins.
fn browser(ua: &str) -> Option<(&'static str, Option<&str>)> {
    const FAMILIES: &[(&str, &[&str])] = &[
        ("Edge", &["Edg/", "EdgA/", "EdgiOS/", "Edge/"]),
        ("Opera", &["OPR/", "OPT/"]),
        ("Samsung Internet", &["SamsungBrowser/"]),
        ("Vivaldi", &["Vivaldi/"]),
        ("Firefox", &["Firefox/", "FxiOS/"]),
        ("Headless Chrome", &["HeadlessChrome/"]),
        ("Chromium", &["Chromium/"]),
        ("Chrome", &["Chrome/", "CriOS/"]),
    ];
    for (name, tokens) in FAMILIES {
        if let Some(v) = tokens.iter().find_map(|t| after(ua, t)) {
            return Some((name, major(v)));
        }
    }
    // Safari puts its own version in `Version/`; `Safari/` carries the WebKit build.
    if ua.contains("Safari/") && ua.contains("AppleWebKit/") {
        return Some(("Safari", after(ua, "Version/").and_then(major)));
    }
    None
}

/// The operating system named in the comment. iOS and Android before macOS and Linux: an
/// iPhone says "like Mac OS X", an Android phone says "Linux".
fn os(ua: &str) -> Option<&'static str> {
    const SYSTEMS: &[(&str, &[&str])] = &[
        ("Windows", &["Windows NT", "Windows "]),
        ("iOS", &["iPhone", "iPad", "iPod"]),
        ("Android", &["Android"]),
        ("ChromeOS", &["CrOS "]),
        ("macOS", &["Mac OS X", "Macintosh"]),
        ("Linux", &["Linux", "X11"]),
    ];
    SYSTEMS
        .iter()
        .find(|(_, needles)| needles.iter().any(|n| ua.contains(n)))
        .map(|(name, _)| *name)
}

/// The text after `token` (which ends in `/`) up to the next space, if `token` starts a product
/// (at the start or after a space, so `Edg/` does not match inside `XEdg/`).
fn after<'a>(ua: &'a str, token: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = ua[from..].find(token) {
        let at = from + i;
        if at == 0 || ua.as_bytes()[at - 1] == b' ' {
            let rest = &ua[at + token.len()..];
            return Some(rest.split(' ').next().unwrap_or(rest));
        }
        from = at + token.len();
    }
    None
}

/// The leading digits of a version (`"156.0.7258.5"` → `"156"`); `None` without any.
fn major(version: &str) -> Option<&str> {
    let end = version
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(version.len());
    (end > 0).then(|| &version[..end])
}

/// `"name version"` of a client that is not a browser (`curl/8.5.0` → `curl 8.5.0`), or the
/// name alone.
fn first_product(ua: &str) -> Option<String> {
    let product = ua.split(' ').next()?;
    if product.starts_with("Mozilla/") {
        return None;
    }
    Some(match product.split_once('/') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => {
            format!("{name} {version}")
        }
        Some((name, _)) if !name.is_empty() => name.to_owned(),
        Some(_) => return None,
        None => product.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::label;

    #[test]
    fn major_browsers_and_systems() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
                "Chrome 156 on Linux",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.7258.5 Safari/537.36",
                "Headless Chrome 156 on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                "Edge 131 on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                "Safari 18 on macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                "Safari 18 on iOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
                "Chrome 131 on iOS",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                "Firefox 133 on Linux",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
                "Samsung Internet 26 on Android",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                "Chrome 131 on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
                "Opera 115 on Windows",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                "Chrome 131 on ChromeOS",
            ),
        ];
        for (ua, want) in cases {
            assert_eq!(label(ua).as_deref(), Some(want), "{ua}");
        }
    }

    #[test]
    fn other_clients_get_their_first_product() {
        assert_eq!(label("curl/8.5.0").as_deref(), Some("curl 8.5.0"));
        assert_eq!(label("node").as_deref(), Some("node"));
        assert_eq!(
            label("python-requests/2.32.3").as_deref(),
            Some("python-requests 2.32.3")
        );
        assert_eq!(label("Mozilla/5.0 (compatible; unknown)"), None);
    }

    #[test]
    fn empty_odd_and_long_strings() {
        assert_eq!(label(""), None);
        assert_eq!(label("   "), None);
        assert_eq!(label("/1.0"), None);
        assert_eq!(label("bad\u{1b}[31m/1"), None, "control characters");
        assert_eq!(label("Ünïcode/1"), None);
        // A token must start a product: "XChrome/" is not Chrome.
        assert_eq!(
            label("Mozilla/5.0 (X11; Linux x86_64) XChrome/99").as_deref(),
            None
        );
        let long = format!("{}/1", "a".repeat(500));
        assert_eq!(label(&long).map(|l| l.len()), Some(64));
        // A version without digits keeps the name alone.
        assert_eq!(
            label("Mozilla/5.0 (Windows NT 10.0) Firefox/x").as_deref(),
            Some("Firefox on Windows")
        );
    }
}
