//! Security notices (ASVS 5.0 V6: users are told about changes to their authentication details),
//! and the one rule that writes them: **a change and its notice commit in one transaction**.
//!
//! The notice is rendered before the change's transaction ([`Mailer::notice`]: whether
//! `[email.notify]` keeps it, to which address, with which text), handed to the store function
//! that makes the change as a [`Notice`], and written by that function's transaction through
//! [`commit_with!`](crate::email::outbox::commit_with): the row of the outbox commits with the
//! change or not at all. So a committed password change always has its notice queued, even if the
//! process stops right after the commit, and a change that rolls back leaves no notice behind.
//! Every store function that changes an authentication detail takes a `&Notice` argument: a new
//! caller cannot forget to decide about it (an administrator's change passes [`Notice::none`]).

use super::Mailer;
use super::outbox::Outgoing;
use super::templates::Kind;

/// What happened to the account.
#[derive(Debug, Clone)]
pub enum SecurityNotice {
    /// Password changed or reset.
    PasswordChanged,
    /// A second factor added (`true`) or removed (`false`), with its method.
    SecondFactor(bool, &'static str),
    /// A sign-in from a browser that had not signed in to the account before.
    NewDevice(std::net::IpAddr),
    /// The address changed from `old` to `new`: the old address is told.
    EmailChanged {
        /// The address until now (the notice goes there).
        old: String,
        /// The new address.
        new: String,
    },
}

/// A rendered notice, or none (email off, this notice turned off, no verified address): what a
/// change's transaction writes into the outbox with the change.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Notice(Option<Outgoing>);

impl Notice {
    /// No notice goes with this change.
    pub fn none() -> Self {
        Self(None)
    }

    /// The message to write, if any.
    pub fn message(&self) -> Option<&Outgoing> {
        self.0.as_ref()
    }

    /// Whether there is a message.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

impl Mailer {
    /// The notice of `what` for the account `username` whose verified address is
    /// `verified_email` (an unverified address may be someone else's: it gets nothing; the
    /// address-change notice goes to the old address, verified until now), when
    /// `[email.notify]` keeps this one.
    pub fn notice(
        &self,
        what: &SecurityNotice,
        username: &str,
        verified_email: Option<&str>,
    ) -> Notice {
        let on = &self.settings.notify;
        let wanted = match what {
            SecurityNotice::PasswordChanged => on.password_changed,
            SecurityNotice::SecondFactor(..) => on.second_factor,
            SecurityNotice::NewDevice(_) => on.new_device,
            SecurityNotice::EmailChanged { .. } => on.email_changed,
        };
        if !wanted || !self.enabled() {
            return Notice::none();
        }
        let to = match what {
            SecurityNotice::EmailChanged { old, .. } => Some(old.as_str()),
            _ => verified_email,
        };
        let Some(to) = to else {
            return Notice::none();
        };
        let message = match what {
            SecurityNotice::PasswordChanged => {
                self.render(Kind::PasswordChanged, to, &[("username", username)])
            }
            SecurityNotice::SecondFactor(added, method) => {
                let change = format!(
                    "a second factor ({method}) was {}",
                    if *added { "added" } else { "removed" }
                );
                self.render(
                    Kind::SecondFactor,
                    to,
                    &[("username", username), ("change", &change)],
                )
            }
            SecurityNotice::EmailChanged { new, .. } => self.render(
                Kind::EmailChanged,
                to,
                &[("username", username), ("new_email", new)],
            ),
            SecurityNotice::NewDevice(addr) => {
                let ip = addr.to_string();
                self.render(
                    Kind::NewDevice,
                    to,
                    &[("username", username), ("client_ip", &ip)],
                )
            }
        };
        Notice(Some(message))
    }
}
