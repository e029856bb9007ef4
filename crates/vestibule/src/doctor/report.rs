//! The doctor's verdict for people (colour only on a terminal) and for machines (`--json`).
//!
//! The report leads with the root cause ([`causes`]): one line, "what is wrong → what to do",
//! with the failures that only follow from it folded under it. An unlisted SPA origin makes a
//! Vestibule server refuse the preflight, the CORS headers and (CSRF) the login: five FAILs,
//! one fix. Read top-down, the first FAIL used to be the preflight's, with generic advice.

use std::fmt::Write as _;

use serde::Serialize;

use super::rules::{Diagnosis, Family, Finding, ServerKind, Status};
use crate::origins::Relation;

/// A root cause: one finding that explains others, which are folded under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    /// The rule of the finding that is the cause.
    pub rule: &'static str,
    /// One line: what is wrong → what to do (Vestibule's config keys for a Vestibule server).
    pub line: String,
    /// The rules of the findings that follow from it (folded under it in the report).
    pub follows: Vec<&'static str>,
    /// Index of the cause's finding in [`Diagnosis::findings`].
    #[serde(skip)]
    pub finding: usize,
    /// Indexes of the folded findings.
    #[serde(skip)]
    pub folded: Vec<usize>,
}

/// Rules whose failures (and the no-cookie warning) follow when the page's origin is refused:
/// the browser stops at the preflight's origin, the login is refused by CSRF, so nothing else
/// of the preflight is read and no cookie is set.
const AFTER_ORIGIN: &[&str] = &[
    "preflight-status",
    "preflight-allow-origin",
    "preflight-allow-credentials",
    "preflight-allow-methods",
    "preflight-allow-headers",
    "cors-allow-origin",
    "cors-allow-credentials",
    "response-status",
    "set-cookie",
    "followup",
];

/// The root causes of a diagnosis, most fundamental first, each claiming the failures and
/// warnings that follow from it (a finding is folded under one cause at most). Findings no
/// cause claims are reported on their own.
pub fn causes(d: &Diagnosis) -> Vec<Cause> {
    let open = |f: &Finding| f.status != Status::Pass;
    let mut claimed = vec![false; d.findings.len()];
    let mut out = Vec::new();
    let find = |rule: &str| {
        d.findings
            .iter()
            .position(|f| f.rule == rule && f.status == Status::Fail)
    };
    let mut add = |finding: usize,
                   line: String,
                   follows: &dyn Fn(&Finding) -> bool,
                   claimed: &mut Vec<bool>| {
        claimed[finding] = true;
        let folded: Vec<usize> = d
            .findings
            .iter()
            .enumerate()
            .filter(|&(i, f)| !claimed[i] && open(f) && follows(f))
            .map(|(i, _)| i)
            .collect();
        for &i in &folded {
            claimed[i] = true;
        }
        out.push(Cause {
            rule: d.findings[finding].rule,
            line,
            follows: folded.iter().map(|&i| d.findings[i].rule).collect(),
            finding,
            folded,
        });
    };
    let vestibule = d.server == ServerKind::Vestibule;
    // The browser blocks the request outright: everything else follows.
    if let Some(i) = find("mixed-content") {
        add(
            i,
            format!(
                "the https page {} cannot call the plain-http API {}: the browser blocks it → serve the API over https",
                d.page, d.api
            ),
            &|_| true,
            &mut claimed,
        );
    }
    // The page's origin is refused, by CORS or by the CSRF origin check.
    let csrf_refused = d.findings.iter().position(|f| {
        f.rule == "response-status"
            && f.status == Status::Fail
            && f.summary.contains("csrf_origin_untrusted")
    });
    let cors_refused = find("preflight-allow-origin").or_else(|| find("cors-allow-origin"));
    if let Some(i) = cors_refused.or(csrf_refused).filter(|&i| !claimed[i]) {
        let line = if vestibule {
            format!(
                "{} is not in spa_origins → add it to spa_origins (VESTIBULE_SPA_ORIGINS)",
                d.page
            )
        } else if cors_refused.is_some() {
            format!(
                "the API does not allow the page's origin {} → allow it, with credentials, in the API's CORS settings and trust it for writes (Django: CORS_ALLOWED_ORIGINS with CORS_ALLOW_CREDENTIALS, and CSRF_TRUSTED_ORIGINS; Express: cors({{origin, credentials: true}}))",
                d.page
            )
        } else {
            format!(
                "the API refuses writes from {} (its CSRF origin check) → trust the page's origin for writes (Django: CSRF_TRUSTED_ORIGINS)",
                d.page
            )
        };
        add(
            i,
            line,
            &|f| {
                AFTER_ORIGIN.contains(&f.rule)
                    && (f.rule != "response-status" || f.summary.contains("403"))
            },
            &mut claimed,
        );
    }
    // A refused preflight stops the request; its other headers are beside the point.
    if let Some(i) = find("preflight-status").filter(|&i| !claimed[i]) {
        let line = format!(
            "the preflight (OPTIONS) is refused → answer OPTIONS with 2xx before authentication and CSRF{}",
            if vestibule {
                ""
            } else {
                " (Django: django-cors-headers' CorsMiddleware above CsrfViewMiddleware)"
            }
        );
        add(
            i,
            line,
            &|f| f.rule.starts_with("preflight-") || f.rule == "set-cookie",
            &mut claimed,
        );
    }
    // Without credentials: 'include' the browser neither stores nor sends the cookie.
    if let Some(i) = find("credentials-mode").filter(|&i| !claimed[i]) {
        add(
            i,
            format!(
                "the SPA calls {} without credentials: 'include' → pass credentials: 'include' on every call (axios/XHR: withCredentials: true)",
                d.api
            ),
            &|_| false,
            &mut claimed,
        );
    }
    out
}

