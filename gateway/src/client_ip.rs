//! Which address a request comes from. The socket peer, unless that peer is a configured proxy:
//! then the right-most `X-Forwarded-For` entry that is not itself a trusted proxy. A client that
//! is not a trusted proxy cannot choose its address by sending the header.

use std::net::IpAddr;

use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed. Usually a handful of load balancers.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies { nets }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request from `peer` carrying these `X-Forwarded-For` values
    /// (one per header line, in order).
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = canonical(peer);
        if self.nets.is_empty() || !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for line in forwarded_for.rev() {
            let Ok(line) = std::str::from_utf8(line) else {
                return client;
            };
            for hop in line.rsplit(',') {
                let Some(ip) = parse_hop(hop.trim()) else {
                    // Garbage from beyond the last trusted hop: believe nothing further left.
                    return client;
                };
                client = ip;
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One `X-Forwarded-For` hop: an address, possibly `[v6]:port` or `v4:port` as some proxies write.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn proxies() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff<'a>(lines: &'a [&'static str]) -> impl DoubleEndedIterator<Item = &'static [u8]> + 'a {
        lines.iter().map(|l| l.as_bytes())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_sends() {
        assert_eq!(
            proxies().client_ip(ip("203.0.113.9"), xff(&["192.0.2.10"])),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.1.1.1"), xff(&["192.0.2.10"])),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted_hop() {
        let p = proxies();
        assert_eq!(
            p.client_ip(ip("10.1.1.1"), xff(&["1.1.1.1, 192.0.2.10, 10.2.2.2"])),
            ip("192.0.2.10")
        );
        assert_eq!(
            p.client_ip(ip("10.1.1.1"), xff(&["1.1.1.1", "192.0.2.10"])),
            ip("192.0.2.10")
        );
        assert_eq!(
            p.client_ip(ip("::1"), xff(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            p.client_ip(ip("10.1.1.1"), xff(&["::ffff:192.0.2.7"])),
            ip("192.0.2.7")
        );
    }

    #[test]
    fn garbage_or_missing_header_stops_at_the_last_trusted_hop() {
        let p = proxies();
        assert_eq!(p.client_ip(ip("10.1.1.1"), xff(&[])), ip("10.1.1.1"));
        assert_eq!(
            p.client_ip(ip("10.1.1.1"), xff(&["192.0.2.10, nonsense, 10.3.3.3"])),
            ip("10.3.3.3")
        );
    }
}
