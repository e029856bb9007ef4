//! The shapes configuration values are written in, shared by every section (`[cors]`,
//! `[session]`, `[limits]`, …): lists that are TOML arrays in the file and comma-separated in the
//! environment, durations as text or seconds, and secrets that `Debug` never shows. On the ground
//! floor so that each module can declare its own section.

use serde::{Deserialize, Serialize};

/// Deserializes a list written as a TOML array or, in a `VESTIBULE_*` variable, as one
/// comma-separated string (`"https://a.test, https://b.test"`).
///
/// # Errors
/// When the value is neither a list of strings nor a string.
pub fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// A duration written as text ("10m", "600s") or as a number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RawDuration {
    /// Whole seconds.
    Seconds(u64),
    /// Human-readable, parsed by `humantime`.
    Text(String),
}

/// A configuration secret: never shown by `Debug` (configurations get logged).
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// A list of configuration secrets (a TOML list, or comma-separated in the environment); `Debug`
/// shows only how many there are.
#[derive(Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct SecretList(#[serde(deserialize_with = "list_or_csv")] pub Vec<String>);

impl SecretList {
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[<{} redacted>]", self.0.len())
    }
}
