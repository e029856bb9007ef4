//! `[cors]` as written in `vestibule.toml`, and its validation into a [`CorsConfig`] without the
//! allowed origins: those are `spa_origins`, which the origins policy turns into the allowlist.

use std::time::Duration;

use axum::http::{HeaderName, Method};
use serde::{Deserialize, Serialize};

use super::{
    CorsConfig, DEFAULT_ALLOW_HEADERS, DEFAULT_EXPOSE_HEADERS, DEFAULT_MAX_AGE, DEFAULT_METHODS,
};
use crate::problem::Problems;
use crate::settings::{RawDuration, list_or_csv};

/// `[cors]`. The allowed origins are not here: they are `spa_origins`, shared with CSRF.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawCors {
    /// `Access-Control-Allow-Credentials: true`, needed for the session cookie.
    pub allow_credentials: bool,
    /// Methods a preflight may ask for.
    #[serde(deserialize_with = "list_or_csv")]
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for.
    #[serde(deserialize_with = "list_or_csv")]
    pub allow_headers: Vec<String>,
    /// Response headers the page may read.
    #[serde(deserialize_with = "list_or_csv")]
    pub expose_headers: Vec<String>,
    /// How long browsers may cache a preflight answer ("10m", or seconds).
    pub max_age: RawDuration,
    /// Path prefixes CORS applies to.
    #[serde(deserialize_with = "list_or_csv")]
    pub paths: Vec<String>,
    /// Answer Private Network Access preflights.
    pub allow_private_network: bool,
}

impl Default for RawCors {
    fn default() -> Self {
        Self {
            allow_credentials: true,
            allow_methods: DEFAULT_METHODS.map(str::to_owned).to_vec(),
            allow_headers: DEFAULT_ALLOW_HEADERS.map(str::to_owned).to_vec(),
            expose_headers: DEFAULT_EXPOSE_HEADERS.map(str::to_owned).to_vec(),
            max_age: RawDuration::Seconds(DEFAULT_MAX_AGE.as_secs()),
            paths: vec!["/".into()],
            allow_private_network: false,
        }
    }
}

impl RawCors {
    /// `[cors]` without the origins (those come from the policy): every bad entry is a problem,
    /// settings that work but break browsers' calls are warnings.
    pub fn validate(&self, p: &mut Problems, warnings: &mut Vec<String>) -> Option<CorsConfig> {
        let raw = self;
        let before = p.len();
        let mut methods = Vec::new();
        for (i, m) in raw.allow_methods.iter().enumerate() {
            match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
                Ok(m) => methods.push(m),
                Err(_) => p.add(
                    &format!("cors.allow_methods[{i}]"),
                    format!("{m:?} is not an HTTP method"),
                ),
            }
        }
        let mut names = |key: &str, list: &[String]| {
            let mut out = Vec::new();
            for (i, h) in list.iter().enumerate() {
                match HeaderName::from_bytes(h.trim().to_ascii_lowercase().as_bytes()) {
                    Ok(h) => out.push(h),
                    Err(_) => p.add(
                        &format!("{key}[{i}]"),
                        format!("{h:?} is not a header name"),
                    ),
                }
            }
            out
        };
        let allow_headers = names("cors.allow_headers", &raw.allow_headers);
        let expose_headers = names("cors.expose_headers", &raw.expose_headers);
        let max_age = match &raw.max_age {
            RawDuration::Seconds(s) => Some(Duration::from_secs(*s)),
            RawDuration::Text(t) => match humantime::parse_duration(t) {
                Ok(d) => Some(d),
                Err(_) => {
                    p.add(
                        "cors.max_age",
                        format!("{t:?} is not a duration like \"10m\" or a number of seconds"),
                    );
                    None
                }
            },
        };
        if max_age.is_some_and(|d| d > Duration::from_secs(7200)) {
            warnings.push("cors.max_age is over 2 hours: Chromium caps preflight caching at 2 hours (Firefox at 24 hours)".into());
        }
        if !raw.allow_credentials {
            warnings.push("cors.allow_credentials = false: browsers hide every cookie-authenticated answer from cross-origin pages and fail their preflights (rule 3); only bearer tokens work cross-origin".into());
        }
        for needed in ["content-type", "x-csrf-token"] {
            if !allow_headers
                .iter()
                .any(|h| h.as_str() == needed || h.as_str() == "*")
            {
                warnings.push(format!(
                    "cors.allow_headers lacks {needed}: cross-origin calls that send it fail their preflight and are never sent (rule 3)"
                ));
            }
        }
        let config = CorsConfig {
            allow_credentials: raw.allow_credentials,
            allow_methods: methods,
            allow_headers,
            expose_headers,
            max_age: max_age.unwrap_or(DEFAULT_MAX_AGE),
            paths: raw.paths.iter().map(|p| p.trim().to_owned()).collect(),
            allow_private_network: raw.allow_private_network,
        };
        if p.len() == before
            && let Err(mut found) = config.validate()
        {
            p.0.append(&mut found);
        }
        (p.len() == before).then_some(config)
    }
}
