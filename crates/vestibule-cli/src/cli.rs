//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};
use vestibule::config::LogFormat;

/// Login for single-page applications that just works.
#[derive(Debug, Parser)]
#[command(name = "vestibule", version, about)]
pub(crate) struct Cli {
    /// Configuration file (default: ./vestibule.toml if it exists). For `doctor`: the offline
    /// check's configuration.
    #[arg(long, global = true, env = "VESTIBULE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Merge the config file's `[profile.NAME]` table over its top-level keys (e.g. `dev`).
    #[arg(long, global = true, env = "VESTIBULE_PROFILE")]
    pub(crate) profile: Option<String>,
    /// SQLite database file for users and sessions (overrides `database_url`).
    #[arg(long, global = true)]
    pub(crate) database: Option<String>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub(crate) log_json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the auth server.
    Serve(ServeArgs),
    /// Development: one origin for the SPA dev server, `/auth` and the APIs (same-origin proxy).
    Dev(DevArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage personal access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// List and end users' sessions (takes effect on a running server at its next request).
    #[command(subcommand)]
    Session(SessionCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Inspect and manage the email outbox: what waits, what was given up, retry, purge.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Write a commented vestibule.toml for one layout (to --config FILE, default ./vestibule.toml).
    Init(InitArgs),
    /// Explain why a browser drops (or never sends) the session cookie: probe a server
    /// (--page + --api), check a configuration offline (--config + --page), or scan a SPA's
    /// source for calls without credentials (--scan). Exit 0: every browser family works;
    /// 1: one would fail; 2: usage error.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// How the SPA meets its API.
    #[arg(value_enum)]
    pub(crate) layout: Layout,
    /// Replace an existing file.
    #[arg(long)]
    pub(crate) force: bool,
}

/// The layouts `vestibule init` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Layout {
    /// Development: `vestibule dev` in front of the frontend dev server and the API (one origin).
    DevProxy,
    /// The SPA and the API on sibling subdomains (www. and api.): credentialed CORS.
    Subdomains,
    /// Production gateway: Vestibule serves the built SPA and guards the API (one origin).
    Gateway,
}

impl Layout {
    /// The name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layout::DevProxy => "dev-proxy",
            Layout::Subdomains => "subdomains",
            Layout::Gateway => "gateway",
        }
    }
}

/// `--help` groups the options by mode, so each says when it applies: `--page` with `--api`
/// probes a server, `--page` with `--config` (or ./vestibule.toml) checks a configuration
/// offline, `--scan` reads a SPA's source.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// The SPA page's URL or origin (e.g. http://localhost:3000). Probe and offline check; narrows
    /// --scan.
    #[arg(long, help_heading = MODES)]
    pub(crate) page: Option<String>,
    /// The API URL the page calls (e.g. http://localhost:8000/auth/login): probe this server.
    /// Without it (and without --scan), the configuration (--config or ./vestibule.toml) is
    /// checked offline. Narrows --scan.
    #[arg(long, help_heading = MODES)]
    pub(crate) api: Option<String>,
    /// Scan a SPA's JavaScript/TypeScript source for fetch/axios/XHR calls without
    /// credentials: 'include' / withCredentials (narrowed by --api and --page when given).
    #[arg(long, value_name = "DIR", help_heading = MODES)]
    pub(crate) scan: Option<PathBuf>,
    /// The SPA's fetch credentials mode: include, same-origin (fetch's default) or omit. Probe
    /// and offline check.
    #[arg(long, default_value = "include", help_heading = MODES)]
    pub(crate) credentials: String,
    /// Print the diagnosis as JSON (every mode).
    #[arg(long, help_heading = MODES)]
    pub(crate) json: bool,
    /// Method of the call (default POST with a body, else GET).
    #[arg(long, help_heading = PROBE)]
    pub(crate) method: Option<String>,
    /// A JSON body (sent with Content-Type: application/json, as a SPA would).
    #[arg(long, conflicts_with = "username", help_heading = PROBE)]
    pub(crate) json_body: Option<String>,
    /// Log in as this user: the body is {"username","password"}; needs --password-stdin.
    #[arg(long, requires = "password_stdin", help_heading = PROBE)]
    pub(crate) username: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, requires = "username", help_heading = PROBE)]
    pub(crate) password_stdin: bool,
    /// A header the SPA sends, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "K:V", help_heading = PROBE)]
    pub(crate) headers: Vec<String>,
    /// Where the SPA calls next, sent with the returned cookies (default: …/login → …/me).
    #[arg(long = "then", value_name = "URL", help_heading = PROBE)]
    pub(crate) then: Option<String>,
    /// Resolve a host name to an address instead of DNS, `host:ip` (repeatable), to test named
    /// hosts on loopback.
    #[arg(long = "resolve", value_name = "HOST:IP", help_heading = PROBE)]
    pub(crate) resolve: Vec<String>,
    /// A PEM file of certificates to trust besides the system's (a development CA).
    #[arg(long, value_name = "FILE", help_heading = PROBE)]
    pub(crate) cacert: Option<PathBuf>,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10, help_heading = PROBE)]
    pub(crate) timeout: u64,
    // The global options the doctor has no use for, accepted (a shared shell alias may pass
    // them) but hidden from `doctor --help`, which then lists only what the doctor reads.
    #[arg(long, hide = true)]
    database: Option<String>,
    #[arg(long, hide = true)]
    log_json: bool,
}

