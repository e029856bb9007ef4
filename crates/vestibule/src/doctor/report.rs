//! The doctor's verdict for people (colour only on a terminal) and for machines (`--json`).

use std::fmt::Write as _;

use super::rules::{Diagnosis, Family, Finding, Status};
use crate::origins::Relation;

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
    let rel = match d.relation {
        Relation::SameOrigin => "same-origin",
        Relation::SameSite => "same-site, cross-origin",
        Relation::CrossSite => "cross-site",
    };
    let _ = writeln!(
        out,
        "{} page {} → {} {} ({rel})",
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
    for (title, status) in [("Failing rules", Status::Fail), ("Warnings", Status::Warn)] {
        let list: Vec<&Finding> = d.findings.iter().filter(|f| f.status == status).collect();
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "{}", p.bold(title));
        for f in list {
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

/// Where the "(rule N)" references of the findings are explained.
pub const RULES_DOC: &str =
    "the rules cited as \"(rule N)\": docs/browser-cookie-rules.md in Vestibule's repository";

/// The machine report: the whole diagnosis as JSON.
pub fn json(d: &Diagnosis) -> serde_json::Value {
    serde_json::to_value(d).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::rules::{Credentials, Exchange, Observed, diagnose};
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
        })
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
