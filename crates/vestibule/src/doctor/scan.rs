//! `vestibule doctor --scan ./src`: finds fetch/axios/XHR calls in a SPA's JavaScript or
//! TypeScript source that may go to the API cross-origin without `credentials: 'include'` /
//! `withCredentials` — the one cause of a dropped session a server can never see (rule 1).
//!
//! A careful heuristic, not a parser: comments are blanked first (line numbers kept), each call's
//! argument text is taken up to its matching parenthesis, and a call is reported when its target
//! is cross-origin or cannot be told from the text (a variable or template base URL) and nothing
//! in the call, its axios instance, the axios defaults or the file's XHR setup turns credentials
//! on. Relative URLs (`/api/…`) are same-origin and skipped.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::origin::Origin;

/// What counts as "the API" and "the page" when judging a literal URL.
#[derive(Debug, Clone, Default)]
pub struct ScanTarget {
    /// The API's origin (`--api`): literal URLs elsewhere are not reported.
    pub api: Option<Origin>,
    /// The page's origin (`--page`): literal URLs to it are same-origin.
    pub page: Option<Origin>,
}

/// One call that may drop the session cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanHit {
    /// The file, relative to the scanned directory.
    pub file: PathBuf,
    /// 1-based line of the call.
    pub line: usize,
    /// `fetch`, `axios` or `XMLHttpRequest`.
    pub kind: &'static str,
    /// The call's first line, trimmed (at most 120 characters).
    pub code: String,
    /// Why it is reported.
    pub problem: String,
    /// The client change.
    pub fix: String,
}

/// Limits, so a scan of the wrong directory stays bounded.
const MAX_FILES: usize = 20_000;
const MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;
const EXTENSIONS: [&str; 9] = [
    "js", "jsx", "ts", "tsx", "mjs", "cjs", "mts", "vue", "svelte",
];
const SKIP_DIRS: [&str; 6] = [
    "node_modules",
    "dist",
    "build",
    "coverage",
    "target",
    "vendor",
];

/// Scans every JS/TS file under `root` (skipping `node_modules`, build output and hidden
/// directories), in path order.
///
/// # Errors
/// The I/O error when `root` cannot be read.
pub fn scan_dir(root: &Path, target: &ScanTarget) -> std::io::Result<Vec<ScanHit>> {
    let mut files = Vec::new();
    collect(root, &mut files)?;
    files.sort();
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            Some((rel, text))
        })
        .collect();
    // `axios.defaults.withCredentials = true` anywhere applies to every plain axios call.
    let axios_default = sources
        .iter()
        .any(|(_, t)| strip_comments(t).contains("defaults.withCredentials = true"));
    let mut hits = Vec::new();
    for (path, text) in &sources {
        hits.extend(scan_source(path, text, target, axios_default));
    }
    Ok(hits)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            if out.len() >= MAX_FILES {
                return Ok(());
            }
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ty = entry.file_type()?;
            if ty.is_dir() {
                if !name.starts_with('.') && !SKIP_DIRS.contains(&name.as_ref()) {
                    stack.push(entry.path());
                }
            } else if ty.is_file()
                && EXTENSIONS
                    .iter()
                    .any(|e| name.ends_with(&format!(".{e}")) && !name.ends_with(".d.ts"))
                && entry.metadata().is_ok_and(|m| m.len() <= MAX_FILE_BYTES)
            {
                out.push(entry.path());
            }
        }
    }
    Ok(())
}