/// `doctor --help`: the options every mode reads (and the ones choosing the mode).
const MODES: &str = "Modes: --page + --api (probe), --page + --config (offline), --scan";
/// `doctor --help`: the options only the probe of a running server (`--api`) reads.
const PROBE: &str = "Probe a server (with --api only)";

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an access token for a user; the token is printed once.
    Create {
        #[command(flatten)]
        user: Subject,
        /// A name to recognise the token by.
        #[arg(long)]
        name: String,
        /// Lifetime in days (default 30).
        #[arg(long)]
        days: Option<u32>,
        /// Scopes: read, write (repeat the flag; default read).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// List a user's access tokens (never the secrets).
    List {
        #[command(flatten)]
        user: Subject,
    },
    /// Revoke an access token by id: `token revoke NAME ID`.
    Revoke {
        /// The owner's username, then the token id (from `token list`).
        #[arg(value_name = "NAME ID", num_args = 1..=2, required = true)]
        args: Vec<String>,
        /// The owner (older spelling of NAME, kept for scripts).
        #[arg(long = "user", hide = true, value_name = "NAME")]
        user_flag: Option<String>,
    },
}

/// The user a subcommand is about: positional (`user reset-password NAME`), like `user add NAME`.
/// The older `--user NAME` still works, hidden from the help, so existing scripts do not break.
#[derive(Debug, Args)]
pub(crate) struct Subject {
    /// Username.
    #[arg(
        id = "username",
        value_name = "NAME",
        required_unless_present = "user",
        conflicts_with = "user"
    )]
    username: Option<String>,
    /// Same as NAME (the older spelling, kept for scripts).
    #[arg(id = "user", long = "user", hide = true, value_name = "NAME")]
    user_flag: Option<String>,
}

