//! Loading: defaults → `vestibule.toml` (with a `[profile.NAME]` overlay) → `VESTIBULE_*`
//! environment → command-line flags, merged by figment into a [`RawConfig`].

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;

use super::{ConfigError, Problem, RawConfig};

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "vestibule.toml";

impl RawConfig {
    /// Reads defaults, then the file (`path`, or `vestibule.toml` if it exists), then
    /// `VESTIBULE_*` variables, then `overrides` (command-line flags, already serialized).
    ///
    /// # Errors
    /// [`ConfigError::Load`] on a syntax error, unknown key or wrong type, and when an explicitly
    /// named file is missing.
    pub fn load(path: Option<&Path>, overrides: impl Serialize) -> Result<Self, ConfigError> {
        Self::load_profile(path, None, overrides)
    }

    /// Like [`RawConfig::load`], with the file's `[profile.NAME]` table merged over its
    /// top-level keys (before the environment and flags) when `profile` is given.
    ///
    /// # Errors
    /// As [`RawConfig::load`], and when the file has no such profile.
    pub fn load_profile(
        path: Option<&Path>,
        profile: Option<&str>,
        overrides: impl Serialize,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::Invalid(vec![Problem {
                        key: "--config".into(),
                        message: format!("{} does not exist", p.display()),
                    }]));
                }
                p.to_owned()
            }
            None => Path::new(DEFAULT_CONFIG_FILE).to_owned(),
        };
        let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
        // An explicit file must exist (checked above); the default one is optional.
        fig = if path.is_some() {
            fig.merge(Toml::file_exact(&file))
        } else {
            fig.merge(Toml::file(&file))
        };
        if let Some(name) = profile {
            let overlay = Figment::from(Toml::file(&file)).focus(&format!("profile.{name}"));
            let present = overlay
                .extract::<figment::value::Dict>()
                .is_ok_and(|d| !d.is_empty());
            if !present {
                return Err(ConfigError::Invalid(vec![Problem {
                    key: "--profile".into(),
                    message: format!(
                        "{} has no [profile.{name}] table; add one, or drop --profile / VESTIBULE_PROFILE",
                        file.display()
                    ),
                }]));
            }
            fig = fig.merge(overlay);
        }
        fig = fig
            .merge(
                Env::prefixed("VESTIBULE_")
                    .split("__")
                    .ignore(&["config", "log", "profile"]),
            )
            .merge(Serialized::globals(overrides));
        fig.extract().map_err(|e| ConfigError::Load(Box::new(e)))
    }
}

/// Turns a configuration into `vestibule dev`'s: one origin, the dev proxy's. The file's
/// production `public_url`, `spa_origins`, cookie domain, `[[upstream]]` and `static_dir` are set
/// aside; `[dev]` (and the flags, already merged into it) decide. The default cookie name gets
/// the port (`vestibule_session_3000`), so projects on other ports keep their own sessions;
/// `/auth/_debug` and the live cookie-drop detection are on.
pub fn apply_dev(raw: &mut RawConfig) {
    raw.dev.enabled = true;
    raw.listen = raw
        .dev
        .listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    raw.public_url = raw.dev.public_url.clone();
    raw.spa_origins.clear();
    raw.session.cookie_domain = None;
    raw.session.same_site = None;
    raw.upstream.clear();
    raw.static_dir = None;
    raw.auth.signup |= raw.dev.signup;
    // Development: `/auth/_debug` and the live cookie-drop warnings (doctor::live).
    raw.debug_endpoint = true;
    if raw.session.cookie_name == crate::session::DEFAULT_COOKIE_NAME
        && let Ok(addr) = raw.listen.parse::<std::net::SocketAddr>()
    {
        raw.session.cookie_name = format!("{}_{}", raw.session.cookie_name, addr.port());
    }
}

/// The schema of `[profile.NAME]`: tables of top-level keys, checked like the top level.
pub(super) fn profile_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "$ref": "#" }
    })
}
