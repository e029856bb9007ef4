//! Where messages go: SMTP through `lettre` (STARTTLS/TLS and AUTH from the URL), or standard
//! output (the `log` transport, what Django's console backend does).

use std::io::Write;

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::outbox::Claimed;
use super::section::{EmailSettings, TransportKind};

/// A built transport.
#[derive(Clone)]
pub enum Transport {
    /// SMTP.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Standard output.
    Log,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Smtp(_) => "Transport::Smtp",
            Transport::Log => "Transport::Log",
        })
    }
}

/// Why a delivery failed.
#[derive(Debug)]
pub struct SendError {
    /// What to keep as `last_error` (no credential: lettre's messages name the server's answer).
    pub message: String,
    /// The server refused for good (5xx): retrying cannot help.
    pub permanent: bool,
}

impl Transport {
    /// The transport of `settings`; `None` when email is off.
    ///
    /// # Errors
    /// The SMTP URL does not parse.
    pub fn build(settings: &EmailSettings) -> Result<Option<Self>, String> {
        Ok(match &settings.transport {
            TransportKind::Off => None,
            TransportKind::Log => Some(Self::Log),
            TransportKind::Smtp(url) => {
                let b = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url.0)
                    .map_err(|e| format!("email.smtp_url: {e}"))?;
                Some(Self::Smtp(b.timeout(Some(settings.send_timeout)).build()))
            }
        })
    }

    /// Sends one claimed message from `from`.
    ///
    /// # Errors
    /// [`SendError`].
    pub async fn send(&self, from: &Mailbox, m: &Claimed) -> Result<(), SendError> {
        match self {
            Transport::Log => {
                // The development transport: the message, links included, on standard output
                // (never in the log, which may be shipped elsewhere).
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "---- email {} to {} ----\nSubject: {}\n\n{}\n---- end of email ----",
                    m.kind, m.recipient, m.subject, m.text
                );
                Ok(())
            }
            Transport::Smtp(smtp) => {
                let to: Mailbox = m.recipient.parse().map_err(|e| SendError {
                    message: format!("recipient: {e}"),
                    permanent: true,
                })?;
                let msg = Message::builder()
                    .message_id(Some(message_id(m, from)))
                    .from(from.clone())
                    .to(to)
                    .subject(m.subject.clone())
                    .multipart(MultiPart::alternative_plain_html(
                        m.text.clone(),
                        m.html.clone(),
                    ))
                    .map_err(|e| SendError {
                        message: format!("message: {e}"),
                        permanent: true,
                    })?;
                smtp.send(msg).await.map(|_| ()).map_err(|e| SendError {
                    permanent: e.is_permanent(),
                    message: e.to_string(),
                })
            }
        }
    }
}

/// The `Message-ID` of outbox row `m`: made of the row's id and creation time (and the sender's
/// domain), so every attempt at one row carries the same id. A message sent twice — the process
/// died between the server's acceptance and the row being marked sent, and the row was sent
/// again after its lease (at least once) — reaches the receiver as two copies of one message,
/// which mail systems may fold into one.
pub fn message_id(m: &Claimed, from: &Mailbox) -> String {
    format!("<outbox.{}.{}@{}>", m.id, m.created_at, from.email.domain())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_is_the_rows_and_only_the_rows() {
        let row = |id, attempts| Claimed {
            id,
            kind: "password_reset".into(),
            recipient: "a@b.test".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
            attempts,
            created_at: 1_700_000_000,
        };
        let from: Mailbox = "Acme <noreply@acme.test>".parse().expect("mailbox");
        assert_eq!(
            message_id(&row(7, 1), &from),
            "<outbox.7.1700000000@acme.test>"
        );
        assert_eq!(message_id(&row(7, 1), &from), message_id(&row(7, 3), &from));
        assert_ne!(message_id(&row(7, 1), &from), message_id(&row(8, 1), &from));
    }
}