/// ANSI colour, or nothing when the output is not a terminal (or `NO_COLOR` is set).
#[derive(Debug, Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn status(self, s: Status) -> String {
        match s {
            Status::Pass => self.wrap("32", "ok  "),
            Status::Warn => self.wrap("33", "warn"),
            Status::Fail => self.wrap("1;31", "FAIL"),
        }
    }

    fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }
}

fn families(f: &Finding) -> String {
    if f.families.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = f.families.iter().map(|fam| short(*fam)).collect();
        format!(" [{}]", names.join(", "))
    }
}

fn short(f: Family) -> &'static str {
    match f {
        Family::ChromiumBlocked3pc => "Chromium, 3PC blocked",
        Family::ChromiumAllowed3pc => "Chromium, 3PC allowed",
        Family::Firefox => "Firefox",
        Family::Safari => "Safari",
    }
}

/// The human report: header, one verdict line per family, then failures and warnings with
/// evidence, fix and architecture, then the rules that passed (ids only).
pub fn human(d: &Diagnosis, color: bool) -> String {
    let p = Paint(color);
    let mut out = String::new();
    let causes = causes(d);
    // The first line is the root cause, when there is one.
    for c in &causes {
        let _ = writeln!(out, "{} {}", p.wrap("1;31", "cause:"), c.line);
    }
    let folded: Vec<usize> = causes
        .iter()
        .flat_map(|c| c.folded.iter().copied().chain([c.finding]))
        .collect();
    let rel = match d.relation {
        Relation::SameOrigin => "same-origin",
        Relation::SameSite => "same-site, cross-origin",
        Relation::CrossSite => "cross-site",
    };
    let server = match d.server {
        ServerKind::Vestibule => ", a Vestibule server",
        ServerKind::Unknown => "",
    };
    let _ = writeln!(
        out,
        "{} page {} → {} {} ({rel}{server})",
        p.bold("vestibule doctor:"),
        d.page,
        d.method,
        d.api
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", p.bold("Verdict"));
    for v in &d.verdicts {
        let word = if v.status == Status::Fail {
            p.wrap("1;31", "session FAILS")
        } else {
            p.wrap("32", "session works")
        };
        let _ = writeln!(out, "  {word}  {}", v.family.label());
    }
    if !causes.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", p.bold("Root cause"));
        for c in &causes {
            finding(&mut out, p, &d.findings[c.finding]);
            if let Some((_, fix)) = c.line.split_once(" → ") {
                let _ = writeln!(out, "       do: {fix}");
            }
            if !c.follows.is_empty() {
                let _ = writeln!(
                    out,
                    "       follows from it (folded; --json has them): {}",
                    c.follows.join(", ")
                );
            }
        }
    }
    for (title, status) in [("Failing rules", Status::Fail), ("Warnings", Status::Warn)] {
        let list: Vec<&Finding> = d
            .findings
            .iter()
            .enumerate()
            .filter(|&(i, f)| f.status == status && !folded.contains(&i))
            .map(|(_, f)| f)
            .collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", p.bold(title));
        for f in list {
            finding(&mut out, p, f);
        }
    }
    let mut passed: Vec<&str> = d
        .findings
        .iter()
        .filter(|f| f.status == Status::Pass)
        .map(|f| f.rule)
        .collect();
    passed.sort_unstable();
    passed.dedup();
    if !passed.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "{} {}", p.status(Status::Pass), passed.join(", "));
    }
    // "(rule N)" in the findings: the numbered rules, each with the test that shows it.
    let _ = writeln!(out);
    let _ = writeln!(out, "{RULES_DOC}");
    out
}

