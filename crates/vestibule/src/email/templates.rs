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
    /// Loads the built-in templates, then `dir`'s files.
    ///
    /// # Errors
    /// A file that exists but cannot be read.
    pub fn load(dir: Option<&Path>) -> std::io::Result<Self> {
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
                let read = |suffix: &str| -> std::io::Result<Option<String>> {
                    match std::fs::read_to_string(dir.join(format!("{}.{suffix}", kind.name()))) {
                        Ok(s) => Ok(Some(s)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                        Err(e) => Err(e),
                    }
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
}
