//! Email: the `[email]` section, addresses, the messages (built-in text + HTML templates,
//! overridable from a directory), the durable outbox and the worker that drains it over a
//! transport (SMTP through `lettre`, or the development `log` transport that prints).
//!
//! **Delivery that loses nothing.** A message is a row of the `outbox` table, written by the
//! caller in the same transaction as the change that causes it ([`enqueue!`]; a security
//! notice through [`notice`]'s one rule), so a change
//! never commits without its message and a message never leaves for a change that rolled back.
//! The [`worker`] claims due rows with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so several
//! instances share the table without sending one row twice; SQLite: its single writer), sends
//! them, and either marks them sent (wiping the bodies, which may hold a live link), or keeps
//! the error and retries with exponential backoff, or gives up (a permanent refusal, or
//! `email.give_up_after` elapsed) with an `email.give_up` audit event, keeping the message for
//! `vestibule outbox retry` until `vestibule outbox purge`. A crash between the
//! SMTP answer and the mark re-sends that one message after the lease: at least once, exactly
//! once without a crash; every attempt at a row carries the same `Message-ID`
//! ([`message_id`]), so a receiver can tell the copies are one message. One row has one recipient, so a refused address stops nobody else's.

mod address;
pub mod notice;
pub(crate) mod outbox;
mod section;
mod templates;
mod transport;
pub mod worker;

pub use address::EmailAddress;
pub use notice::{Notice, SecurityNotice};
pub use outbox::{Claimed, Outbox, OutboxRow, Outgoing, RetryWhich};
pub use section::{EmailSettings, Notify, RawEmail, RawNotify, TransportKind};
pub use templates::{Kind, Templates};
pub use transport::{Transport, message_id};

use std::sync::Arc;

/// What the routes need to write a message: the settings, the templates, and a wake-up for
/// this instance's worker (other instances find the row at their next poll).
#[derive(Debug)]
pub struct Mailer {
    /// `[email]`, validated.
    pub settings: EmailSettings,
    /// The loaded templates.
    pub templates: Templates,
    /// Woken after a commit that enqueued a message.
    pub wake: Arc<tokio::sync::Notify>,
}

impl Mailer {
    /// Whether messages are written at all (`email.transport` is not `off`).
    pub fn enabled(&self) -> bool {
        self.settings.transport != TransportKind::Off
    }

    /// `{link_base}{path}?token={token}`: the SPA's page that takes the token.
    pub fn link(&self, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.settings.link_base)
    }

    /// The message `kind` for `to`, with `vars` (`{{name}}` in the templates; `product` and
    /// `public_url` are always there).
    pub fn render(&self, kind: Kind, to: &str, vars: &[(&str, &str)]) -> Outgoing {
        let mut all: Vec<(&str, &str)> = vec![
            ("product", self.settings.product_name.as_str()),
            ("public_url", self.settings.public_url.as_str()),
        ];
        all.extend_from_slice(vars);
        let (subject, text, html) = self.templates.render(kind, &all);
        Outgoing {
            kind: kind.name(),
            recipient: to.to_owned(),
            subject,
            text,
            html,
        }
    }

    /// Wakes this instance's worker (call after the commit).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}
