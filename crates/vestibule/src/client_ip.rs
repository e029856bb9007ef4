//! The client's address, for rate limits: the socket peer, unless the peer is a proxy the
//! configuration trusts, in which case the address that proxy recorded.
//!
//! Only `X-Forwarded-For` / `Forwarded` entries appended by trusted proxies are believed: the
//! chain is walked from the right (the hop nearest to us) and the first address that is not a
//! trusted proxy is the client. Anything a client writes at the left end is never reached while
//! a trusted hop vouches for the next one, so a client cannot choose its own rate-limit key.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// The networks whose forwarding headers are believed (`limits.trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `limits.trusted_proxies` entry that is neither an address nor a CIDR network.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR network (e.g. 10.0.0.0/8, 127.0.0.1, ::1)")]
pub struct BadProxy(pub String);

impl TrustedProxies {
    /// Parses addresses (`127.0.0.1`) and networks (`10.0.0.0/8`, `fd00::/8`).
    ///
    /// # Errors
    /// [`BadProxy`] naming the first entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadProxy> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                IpNet::from_str(e)
                    .or_else(|_| IpAddr::from_str(e).map(IpNet::from))
                    .map_err(|_| BadProxy(e.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted (forwarding headers are then ignored entirely).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.contains(ip)
    }

    /// Whether `ip` is in one of the networks (also used as a plain allowlist, e.g. for
    /// `/metrics`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The rate-limit key of a request: its client address (from the peer the accept loop
    /// recorded as `ConnectInfo`, and `headers`), grouped by [`group`]. A request served
    /// without connect info (an embedding app's choice) keys as `0.0.0.0`.
    pub fn rate_key(&self, extensions: &http::Extensions, headers: &HeaderMap) -> IpAddr {
        let peer = extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        group(self.client_ip(peer, headers))
    }

    /// The client address of a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = normalize(peer);
        if !self.trusts(client) {
            return client;
        }
        // `Forwarded` (RFC 7239) when present, else `X-Forwarded-For`; never a mix, which would
        // let a client fill one header while the proxy writes the other.
        let chain = if headers.contains_key(http::header::FORWARDED) {
            forwarded_for(headers)
        } else {
            x_forwarded_for(headers)
        };
        for hop in chain.into_iter().rev() {
            // An entry we cannot read ("unknown", an obfuscated id, garbage): stop at the last
            // address a trusted hop vouched for rather than guess.
            let Some(ip) = hop.map(normalize) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 (`::ffff:192.0.2.1`, what a dual-stack socket reports) is the IPv4 address.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The rate-limit key of an address: IPv4 as is, IPv6 grouped per /64 (one customer's
/// allocation: every host of a /64 is one attacker's for free).
pub fn group(ip: IpAddr) -> IpAddr {
    match normalize(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(s) => s.split(',').map(|e| parse_node(e.trim())).collect(),
            Err(_) => vec![None],
        })
        .collect()
}

fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(http::header::FORWARDED)
        .iter()
        .flat_map(|v| match v.to_str() {
            Ok(s) => s
                .split(',')
                .map(|element| {
                    element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, v)| parse_node(v.trim().trim_matches('"')))
                })
                .collect(),
            Err(_) => vec![None],
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(s) {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return Ipv6Addr::from_str(addr).ok().map(IpAddr::V6);
    }
    let (addr, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8"]).expect("valid");
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(proxies.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn walks_right_to_left_past_trusted_hops_only() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1"]).expect("valid");
        // The client forged "6.6.6.6"; the real client is what the first trusted proxy saw.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &h), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7, 10.1.2.3"),
        ]);
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn forwarded_header_with_ports_brackets_and_quotes() {
        let proxies = TrustedProxies::parse(&["127.0.0.1"]).expect("valid");
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https",
        )]);
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &h),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080;by=203.0.113.43")]);
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &h), ip("192.0.2.60"));
        // Forwarded wins over X-Forwarded-For: a client cannot pick the header we read.
        let h = headers(&[
            ("forwarded", "for=192.0.2.60"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &h), ip("192.0.2.60"));
    }

    #[test]
    fn unreadable_entries_stop_the_walk_at_the_last_vouched_address() {
        let proxies = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).expect("valid");
        let h = headers(&[("x-forwarded-for", "1.1.1.1, garbage, 10.0.0.5")]);
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &h), ip("10.0.0.5"));
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // No header at all: the proxy itself.
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn mapped_ipv6_is_ipv4_and_ipv6_groups_per_64() {
        assert_eq!(normalize(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let proxies = TrustedProxies::parse(&["127.0.0.1"]).expect("valid");
        assert_eq!(
            proxies.client_ip(
                ip("::ffff:127.0.0.1"),
                &headers(&[("x-forwarded-for", "::ffff:198.51.100.7")])
            ),
            ip("198.51.100.7")
        );
        assert_eq!(group(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            group(ip("2001:db8:1:2:ffff::9")),
            group(ip("2001:db8:1:2::1"))
        );
        assert_ne!(group(ip("2001:db8:1:3::1")), group(ip("2001:db8:1:2::1")));
        assert_eq!(group(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn bad_entries_are_named() {
        let err = TrustedProxies::parse(&["10.0.0.0/8", "proxy.internal"]).expect_err("invalid");
        assert!(err.to_string().contains("proxy.internal"));
    }
}
