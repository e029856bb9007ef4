//! `[limits]`: what a connection and a request may cost, and where the client address comes
//! from. Read by the server (listener, request limits) and `client_ip`; validated here because
//! `server` is the floor above `config` (docs/ARCHITECTURE.md, "Layering").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client_ip::{ClientIpHeader, TrustedProxies};
use crate::problem::Problems;
use crate::settings::list_or_csv;

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Reverse proxies (addresses or CIDR networks) whose entries in `client_ip_header` name
    /// the client; empty: the socket peer is the client. In the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub trusted_proxies: Vec<String>,
    /// The one forwarding header the trusted proxies write: `x-forwarded-for` (default),
    /// `forwarded` (RFC 7239) or `x-real-ip`. The others are ignored: a proxy passes through
    /// the headers it does not write, so a client could fill them with any address.
    pub client_ip_header: String,
    /// Longest request URI (414 beyond).
    pub uri_bytes: usize,
    /// Largest request header block (431 beyond).
    pub header_bytes: usize,
    /// Most request headers (431 beyond). Browsers send about twenty; below 100, hyper parses
    /// into a fixed buffer instead of a heap one sized per request.
    pub max_headers: usize,
    /// Open connections at most; more clients wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time a client gets to send a request's headers, and to start its next request on an
    /// idle kept-alive connection ("15s"): what stops slowloris clients from holding sockets.
    pub header_read_timeout: String,
    /// Longest wait for the next piece of a request body ("15s"), which is also the body's
    /// head start for `body_min_rate`: a body that trickles in gets 408 and its connection is
    /// closed (client-facing and, through the gateway, the upstream one).
    pub body_read_timeout: String,
    /// Slowest average a request body may arrive at, in bytes per second, once
    /// `body_read_timeout` is used up (0: only `body_read_timeout` between two reads). Only time
    /// spent waiting for the client counts.
    pub body_min_rate: u64,
    /// Longest a response write may wait for the client to read ("60s", like nginx's
    /// `send_timeout`): a client that asks for a large answer and stops reading is cut off
    /// instead of holding its connection slot for ever.
    pub send_timeout: String,
    /// Serve HTTP/2 without TLS (h2c, prior knowledge) besides HTTP/1.1. Off: browsers never speak
    /// h2c, so only a front proxy that does needs it, and each h2c connection carries many
    /// requests past `max_connections`.
    pub http2: bool,
    /// Concurrent streams (requests) per HTTP/2 connection.
    pub http2_max_streams: u32,
    /// Live sessions per user; a login beyond it ends the least recently used one.
    pub max_sessions_per_user: usize,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".into(),
            uri_bytes: 8 * 1024,
            header_bytes: 16 * 1024,
            max_headers: 64,
            max_connections: 10_000,
            header_read_timeout: "15s".into(),
            body_read_timeout: "15s".into(),
            body_min_rate: 1024,
            send_timeout: "60s".into(),
            http2: false,
            http2_max_streams: 100,
            max_sessions_per_user: 100,
        }
    }
}

/// `[limits]` validated: the values that need parsing (the others are used as written).
#[derive(Debug)]
pub(crate) struct LimitSettings {
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_read_timeout: Duration,
    pub(crate) send_timeout: Duration,
}

impl RawLimits {
    /// Every `[limits]` value; a problem per value out of range.
    pub(crate) fn validate(&self, p: &mut Problems) -> Option<LimitSettings> {
        let client_ip_header = match ClientIpHeader::parse(&self.client_ip_header) {
            Ok(h) => Some(h),
            Err(e) => {
                p.add("limits.client_ip_header", e);
                None
            }
        };
        let trusted_proxies = match TrustedProxies::parse(&self.trusted_proxies) {
            Ok(t) => client_ip_header.map(|h| t.with_header(h)),
            Err(e) => {
                p.add("limits.trusted_proxies", e.to_string());
                None
            }
        };
        let header_read_timeout =
            p.duration("limits.header_read_timeout", &self.header_read_timeout);
        let body_read_timeout = p.duration("limits.body_read_timeout", &self.body_read_timeout);
        let send_timeout = p.duration("limits.send_timeout", &self.send_timeout);
        if self.http2_max_streams == 0 {
            p.add("limits.http2_max_streams", "must be at least 1".into());
        }
        for (key, value, min) in [
            ("limits.uri_bytes", self.uri_bytes, 256),
            ("limits.header_bytes", self.header_bytes, 4096),
            ("limits.max_headers", self.max_headers, 16),
            ("limits.max_connections", self.max_connections, 1),
            (
                "limits.max_sessions_per_user",
                self.max_sessions_per_user,
                1,
            ),
        ] {
            if value < min {
                p.add(key, format!("must be at least {min}"));
            }
        }
        if self.body_bytes < 1024 {
            p.add(
                "limits.body_bytes",
                "must be at least 1024 so login bodies fit".into(),
            );
        }
        Some(LimitSettings {
            trusted_proxies: trusted_proxies?,
            header_read_timeout: header_read_timeout?,
            body_read_timeout: body_read_timeout?,
            send_timeout: send_timeout?,
        })
    }
}
