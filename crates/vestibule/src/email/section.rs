//! `[email]` as written in `vestibule.toml`, and its validation.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::problem::Problems;
use crate::settings::SecretString;

/// `[email.notify]`: which security notices users get (ASVS 5.0 V6: users are told about
/// changes to their authentication details). Each on by default.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawNotify {
    /// The password was changed or reset.
    pub password_changed: bool,
    /// The account's address was changed (the old address is told).
    pub email_changed: bool,
    /// A second factor was added or removed.
    pub second_factor: bool,
    /// A sign-in from a browser that had not signed in to the account before.
    pub new_device: bool,
}

impl Default for RawNotify {
    fn default() -> Self {
        Self {
            password_changed: true,
            email_changed: true,
            second_factor: true,
            new_device: true,
        }
    }
}

/// The notices that are on.
pub type Notify = RawNotify;

/// `[email]`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawEmail {
    /// `"smtp"`, `"log"` (print each message and its links on standard output, for development)
    /// or `"off"`. Unset: `smtp` when `email.smtp_url` is set, else `log` with `--demo`, else `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The mail server: `smtps://user:password@host:465` (TLS), `smtp://user:password@host:587?tls=required`
    /// (STARTTLS), `smtp://host:25` (plain, for a relay on the same machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_url: Option<SecretString>,
    /// The sender, `Name <address>`.
    pub from: String,
    /// Where links point: the SPA's pages `{link_base}/reset?token=…` and
    /// `{link_base}/verify?token=…`. Default: `public_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_base: Option<String>,
    /// The product name the messages use.
    pub product_name: String,
    /// A directory of templates replacing the built-in ones: `{kind}.subject.txt`, `{kind}.txt`,
    /// `{kind}.html` for the kinds `password_reset`, `verify_email`, `password_changed`,
    /// `email_changed`, `second_factor`, `new_device` (any file missing: the built-in one).
    /// Checked at start: another file name, a `{{` without `}}`, or a placeholder the message
    /// does not have (`{{product}}`, `{{public_url}}`, and per kind e.g. `{{link}}`) is a
    /// configuration error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates_dir: Option<String>,
    /// First wait before a failed message is tried again; doubled after each failure.
    pub retry_initial: String,
    /// Longest wait between two attempts.
    pub retry_max: String,
    /// After this long without success a message is given up (`email.give_up` audit event).
    pub give_up_after: String,
    /// How often the worker looks for due messages written by other instances.
    pub poll_interval: String,
    /// Bound of one SMTP delivery.
    pub send_timeout: String,
    /// Security notices.
    pub notify: RawNotify,
}

impl Default for RawEmail {
    fn default() -> Self {
        Self {
            transport: None,
            smtp_url: None,
            from: "Vestibule <noreply@localhost>".into(),
            link_base: None,
            product_name: "Vestibule".into(),
            templates_dir: None,
            retry_initial: "5s".into(),
            retry_max: "15m".into(),
            give_up_after: "2d".into(),
            poll_interval: "2s".into(),
            send_timeout: "15s".into(),
            notify: RawNotify::default(),
        }
    }
}

/// How messages leave.
#[derive(Debug, Clone)]
pub enum TransportKind {
    /// Through this SMTP URL (holds a password: never printed).
    Smtp(SecretString),
    /// Printed on standard output.
    Log,
    /// Not written at all.
    Off,
}

impl PartialEq for TransportKind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Smtp(a), Self::Smtp(b)) => a.0 == b.0,
            (Self::Log, Self::Log) | (Self::Off, Self::Off) => true,
            _ => false,
        }
    }
}

/// `[email]` validated.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// The transport.
    pub transport: TransportKind,
    /// The sender.
    pub from: lettre::message::Mailbox,
    /// Base of the links (no trailing slash).
    pub link_base: String,
    /// `public_url`, for the templates.
    pub public_url: String,
    /// Product name.
    pub product_name: String,
    /// Template overrides.
    pub templates_dir: Option<PathBuf>,
    /// First retry wait.
    pub retry_initial: Duration,
    /// Longest retry wait.
    pub retry_max: Duration,
    /// Give up after.
    pub give_up_after: Duration,
    /// Poll interval.
    pub poll_interval: Duration,
    /// One delivery's bound.
    pub send_timeout: Duration,
    /// Security notices.
    pub notify: Notify,
}

impl RawEmail {
    /// Every value checked against `public_url` and demo mode.
    pub fn validate(
        &self,
        public_url: &str,
        demo: bool,
        p: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> Option<EmailSettings> {
        let transport = match (self.transport.as_deref(), &self.smtp_url) {
            (Some("smtp") | None, Some(url)) => {
                let ok = url.0.starts_with("smtp://") || url.0.starts_with("smtps://");
                if !ok || url::Url::parse(&url.0).is_err() {
                    p.add(
                        "email.smtp_url",
                        "must be an smtp:// or smtps:// URL, like smtps://user:password@mail.acme.com:465".into(),
                    );
                }
                Some(TransportKind::Smtp(url.clone()))
            }
            (Some("smtp"), None) => {
                p.add(
                    "email.smtp_url",
                    "email.transport = \"smtp\" needs email.smtp_url".into(),
                );
                None
            }
            (Some("log"), _) => Some(TransportKind::Log),
            (Some("off"), _) => Some(TransportKind::Off),
            (None, None) if demo => Some(TransportKind::Log),
            (None, None) => Some(TransportKind::Off),
            (Some(other), _) => {
                p.add(
                    "email.transport",
                    format!("{other:?} must be smtp, log or off"),
                );
                None
            }
        };
        if transport == Some(TransportKind::Log) && !demo {
            warnings.push("email.transport = \"log\": messages, with their live links, are printed on standard output instead of sent (development only)".into());
        }
        let from = match self.from.parse::<lettre::message::Mailbox>() {
            Ok(m) => Some(m),
            Err(_) => {
                p.add(
                    "email.from",
                    format!(
                        "{:?} is not a sender like \"Acme <noreply@acme.com>\"",
                        self.from
                    ),
                );
                None
            }
        };
        let link_base = self
            .link_base
            .clone()
            .unwrap_or_else(|| public_url.to_owned())
            .trim_end_matches('/')
            .to_owned();
        if !(link_base.starts_with("https://") || link_base.starts_with("http://"))
            || url::Url::parse(&link_base).is_err()
        {
            p.add(
                "email.link_base",
                format!("{link_base:?} must be an http(s) URL, like https://www.acme.com"),
            );
        }
        let templates_dir = self.templates_dir.as_ref().map(PathBuf::from);
        if let Some(dir) = &templates_dir
            && let Err(why) = super::templates::Templates::load(Some(dir))
        {
            p.add("email.templates_dir", why);
        }
        let retry_initial = p.duration("email.retry_initial", &self.retry_initial);
        let retry_max = p.duration("email.retry_max", &self.retry_max);
        let give_up_after = p.duration("email.give_up_after", &self.give_up_after);
        let poll_interval = p.duration("email.poll_interval", &self.poll_interval);
        let send_timeout = p.duration("email.send_timeout", &self.send_timeout);
        Some(EmailSettings {
            transport: transport?,
            from: from?,
            link_base,
            public_url: public_url.trim_end_matches('/').to_owned(),
            product_name: self.product_name.clone(),
            templates_dir,
            retry_initial: retry_initial?,
            retry_max: retry_max?,
            give_up_after: give_up_after?,
            poll_interval: poll_interval?,
            send_timeout: send_timeout?,
            notify: self.notify,
        })
    }
}
