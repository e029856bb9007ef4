//! The messages: a subject, a text part and an HTML part per kind, built in, each replaceable
//! by a file of `email.templates_dir`. Placeholders are `{{name}}`; values are escaped in the
//! HTML part. (Hand-written: six fixed messages with a handful of values do not need a template
//! engine, and this keeps user-controlled values from ever being read as template syntax.)

use std::collections::HashMap;
use std::path::Path;

/// Which message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A password recovery link (`{{link}}`, `{{minutes}}`).
    PasswordReset,
    /// An address verification link (`{{link}}`, `{{token}}`, `{{hours}}`).
    VerifyEmail,
    /// The password was changed or reset (`{{username}}`).
    PasswordChanged,
    /// The address changed (`{{username}}`, `{{new_email}}`), sent to the old one.
    EmailChanged,
    /// A second factor was added or removed (`{{username}}`, `{{change}}`).
    SecondFactor,
    /// A sign-in from a new browser (`{{username}}`, `{{client_ip}}`).
    NewDevice,
}

const KINDS: [Kind; 6] = [
    Kind::PasswordReset,
    Kind::VerifyEmail,
    Kind::PasswordChanged,
    Kind::EmailChanged,
    Kind::SecondFactor,
    Kind::NewDevice,
];

impl Kind {
    /// The name of the files and of the outbox's `kind` column.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PasswordReset => "password_reset",
            Kind::VerifyEmail => "verify_email",
            Kind::PasswordChanged => "password_changed",
            Kind::EmailChanged => "email_changed",
            Kind::SecondFactor => "second_factor",
            Kind::NewDevice => "new_device",
        }
    }

    /// The placeholders its message may use (besides `product` and `public_url`).
    fn vars(self) -> &'static [&'static str] {
        match self {
            Kind::PasswordReset => &["link", "minutes", "username"],
            Kind::VerifyEmail => &["link", "token", "hours", "username"],
            Kind::PasswordChanged => &["username"],
            Kind::EmailChanged => &["username", "new_email"],
            Kind::SecondFactor => &["username", "change"],
            Kind::NewDevice => &["username", "client_ip"],
        }
    }

    fn builtin(self) -> (&'static str, &'static str) {
        match self {
            Kind::PasswordReset => (
                "Reset your {{product}} password",
                "Someone (hopefully you) asked to reset the password of your {{product}} account.\n\nSet a new password here within {{minutes}} minutes:\n{{link}}\n\nThe link works once. If you did not ask, ignore this message: your password stays as it is.\n",
            ),
            Kind::VerifyEmail => (
                "Verify your address for {{product}}",
                "Confirm that this address belongs to your {{product}} account:\n{{link}}\n\nOr enter this code: {{token}}\n\nThe link works once, for {{hours}} hours. If you did not sign up, ignore this message.\n",
            ),
            Kind::PasswordChanged => (
                "Your {{product}} password was changed",
                "The password of your {{product}} account {{username}} was just changed, and every session was signed out.\n\nIf this was not you, recover your account at {{public_url}} and tell us.\n",
            ),
            Kind::EmailChanged => (
                "Your {{product}} address was changed",
                "The address of your {{product}} account {{username}} was changed to {{new_email}}. Messages no longer come here.\n\nIf this was not you, contact us at once.\n",
            ),
            Kind::SecondFactor => (
                "A second factor of your {{product}} account changed",
                "On your {{product}} account {{username}}: {{change}}.\n\nIf this was not you, recover your account at {{public_url}}.\n",
            ),
            Kind::NewDevice => (
                "New sign-in to your {{product}} account",
                "Your {{product}} account {{username}} was signed in to from a browser that had not signed in before (address {{client_ip}}).\n\nIf this was not you, change your password at {{public_url}}.\n",
            ),
        }
    }
}

/// One kind's three parts.
#[derive(Debug, Clone)]
struct Parts {
    subject: String,
    text: String,
    html: String,
}

/// The templates in force: the built-in ones, with the files of `email.templates_dir` over them.
#[derive(Debug, Clone)]
pub struct Templates(HashMap<Kind, Parts>);

