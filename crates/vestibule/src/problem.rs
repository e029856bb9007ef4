//! What is wrong with a configuration, named by key: the error type every section's validation
//! returns. On the ground floor so that each module can validate its own section (`cors`,
//! `origins`, `proxy::config`) without importing the module that assembles them (`config`).

/// One thing wrong with a configuration: the key, what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as written in `vestibule.toml`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration cannot be used. Lists every problem, not just the first.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sources could not be read or typed (syntax, unknown key, wrong type).
    #[error("cannot read the configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// The values were read but some are invalid.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}
