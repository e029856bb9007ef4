//! `[metrics]` as written in `vestibule.toml`, and its validation.

use serde::{Deserialize, Serialize};

use crate::client_ip::TrustedProxies;
use crate::problem::Problems;
use crate::settings::list_or_csv;

/// `[metrics]`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawMetrics {
    /// Serves `GET /metrics` (OpenMetrics text).
    pub enabled: bool,
    /// Addresses or CIDR networks allowed to read `/metrics`; others get 404. Loopback only by
    /// default: put the scraper's network here, not the world. In the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub allow: Vec<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: vec!["127.0.0.0/8".into(), "::1".into()],
        }
    }
}

impl RawMetrics {
    /// The addresses allowed to read `/metrics` (checked even when metrics are off, so turning
    /// them on cannot reveal a mistake late); a problem when an entry is not an address or network.
    pub fn allow_list(&self, p: &mut Problems) -> Option<TrustedProxies> {
        match TrustedProxies::parse(&self.allow) {
            Ok(a) => Some(a),
            Err(e) => {
                p.add("metrics.allow", e.to_string());
                None
            }
        }
    }
}