impl Templates {
    /// Loads the built-in templates, then `dir`'s files, each checked: a file whose name is not
    /// `{kind}.subject.txt`, `{kind}.txt` or `{kind}.html` of a known kind (a typo would silently
    /// leave the built-in message in force), a `{{` without its `}}`, or a placeholder the message
    /// does not have is refused, so a broken override stops the start instead of sending broken
    /// mail.
    ///
    /// # Errors
    /// What is wrong, naming the file.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        if let Some(dir) = dir {
            check_names(dir)?;
        }
        let mut map = HashMap::new();
        for kind in KINDS {
            let (subject, text) = kind.builtin();
            let mut parts = Parts {
                subject: subject.to_owned(),
                text: text.to_owned(),
                html: format!(
                    "<!doctype html><html><body><p>{}</p></body></html>",
                    text.trim_end()
                        .replace("\n\n", "</p><p>")
                        .replace('\n', "<br>")
                ),
            };
            if let Some(dir) = dir {
                let read = |suffix: &str| -> Result<Option<String>, String> {
                    let path = dir.join(format!("{}.{suffix}", kind.name()));
                    let s = match std::fs::read_to_string(&path) {
                        Ok(s) => s,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
                    };
                    check_placeholders(kind, &s)
                        .map_err(|why| format!("{}: {why}", path.display()))?;
                    Ok(Some(s))
                };
                if let Some(s) = read("subject.txt")? {
                    parts.subject = s.trim().to_owned();
                }
                if let Some(s) = read("txt")? {
                    parts.text = s;
                }
                if let Some(s) = read("html")? {
                    parts.html = s;
                }
            }
            map.insert(kind, parts);
        }
        Ok(Self(map))
    }

    /// Subject, text and HTML of `kind` with `vars` filled in.
    pub fn render(&self, kind: Kind, vars: &[(&str, &str)]) -> (String, String, String) {
        let Some(p) = self.0.get(&kind) else {
            return (String::new(), String::new(), String::new());
        };
        let subject = fill(&p.subject, vars, false).replace(['\r', '\n'], " ");
        (
            subject,
            fill(&p.text, vars, false),
            fill(&p.html, vars, true),
        )
    }
}

/// Every file of `dir` is a known kind's part (dot files aside).
fn check_names(dir: &Path) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let known = KINDS.iter().any(|k| {
            ["subject.txt", "txt", "html"]
                .iter()
                .any(|suffix| name == format!("{}.{suffix}", k.name()))
        });
        if !known {
            let kinds: Vec<_> = KINDS.iter().map(|k| k.name()).collect();
            return Err(format!(
                "{}: not a template this server has; name files KIND.subject.txt, KIND.txt or KIND.html, KIND one of {}",
                dir.join(&name).display(),
                kinds.join(", ")
            ));
        }
    }
    Ok(())
}

/// Every `{{…}}` of `template` is closed and names a value of `kind`'s message.
fn check_placeholders(kind: Kind, template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("a {{ without its }}".into());
        };
        let name = after[..end].trim();
        if !["product", "public_url"].contains(&name) && !kind.vars().contains(&name) {
            let mut known = vec!["product", "public_url"];
            known.extend_from_slice(kind.vars());
            return Err(format!(
                "{{{{{name}}}}} is not a value of the {} message (it has {})",
                kind.name(),
                known.join(", ")
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

/// Replaces each `{{name}}` by its value (HTML-escaped when `html`), in one pass: a value is
/// never scanned for placeholders itself.
fn fill(template: &str, vars: &[(&str, &str)], html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match vars.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) if html => out.push_str(&escape(v)),
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once_and_escaped_in_html() {
        let vars = [("a", "<b>{{a}}</b>"), ("link", "https://x/?t=1&u=2")];
        assert_eq!(
            fill("x {{a}} {{ link }} {{zz}}", &vars, false),
            "x <b>{{a}}</b> https://x/?t=1&u=2 {{zz}}"
        );
        assert_eq!(fill("{{a}}", &vars, true), "&lt;b&gt;{{a}}&lt;/b&gt;");
        assert_eq!(fill("tail {{a", &vars, false), "tail {{a");
    }

    #[test]
    fn a_directory_overrides_one_part() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("password_reset.subject.txt"),
            "Acme: {{product}}\n",
        )
        .expect("write");
        let t = Templates::load(Some(dir.path())).expect("load");
        let (s, text, html) = t.render(Kind::PasswordReset, &[("product", "P"), ("link", "L")]);
        assert_eq!(s, "Acme: P");
        assert!(text.contains("L"), "{text}");
        assert!(html.contains("L"), "{html}");
    }

    #[test]
    fn a_broken_override_is_refused_with_its_file_named() {
        let broken = |name: &str, body: &str| {
            let dir = tempfile::tempdir().expect("dir");
            std::fs::write(dir.path().join(name), body).expect("write");
            Templates::load(Some(dir.path())).expect_err(name)
        };
        let e = broken("password_reset.txt", "go to {{lnk}}");
        assert!(
            e.contains("password_reset.txt") && e.contains("{{lnk}}"),
            "{e}"
        );
        assert!(e.contains("link, minutes, username"), "{e}");
        let e = broken("verify_email.html", "<a href=\"{{link\">");
        assert!(
            e.contains("verify_email.html") && e.contains("without its }}"),
            "{e}"
        );
        // A value another message has is not this one's.
        let e = broken("password_changed.txt", "{{link}}");
        assert!(e.contains("{{link}}"), "{e}");
        let e = broken("pasword_reset.txt", "{{link}}");
        assert!(
            e.contains("pasword_reset.txt") && e.contains("not a template"),
            "{e}"
        );
        let e = Templates::load(Some(Path::new("/nonexistent/templates"))).expect_err("dir");
        assert!(e.contains("/nonexistent/templates"), "{e}");
    }
}
