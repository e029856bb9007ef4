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

/// The problems a validation has found so far: each section's `validate` adds to one collector,
/// so a configuration is refused with every problem at once, not the first.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records that `key` is wrong, and why.
    pub fn add(&mut self, key: &str, message: String) {
        self.0.push(Problem {
            key: key.into(),
            message,
        });
    }

    /// How many problems were found; compare before and after a section's checks.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A positive duration (`"14d"`, `"30m"`, `"90s"`), or a problem under `key`.
    pub fn duration(&mut self, key: &str, v: &str) -> Option<std::time::Duration> {
        match humantime::parse_duration(v) {
            Ok(d) if d.as_secs() > 0 => Some(d),
            _ => {
                self.add(
                    key,
                    format!("{v:?} is not a duration like \"14d\", \"30m\" or \"90s\""),
                );
                None
            }
        }
    }
}