/// The source with `//` and `/* */` comments replaced by spaces (newlines kept), strings and
/// template literals left intact.
pub fn strip_comments(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' && i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        match c {
            '\'' | '"' | '`' => {
                quote = Some(c);
                out.push(c);
                i += 1;
            }
            '/' if b.get(i + 1) == Some(&'/') => {
                while i < b.len() && b[i] != '\n' {
                    out.push(' ');
                    i += 1;
                }
            }
            '/' if b.get(i + 1) == Some(&'*') => {
                out.push_str("  ");
                i += 2;
                while i < b.len() && !(b[i] == '*' && b.get(i + 1) == Some(&'/')) {
                    out.push(if b[i] == '\n' { '\n' } else { ' ' });
                    i += 1;
                }
                if i < b.len() {
                    out.push_str("  ");
                    i += 2;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The text between the `(` at `open` and its matching `)` (bounded), skipping strings.
fn call_args(code: &str, open: usize) -> &str {
    let bytes = code.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let end = (open + 4000).min(bytes.len());
    let mut i = open;
    while i < end {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
        } else {
            match c {
                b'\'' | b'"' | b'`' => quote = Some(c),
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return code.get(open + 1..i).unwrap_or("");
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    code.get(open + 1..end).unwrap_or("")
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

/// Where a call's first argument points.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A relative URL: same origin.
    Relative,
    /// An absolute URL with this origin.
    Absolute(Origin),
    /// A variable or a template with an expression base: cannot tell.
    Unknown(String),
}

fn first_arg_target(args: &str) -> Target {
    let a = args.trim_start();
    let lit = |q: char| -> Option<&str> { a.strip_prefix(q)?.split(q).next() };
    let text = match a.chars().next() {
        Some(q @ ('\'' | '"' | '`')) => lit(q).unwrap_or(""),
        _ => {
            let expr: String = a
                .chars()
                .take_while(|c| *c != ',' && *c != '\n')
                .take(60)
                .collect();
            return Target::Unknown(expr.trim().to_owned());
        }
    };
    if text.starts_with("${") {
        return Target::Unknown(text.chars().take(60).collect());
    }
    if text.starts_with("http://") || text.starts_with("https://") {
        return Origin::parse_prefix(text).map_or_else(
            |_| Target::Unknown(text.chars().take(60).collect()),
            Target::Absolute,
        );
    }
    if text.starts_with("//") {
        return Target::Unknown(text.chars().take(60).collect());
    }
    Target::Relative
}

fn line_of(code: &str, pos: usize) -> usize {
    code[..pos].bytes().filter(|b| *b == b'\n').count() + 1
}

fn snippet(original: &str, line: usize) -> String {
    original
        .lines()
        .nth(line - 1)
        .unwrap_or("")
        .trim()
        .chars()
        .take(120)
        .collect()
}

fn has_include(args: &str) -> bool {
    let compact: String = args.chars().filter(|c| !c.is_whitespace()).collect();
    compact.contains("credentials:'include'")
        || compact.contains("credentials:\"include\"")
        || compact.contains("credentials:`include`")
}

fn has_with_credentials(args: &str) -> bool {
    let compact: String = args.chars().filter(|c| !c.is_whitespace()).collect();
    compact.contains("withCredentials:true")
}

/// Scans one file's text (`path` is only reported).
pub fn scan_source(
    path: &Path,
    original: &str,
    target: &ScanTarget,
    axios_default: bool,
) -> Vec<ScanHit> {
    let code = strip_comments(original);
    let bytes = code.as_bytes();
    let mut hits = Vec::new();
    let compact_file: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let axios_default = axios_default || compact_file.contains("defaults.withCredentials=true");
    // axios instances: `const api = axios.create({ … withCredentials: true … })`.
    let mut instances: Vec<(String, bool)> = Vec::new();
    for (pos, _) in code.match_indices("axios.create(") {
        let before = code[..pos].trim_end();
        let Some(before) = before.strip_suffix('=') else {
            continue;
        };
        let name: String = before
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !name.is_empty() {
            let args = call_args(&code, pos + "axios.create".len());
            let on = has_with_credentials(args) || axios_default;
            instances.push((name, on));
        }
    }
    let judge = |t: &Target| -> Option<String> {
        match t {
            Target::Relative => None,
            Target::Absolute(o) => {
                if target.page.as_ref() == Some(o) {
                    return None;
                }
                if let Some(api) = &target.api
                    && api != o
                {
                    return None;
                }
                Some(format!("calls {o} cross-origin"))
            }
            Target::Unknown(expr) => Some(format!(
                "calls `{expr}`, which may be the API on another origin"
            )),
        }
    };
    let mut push = |pos: usize, kind: &'static str, problem: String, fix: &str| {
        let line = line_of(&code, pos);
        hits.push(ScanHit {
            file: path.to_path_buf(),
            line,
            kind,
            code: snippet(original, line),
            problem,
            fix: fix.to_owned(),
        });
    };
    // fetch( — also window.fetch / globalThis.fetch / self.fetch, not prefetch( or obj.fetch(.
    for (pos, _) in code.match_indices("fetch(") {
        if pos > 0 {
            let prev = bytes[pos - 1];
            if is_ident(prev) {
                continue;
            }
            if prev == b'.' {
                let owner = code[..pos - 1]
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
                    .next()
                    .unwrap_or("");
                if !matches!(owner, "window" | "globalThis" | "self") {
                    continue;
                }
            }
        }
        // `function fetch(` / `async fetch(` definitions are not calls.
        let before = code[..pos].trim_end();
        if before.ends_with("function") || before.ends_with("async") {
            continue;
        }
        let args = call_args(&code, pos + "fetch".len());
        if has_include(args) {
            continue;
        }
        if let Some(why) = judge(&first_arg_target(args)) {
            let explicit = ["'same-origin'", "\"same-origin\"", "'omit'", "\"omit\""]
                .iter()
                .any(|m| args.contains(m));
            let how = if explicit {
                "with a credentials mode other than 'include'"
            } else {
                "without credentials: 'include'"
            };
            push(
                pos,
                "fetch",
                format!(
                    "{why} {how}: the browser neither sends the session cookie nor stores Set-Cookie, silently (rule 1)"
                ),
                "fetch(url, {credentials: 'include'})",
            );
        }
    }
    // axios(…), axios.get(…), instance.get(…).
    let methods = [
        "get", "post", "put", "patch", "delete", "head", "options", "request",
    ];
    let mut callers: Vec<(String, bool)> = vec![("axios".to_owned(), axios_default)];
    callers.extend(instances.iter().cloned());
    for (name, on) in &callers {
        if *on {
            continue;
        }
        let mut patterns = vec![format!("{name}(")];
        patterns.extend(methods.iter().map(|m| format!("{name}.{m}(")));
        for pat in &patterns {
            for (pos, _) in code.match_indices(pat.as_str()) {
                if pos > 0 && (is_ident(bytes[pos - 1]) || bytes[pos - 1] == b'.') {
                    continue;
                }
                let args = call_args(&code, pos + pat.len() - 1);
                if has_with_credentials(args) {
                    continue;
                }
                if let Some(why) = judge(&first_arg_target(args)) {
                    push(
                        pos,
                        "axios",
                        format!(
                            "{why} without withCredentials: the session cookie is neither sent nor stored (rule 1)"
                        ),
                        "axios.create({ withCredentials: true }) or axios.defaults.withCredentials = true",
                    );
                }
            }
        }
    }
    // XMLHttpRequest without withCredentials anywhere in the file.
    if !compact_file.contains(".withCredentials=true") {
        for (pos, _) in code.match_indices("new XMLHttpRequest(") {
            push(
                pos,
                "XMLHttpRequest",
                "an XMLHttpRequest without xhr.withCredentials = true: cross-origin, the session cookie is neither sent nor stored (rule 1)".to_owned(),
                "xhr.withCredentials = true before xhr.send()",
            );
        }
    }
    hits.sort_by_key(|h| h.line);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(src: &str) -> Vec<ScanHit> {
        scan_source(Path::new("a.ts"), src, &ScanTarget::default(), false)
    }

    fn lines(hits: &[ScanHit]) -> Vec<usize> {
        hits.iter().map(|h| h.line).collect()
    }

    #[test]
    fn fetch_without_include_is_reported_with_its_line() {
        let src = "const a = 1;\nfetch('http://localhost:8000/auth/me')\nfetch(`${API}/auth/login`, {method: 'POST'})\n";
        let hits = scan(src);
        assert_eq!(lines(&hits), [2, 3]);
        assert!(hits[0].problem.contains("http://localhost:8000"));
        assert_eq!(hits[0].fix, "fetch(url, {credentials: 'include'})");
    }

    #[test]
    fn fetch_with_include_relative_or_commented_is_not_reported() {
        let src = r#"
fetch('http://localhost:8000/auth/me', { credentials: "include" })
fetch(API + '/x', {
  method: 'POST',
  credentials: 'include',
})
fetch('/api/auth/me')
// fetch('http://localhost:8000/auth/me')
/* fetch('http://localhost:8000/auth/me') */
prefetch('http://x.test/')
client.fetch('http://x.test/')
async function fetch(url) {}
"#;
        assert_eq!(scan(src), vec![]);
    }

    #[test]
    fn explicit_same_origin_is_called_out() {
        let hits = scan("fetch(url, {credentials: 'same-origin'})");
        assert_eq!(hits.len(), 1);
        assert!(hits[0].problem.contains("other than 'include'"));
    }

    #[test]
    fn api_and_page_narrow_literal_targets() {
        let target = ScanTarget {
            api: Origin::parse("http://localhost:8000").ok(),
            page: Origin::parse("http://localhost:3000").ok(),
        };
        let src = "fetch('http://localhost:8000/a')\nfetch('https://cdn.other.test/x.json')\nfetch('http://localhost:3000/b')\n";
        let hits = scan_source(Path::new("a.js"), src, &target, false);
        assert_eq!(lines(&hits), [1]);
    }

    #[test]
    fn axios_calls_instances_and_defaults() {
        let src = "axios.get('http://localhost:8000/me')\nconst api = axios.create({ baseURL: B, withCredentials: true })\napi.get('/me')\nconst bare = axios.create({ baseURL: B })\nbare.post(`${B}/login`, body)\naxios.post(u, b, { withCredentials: true })\n";
        let hits = scan(src);
        assert_eq!(lines(&hits), [1, 5]);
        assert!(hits.iter().all(|h| h.kind == "axios"));
        let with_default = format!("axios.defaults.withCredentials = true\n{src}");
        // Instances inherit axios.defaults.
        assert_eq!(lines(&scan(&with_default)), Vec::<usize>::new());
    }

    #[test]
    fn xhr_needs_with_credentials() {
        assert_eq!(
            lines(&scan("const x = new XMLHttpRequest()\nx.open('GET', u)\n")),
            [1]
        );
        assert_eq!(
            scan("const x = new XMLHttpRequest()\nx.withCredentials = true\n"),
            vec![]
        );
    }

    #[test]
    fn strings_that_look_like_comments_survive() {
        let s = strip_comments("const u = 'http://a.test/x' // note\n/* a\nb */ x");
        assert!(s.contains("'http://a.test/x'"));
        assert!(!s.contains("note"));
        assert_eq!(s.lines().count(), 3);
    }

    #[test]
    fn scan_dir_skips_node_modules_and_reports_relative_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("lib")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("node_modules/x")).expect("mkdir");
        std::fs::write(src.join("lib/api.ts"), "\n\nfetch(`${BASE}/auth/me`)\n").expect("write");
        std::fs::write(src.join("ok.js"), "fetch('/auth/me')\n").expect("write");
        std::fs::write(src.join("notes.md"), "fetch('http://x.test')\n").expect("write");
        std::fs::write(dir.path().join("node_modules/x/i.js"), "fetch(u)\n").expect("write");
        let hits = scan_dir(dir.path(), &ScanTarget::default()).expect("scan");
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!(hits[0].file, Path::new("src/lib/api.ts"));
        assert_eq!(hits[0].line, 3);
    }
}