/// One finding: status, rule, families and summary, then evidence, fix and architecture.
fn finding(out: &mut String, p: Paint, f: &Finding) {
    let _ = writeln!(
        out,
        "  {} {}{}: {}",
        p.status(f.status),
        f.rule,
        families(f),
        f.summary
    );
    if let Some(e) = &f.evidence {
        let _ = writeln!(out, "       evidence: {e}");
    }
    if let Some(x) = &f.fix {
        let _ = writeln!(out, "       fix: {x}");
    }
    if let Some(a) = &f.architecture {
        let _ = writeln!(out, "       simpler: {a}");
    }
}

/// Where the "(rule N)" references of the findings are explained.
pub const RULES_DOC: &str =
    "the rules cited as \"(rule N)\": docs/browser-cookie-rules.md in Vestibule's repository";

/// The machine report: the whole diagnosis as JSON.
pub fn json(d: &Diagnosis) -> serde_json::Value {
    let mut v = serde_json::to_value(d).unwrap_or(serde_json::Value::Null);
    if let Some(map) = v.as_object_mut() {
        map.insert(
            "causes".into(),
            serde_json::to_value(causes(d)).unwrap_or_default(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::rules::{Credentials, Exchange, Observed, ServerKind, diagnose};
    use crate::origin::Origin;

    fn failing() -> Diagnosis {
        let api = url::Url::parse("http://localhost:8000/auth/login").expect("url");
        diagnose(&Exchange {
            page: Origin::parse("http://localhost:3000").expect("origin"),
            api: api.clone(),
            method: "GET".into(),
            request_headers: vec![],
            credentials: Credentials::SameOrigin,
            preflight: None,
            response: Some(Observed {
                status: 200,
                headers: vec![("set-cookie".into(), "sid=secret; Path=/".into())],
                error_body: None,
            }),
            later: api,
            followup: None,
            server: ServerKind::Unknown,
            login_given: false,
        })
    }

    /// What a Vestibule server with `spa_origins = ["http://localhost:3000"]` answers a page on
    /// port 4000 (the offline check's exchange, as observed).
    fn unlisted(server: ServerKind) -> Diagnosis {
        let api = url::Url::parse("http://localhost:8000/auth/login").expect("url");
        let mut refused = Observed {
            status: 403,
            headers: vec![("vary".into(), "origin".into())],
            error_body: Some(r#"{"code":"csrf_origin_untrusted","message":"cross-origin write refused","hint":"add the SPA's origin to spa_origins"}"#.into()),
        };
        let preflight = refused.clone();
        refused
            .headers
            .push(("content-type".into(), "application/json".into()));
        diagnose(&Exchange {
            page: Origin::parse("http://localhost:4000").expect("origin"),
            api: api.clone(),
            method: "POST".into(),
            request_headers: vec![("content-type".into(), "application/json".into())],
            credentials: Credentials::Include,
            preflight: Some(preflight),
            response: Some(refused),
            later: api,
            followup: None,
            server,
            login_given: true,
        })
    }

    #[test]
    fn an_unlisted_origin_is_one_cause_with_the_failures_folded_under_it() {
        let d = unlisted(ServerKind::Vestibule);
        let fails = d
            .findings
            .iter()
            .filter(|f| f.status == Status::Fail)
            .count();
        assert!(fails >= 4, "the raw diagnosis has the cascade: {d:#?}");
        let c = causes(&d);
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(
            c[0].line,
            "http://localhost:4000 is not in spa_origins → add it to spa_origins (VESTIBULE_SPA_ORIGINS)"
        );
        for rule in [
            "preflight-status",
            "cors-allow-origin",
            "response-status",
            "set-cookie",
        ] {
            assert!(c[0].follows.contains(&rule), "{rule} folded: {c:#?}");
        }
        let text = human(&d, false);
        assert!(
            text.starts_with(
                "cause: http://localhost:4000 is not in spa_origins → add it to spa_origins"
            ),
            "{text}"
        );
        assert!(
            !text.contains("Failing rules"),
            "everything is folded: {text}"
        );
        assert!(
            !text.contains("Django"),
            "a Vestibule server gets its own keys: {text}"
        );
        assert!(text.contains("follows from it"), "{text}");
        assert_eq!(json(&d)["causes"][0]["rule"], "preflight-allow-origin");
        assert_eq!(json(&d)["server"], "vestibule");
    }

    #[test]
    fn another_server_gets_the_frameworks_settings_in_its_cause() {
        let c = causes(&unlisted(ServerKind::Unknown));
        assert_eq!(c.len(), 1);
        assert!(c[0].line.contains("CORS_ALLOWED_ORIGINS"), "{}", c[0].line);
        assert!(!c[0].line.contains("spa_origins"), "{}", c[0].line);
    }

    #[test]
    fn independent_failures_are_not_folded() {
        // No CORS headers and no credentials: two causes, neither follows from the other.
        let d = failing();
        let c = causes(&d);
        let rules: Vec<&str> = c.iter().map(|c| c.rule).collect();
        assert_eq!(rules, ["cors-allow-origin", "credentials-mode"], "{c:#?}");
        assert!(c.iter().all(|c| c.follows.is_empty()), "{c:#?}");
        assert!(c[1].line.contains("credentials: 'include'"));
        // Both causes lead, one line each, before the header.
        let text = human(&d, false);
        let first: Vec<&str> = text.lines().take(3).collect();
        assert!(
            first[0].starts_with("cause: ") && first[1].starts_with("cause: "),
            "{text}"
        );
        assert!(first[2].starts_with("vestibule doctor: "), "{text}");
    }

    #[test]
    fn plain_output_has_verdicts_evidence_and_fix_without_escapes_or_secrets() {
        let text = human(&failing(), false);
        assert!(!text.contains('\x1b'));
        assert!(text.contains("session FAILS  Chromium, third-party cookies blocked"));
        assert!(text.contains("FAIL credentials-mode"));
        assert!(
            text.contains(
                "fix: fetch('http://localhost:8000/auth/login', {credentials: 'include'})"
            )
        );
        assert!(!text.contains("secret"));
    }

    #[test]
    fn every_rule_the_findings_cite_is_in_the_rules_document() {
        assert!(human(&failing(), false).contains("docs/browser-cookie-rules.md"));
        let doc = include_str!("../../../../docs/browser-cookie-rules.md");
        // Every file whose messages cite a rule.
        let sources = [
            include_str!("rules.rs"),
            include_str!("live.rs"),
            include_str!("scan.rs"),
            include_str!("../origins/pattern.rs"),
            include_str!("../origins/site.rs"),
            include_str!("../origins/policy.rs"),
            include_str!("../config.rs"),
        ]
        .concat();
        let mut cited: Vec<u32> = sources
            .split("(rule ")
            .skip(1)
            .filter_map(|rest| rest.split(')').next()?.parse().ok())
            .collect();
        cited.sort_unstable();
        cited.dedup();
        assert!(cited.len() >= 10, "the findings cite the rules: {cited:?}");
        for n in cited {
            assert!(
                doc.lines().any(|l| l.starts_with(&format!("| {n} |"))),
                "rule {n} is cited but has no row in docs/browser-cookie-rules.md"
            );
        }
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(human(&failing(), true).contains("\x1b[1;31m"));
    }

    #[test]
    fn json_carries_verdicts_and_findings() {
        let v = json(&failing());
        assert_eq!(v["verdicts"][0]["family"], "chromium-3pc-blocked");
        assert_eq!(v["verdicts"][0]["status"], "fail");
        assert_eq!(v["findings"][0]["rule"], "credentials-mode");
        assert_eq!(v["relation"], "same-site");
    }
}
