//! The client's address, for rate limits, audit events and the `/metrics` allow-list: the socket
//! peer, unless the peer is a proxy the configuration trusts, in which case the address that
//! proxy recorded.
//!
//! Exactly one forwarding header is read: the one the proxy writes (`limits.client_ip_header`,
//! `X-Forwarded-For` by default). Any other is ignored, because a proxy passes through headers it
//! does not write, so a client could fill them with any address (a `Forwarded: for=…` of the
//! client's choosing through an nginx that only appends `X-Forwarded-For` bought a fresh rate-limit
//! budget per request). Within that header only entries trusted proxies appended are believed:
//! the chain is walked from the right (the hop nearest to us) and the first address that is not a
//! trusted proxy is the client. Anything a client writes at the left end is never reached while
//! a trusted hop vouches for the next one, so a client cannot choose its own address.

use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// The networks whose forwarding header is believed (`limits.trusted_proxies`), and which header
/// that is (`limits.client_ip_header`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ClientIpHeader,
}

/// The one forwarding header trusted proxies write (`limits.client_ip_header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, …`, appended to by each hop (nginx
    /// `$proxy_add_x_forwarded_for`, most load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239), appended to by each hop.
    Forwarded,
    /// `X-Real-IP: client`: one address, set (not appended) by the proxy nearest to us (nginx
    /// `proxy_set_header X-Real-IP $remote_addr`). Several values are unreadable.
    XRealIp,
}

impl ClientIpHeader {
    /// `x-forwarded-for`, `forwarded` or `x-real-ip` (case-insensitive).
    ///
    /// # Errors
    /// A message naming the accepted values.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            "x-real-ip" => Ok(Self::XRealIp),
            _ => Err(format!(
                "{s:?} must be x-forwarded-for, forwarded or x-real-ip: the one header your proxy writes"
            )),
        }
    }

    /// The header's name, as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::XRealIp => "x-real-ip",
        }
    }
}

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
            .map(|nets| Self {
                nets,
                header: ClientIpHeader::default(),
            })
    }

    /// The same proxies, writing `header` (the only forwarding header read from now on).
    #[must_use]
    pub fn with_header(mut self, header: ClientIpHeader) -> Self {
        self.header = header;
        self
    }

    /// The forwarding header that is read.
    pub fn header(&self) -> ClientIpHeader {
        self.header
    }

    /// Whether no proxy is trusted (forwarding headers are then ignored entirely).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.contains(ip)
    }

    /// Whether `ip` is in one of the networks (also used as a plain allowlist, e.g. for
    /// `/metrics`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request (from the peer the accept loop recorded as
    /// `ConnectInfo`, and `headers`); `None` for a request served without connect info (an
    /// embedding app's choice). Every consumer of the address — rate limits, audit events, the
    /// `/metrics` allow-list — goes through here.
    pub fn resolve(&self, extensions: &http::Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| self.client_ip(c.0.ip(), headers))
    }

    /// The rate-limit key of a request: its [`resolve`](Self::resolve)d address grouped by
    /// [`group`]. A request served without connect info keys as `0.0.0.0`.
    pub fn rate_key(&self, extensions: &http::Extensions, headers: &HeaderMap) -> IpAddr {
        self.resolve(extensions, headers)
            .map_or(IpAddr::from([0, 0, 0, 0]), group)
    }

    /// The client address of a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = normalize(peer);
        if !self.trusts(client) {
            return client;
        }
        // Only the configured header: a client fills the others freely through a proxy that
        // does not write them.
        let chain = match self.header {
            ClientIpHeader::XForwardedFor => x_forwarded_for(headers),
            ClientIpHeader::Forwarded => forwarded_for(headers),
            ClientIpHeader::XRealIp => x_real_ip(headers),
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

/// One address set by the nearest proxy; several lines or a list are unreadable (a proxy that
/// set it writes one value).
fn x_real_ip(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut values = headers.get_all("x-real-ip").iter();
    match (values.next(), values.next()) {
        (None, _) => Vec::new(),
        (Some(v), None) => vec![v.to_str().ok().and_then(|s| parse_node(s.trim()))],
        (Some(_), Some(_)) => vec![None],
    }
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
        let proxies = TrustedProxies::parse(&["127.0.0.1"])
            .expect("valid")
            .with_header(ClientIpHeader::Forwarded);
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
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // The proxy appends X-Forwarded-For and passes the client's own Forwarded through: the
        // client's Forwarded must not pick the address (nor the other way round).
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "7.7.7.7"),
            ("x-forwarded-for", "192.0.2.60"),
        ]);
        let xff = TrustedProxies::parse(&["127.0.0.1"]).expect("valid");
        assert_eq!(xff.header(), ClientIpHeader::XForwardedFor);
        assert_eq!(xff.client_ip(ip("127.0.0.1"), &h), ip("192.0.2.60"));
        let fwd = xff.clone().with_header(ClientIpHeader::Forwarded);
        assert_eq!(fwd.client_ip(ip("127.0.0.1"), &h), ip("6.6.6.6"));
        let only_xff = headers(&[("x-forwarded-for", "192.0.2.60")]);
        assert_eq!(
            fwd.client_ip(ip("127.0.0.1"), &only_xff),
            ip("127.0.0.1"),
            "X-Forwarded-For is ignored when the proxy writes Forwarded"
        );
        let real = xff.with_header(ClientIpHeader::XRealIp);
        assert_eq!(real.client_ip(ip("127.0.0.1"), &h), ip("7.7.7.7"));
        // Two X-Real-IP lines (the client's and the proxy's appended one): unreadable.
        let two = headers(&[("x-real-ip", "6.6.6.6"), ("x-real-ip", "192.0.2.60")]);
        assert_eq!(real.client_ip(ip("127.0.0.1"), &two), ip("127.0.0.1"));
        assert_eq!(
            real.client_ip(
                ip("127.0.0.1"),
                &headers(&[("x-real-ip", "6.6.6.6, 7.7.7.7")])
            ),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn header_names_parse_case_insensitively_and_others_are_refused() {
        assert_eq!(
            ClientIpHeader::parse("X-Forwarded-For"),
            Ok(ClientIpHeader::XForwardedFor)
        );
        assert_eq!(
            ClientIpHeader::parse("forwarded"),
            Ok(ClientIpHeader::Forwarded)
        );
        assert_eq!(
            ClientIpHeader::parse(" x-real-ip "),
            Ok(ClientIpHeader::XRealIp)
        );
        for bad in ["", "x-client-ip", "true-client-ip", "cf-connecting-ip"] {
            let err = ClientIpHeader::parse(bad).expect_err(bad);
            assert!(err.contains("x-forwarded-for"), "{err}");
        }
    }

    #[test]
    fn unreadable_entries_stop_the_walk_at_the_last_vouched_address() {
        let proxies = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).expect("valid");
        let h = headers(&[("x-forwarded-for", "1.1.1.1, garbage, 10.0.0.5")]);
        assert_eq!(proxies.client_ip(ip("127.0.0.1"), &h), ip("10.0.0.5"));
        let h = headers(&[("forwarded", "for=unknown")]);
        let fwd = proxies.clone().with_header(ClientIpHeader::Forwarded);
        assert_eq!(fwd.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
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