impl Subject {
    /// The username, whichever spelling was used (clap makes exactly one present).
    pub(crate) fn name(&self) -> &str {
        self.username
            .as_deref()
            .or(self.user_flag.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8000).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// The URL browsers use to reach this server (decides Secure cookies and CSRF's own origin).
    #[arg(long)]
    pub(crate) public_url: Option<String>,
    /// Demo mode: the demo page at / (and /demo/*), signup enabled, and the URL to open is
    /// printed. Without it, / and /demo/* are a plain 404 (or the upstream's / static site's).
    #[arg(long)]
    pub(crate) demo: bool,
    /// Serve this built SPA (e.g. dist/) for every path no route or upstream takes.
    #[arg(long = "static", value_name = "DIR")]
    pub(crate) static_dir: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Address of the dev proxy (default 127.0.0.1:3000, or `[dev] listen`).
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// The frontend dev server, e.g. http://127.0.0.1:5173 (Vite).
    #[arg(long)]
    pub(crate) frontend: Option<String>,
    /// An API backend as PREFIX=URL, e.g. /api=http://127.0.0.1:8001 (repeatable).
    #[arg(long = "api", value_name = "PREFIX=URL")]
    pub(crate) api: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user (the password is prompted for, or read from stdin).
    Add(UserPasswordArgs),
    /// List users.
    List,
    /// Disable a user and end all their sessions.
    Disable(UserArg),
    /// Enable a disabled user.
    Enable(UserArg),
    /// Set a user's password (prompted, or from stdin) and end all their sessions.
    SetPassword(UserPasswordArgs),
    /// Print a one-time password reset token for a user (stored hashed, single use, short
    /// expiry), redeemed with POST /auth/password/reset: the administrator never sets or sees
    /// the password.
    ResetPassword(ResetPasswordArgs),
    /// Delete a user for good: their sessions end, and the account goes with everything that
    /// belongs to it (access tokens, second factors, linked provider identities, pending
    /// resets and verifications) in one transaction.
    Delete(UserArg),
}

#[derive(Debug, Args)]
pub(crate) struct ResetPasswordArgs {
    #[command(flatten)]
    pub(crate) user: Subject,
    /// How long the token works ("1h" by default, at most "7d").
    #[arg(long, default_value = "1h")]
    pub(crate) valid_for: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCommand {
    /// List a user's live sessions.
    List {
        #[command(flatten)]
        user: Subject,
    },
    /// End sessions: every session of one user (--user NAME), every logged-in session (--all),
    /// or one session by id (from `session list`). Here the subject is the sessions, so the
    /// user is a selector flag beside --all, not a positional that could be mistaken for an id.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["user", "all", "id"])))]
    Revoke {
        /// End every session of this user.
        #[arg(long)]
        user: Option<String>,
        /// End every logged-in session of every user.
        #[arg(long)]
        all: bool,
        /// The session id (hex) from `session list`.
        id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OutboxCommand {
    /// List the messages not sent yet: pending (with their next try) and given up, with their
    /// attempts and last error. Message bodies (which may hold live links) are never printed.
    List {
        /// Also list the sent messages.
        #[arg(long)]
        all: bool,
    },
    /// Put a message (by id, from `outbox list`) or every given-up one back in the queue, due
    /// now; a running server's worker sends it at its next poll.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all_failed"])))]
    Retry {
        /// The message id.
        id: Option<i64>,
        /// Every given-up message.
        #[arg(long)]
        all_failed: bool,
    },
    /// Delete old rows: sent before a time, and/or given up before a time. A time is a date
    /// (2026-01-31, or RFC 3339) or an age ("30d": that long ago). Pending messages are kept.
    #[command(group(clap::ArgGroup::new("when").required(true).multiple(true).args(["sent_before", "failed_before"])))]
    Purge {
        /// Delete the messages sent before this time.
        #[arg(long)]
        sent_before: Option<String>,
        /// Delete the messages given up before this time.
        #[arg(long)]
        failed_before: Option<String>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct UserArg {
    /// Username.
    pub(crate) username: String,
}

#[derive(Debug, Args)]
pub(crate) struct UserPasswordArgs {
    /// Username.
    pub(crate) username: String,
    /// Read the password from the first line of standard input instead of prompting.
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate the configuration and explain every problem found.
    Check,
    /// Print the JSON Schema of vestibule.toml (for editors: Taplo, Even Better TOML).
    Schema,
}

impl Cli {
    /// Flags that override configuration keys, as a partial config for the loader.
    pub(crate) fn overrides(&self) -> Value {
        let mut m = Map::new();
        if let Some(d) = &self.database {
            m.insert("database_url".into(), Value::from(d.clone()));
        }
        if self.log_json {
            m.insert(
                "log_format".into(),
                serde_json::to_value(LogFormat::Json).unwrap_or(Value::Null),
            );
        }
        if let Command::Serve(s) = &self.command {
            if let Some(l) = &s.listen {
                m.insert("listen".into(), Value::from(l.clone()));
            }
            if let Some(p) = &s.public_url {
                m.insert("public_url".into(), Value::from(p.clone()));
            }
            if s.demo {
                m.insert("demo".into(), Value::from(true));
            }
            if let Some(d) = &s.static_dir {
                m.insert("static_dir".into(), Value::from(d.clone()));
            }
        }
        if let Command::Dev(d) = &self.command {
            let mut dev = Map::new();
            dev.insert("enabled".into(), Value::from(true));
            if let Some(l) = &d.listen {
                dev.insert("listen".into(), Value::from(l.clone()));
            }
            if let Some(f) = &d.frontend {
                dev.insert("frontend".into(), Value::from(f.clone()));
            }
            if !d.api.is_empty() {
                dev.insert("api".into(), Value::from(d.api.clone()));
            }
            m.insert("dev".into(), Value::Object(dev));
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // Duplicate ids and the like panic only when a subcommand is first parsed: check all.
        super::Cli::command().debug_assert();
    }
}
