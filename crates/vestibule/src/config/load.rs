//! Loading: defaults → `vestibule.toml` (with a `[profile.NAME]` overlay) → `VESTIBULE_*`
//! environment → command-line flags, merged by figment into a [`RawConfig`].

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;

use super::schema::{Schema, suggest};
use super::{ConfigError, Problem, RawConfig};

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "vestibule.toml";

impl RawConfig {
    /// Reads defaults, then the file (`path`, or `vestibule.toml` if it exists), then
    /// `VESTIBULE_*` variables, then `overrides` (command-line flags, already serialized).
    ///
    /// The file is checked first, all at once: every syntax error, unknown key and wrong type,
    /// each with its line ([`ConfigError::Invalid`]). A `VESTIBULE_*` variable that is not a key
    /// is ignored and said in [`RawConfig::load_warnings`] (CI and tools set their own).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the file's problems, a variable of the wrong type, and when
    /// an explicitly named file is missing.
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
        // The default file is optional; figment reports an explicit one it cannot read.
        if let Ok(text) = std::fs::read_to_string(&file) {
            let problems = super::check::check_file(&text, &file.display().to_string());
            if !problems.is_empty() {
                return Err(ConfigError::Invalid(problems));
            }
        }
        let strays = stray_variables(
            Schema::new,
            std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
        );
        let mut ignored: Vec<String> = ["config", "log", "profile"].map(String::from).to_vec();
        for (name, _) in &strays {
            let key = name[ENV_PREFIX.len()..].to_ascii_lowercase();
            ignored.push(key.replace("__", "."));
            ignored.push(key);
        }
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
                Env::prefixed(ENV_PREFIX)
                    .split("__")
                    .filter(move |key| !ignored.iter().any(|i| i.as_str() == key)),
            )
            .merge(Serialized::globals(overrides));
        let mut raw: RawConfig = fig
            .extract()
            .map_err(|e| ConfigError::Invalid(figment_problems(e)))?;
        raw.load_warnings = strays.into_iter().map(|(_, warning)| warning).collect();
        Ok(raw)
    }
}

/// The prefix of the environment variables that set keys.
pub(crate) const ENV_PREFIX: &str = "VESTIBULE_";

/// The `VESTIBULE_*` names among `names` that are not configuration keys (nor `VESTIBULE_CONFIG`,
/// `VESTIBULE_PROFILE`, `VESTIBULE_LOG`), each with the warning that says so: ignored, not
/// refused, because the prefix is shared with tools (CI sets `VESTIBULE_REQUIRE_SERVICES`).
pub(crate) fn stray_variables(
    schema: impl FnOnce() -> Schema,
    names: impl Iterator<Item = String>,
) -> Vec<(String, String)> {
    // (variable, its key in lower case): the variables with the prefix, less the three the
    // command line reads itself.
    let names: Vec<(String, String)> = names
        .filter_map(|name| {
            let key = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
            (!["config", "profile", "log"].contains(&key.as_str())).then_some((name, key))
        })
        .collect();
    // The schema is generated only when there is a variable to check: generating it runs code
    // nothing else at start-up needs, and most servers start with no `VESTIBULE_*` key set.
    if names.is_empty() {
        return Vec::new();
    }
    let schema = schema();
    let env_names: Vec<String> = schema
        .leaves()
        .into_iter()
        .filter(|(key, _)| !key.contains("[]"))
        .map(|(key, _)| env_name(&key))
        .collect();
    let mut out = Vec::new();
    for (name, key) in names {
        let path: Vec<&str> = key.split("__").collect();
        if schema.at(&path).is_some() {
            continue;
        }
        let hint = suggest(&name, env_names.iter().map(String::as_str))
            .map(|near| format!("; did you mean {near}?"))
            .unwrap_or_default();
        let warning = format!(
            "{name} is not a configuration key and is ignored{hint} (variables that set keys are listed in docs/CONFIG.md)"
        );
        out.push((name, warning));
    }
    out.sort();
    out
}

/// `VESTIBULE_SESSION__IDLE_TIMEOUT` for `session.idle_timeout`.
pub(crate) fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

/// figment's errors, each as a problem named by its key and where the value came from (an
/// environment variable, a flag).
fn figment_problems(error: figment::Error) -> Vec<Problem> {
    error
        .into_iter()
        .map(|e| {
            let source = match &e.metadata {
                // figment's own interpolation loses the prefix and the `__`.
                Some(m) if m.name.contains("environment") && !e.path.is_empty() => {
                    format!(" (from {})", env_name(&e.path.join(".")))
                }
                Some(m) => format!(" (from {})", m.name),
                None => String::new(),
            };
            Problem {
                key: if e.path.is_empty() {
                    "configuration".into()
                } else {
                    e.path.join(".")
                },
                message: format!("{}{source}", e.kind),
            }
        })
        .collect()
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
