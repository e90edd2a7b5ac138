//! The client address behind a reverse proxy (docs/http.md, "Behind a
//! reverse proxy"): `X-Forwarded-For` is believed only when the peer that
//! sent it is a trusted proxy (SOUK_TRUSTED_PROXIES), and then only as far as
//! the chain of trusted proxies goes: walking the list from the right (the
//! entry the nearest proxy added) past every address that is itself
//! trusted, the first one that is not becomes the client address. Anything
//! to its left was written by the client and may be forged.

use std::net::IpAddr;

use crate::limits::TRUSTED_PROXIES_MAX;

/// One trusted network: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: &[u8], ip: &[u8], prefix: u8) -> bool {
    let whole = usize::from(prefix / 8);
    if net[..whole] != ip[..whole] {
        return false;
    }
    let rest = prefix % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (net[whole] & mask) == (ip[whole] & mask)
}

/// The proxies whose `X-Forwarded-For` is believed (empty: nobody's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    /// Parses `10.0.0.1, 192.168.0.0/16, ::1, fd00::/8` (empty: none).
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let mut networks = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (addr, prefix) = match item.split_once('/') {
                Some((addr, bits)) => (addr, Some(bits)),
                None => (item, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{item}` is not an IP address or CIDR network"))?;
            let addr = addr.to_canonical();
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|bits| *bits <= max)
                    .ok_or_else(|| format!("`{item}`: the prefix length must be 0-{max}"))?,
            };
            networks.push(Network { addr, prefix });
        }
        if networks.len() > TRUSTED_PROXIES_MAX {
            return Err(format!("at most {TRUSTED_PROXIES_MAX} entries"));
        }
        Ok(TrustedProxies(networks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|network| network.contains(ip))
    }

    /// The client address of a request from `peer` whose `X-Forwarded-For`
    /// values (in the order the headers came) are `forwarded`.
    pub fn client_address<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        // Later headers and later entries were added by nearer proxies.
        for value in forwarded.rev() {
            for entry in value.rsplit(|&b| b == b',') {
                let Some(hop) = parse_hop(entry) else {
                    // Garbage where an address should be: nothing further
                    // left can be traced; the last trusted hop stands.
                    return client;
                };
                client = hop;
                if !self.contains(hop) {
                    return hop;
                }
            }
        }
        // Every hop is a trusted proxy: the farthest one is the client.
        client
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`) as some proxies write it.
fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
        return Some(socket.ip().to_canonical());
    }
    let bracketed = text.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(proxies: &str, peer: &str, headers: &[&str]) -> IpAddr {
        let proxies = TrustedProxies::parse(proxies).unwrap();
        proxies.client_address(ip(peer), headers.iter().map(|h| h.as_bytes()))
    }

    #[test]
    fn parses_addresses_and_networks_of_both_families() {
        let proxies = TrustedProxies::parse(" 10.0.0.1, 192.168.0.0/16,::1, fd00::/8 ").unwrap();
        assert!(proxies.contains(ip("10.0.0.1")));
        assert!(!proxies.contains(ip("10.0.0.2")));
        assert!(proxies.contains(ip("192.168.200.3")));
        assert!(!proxies.contains(ip("192.169.0.1")));
        assert!(proxies.contains(ip("::1")));
        assert!(proxies.contains(ip("fd12:3456::1")));
        assert!(!proxies.contains(ip("fe80::1")));
        // An IPv4 peer seen on an IPv6 socket is still that IPv4 address.
        assert!(proxies.contains(ip("::ffff:10.0.0.1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(
            TrustedProxies::parse("10.0.0.0/12")
                .unwrap()
                .contains(ip("10.15.255.255"))
        );
        assert!(
            !TrustedProxies::parse("10.0.0.0/12")
                .unwrap()
                .contains(ip("10.16.0.0"))
        );
        assert!(
            TrustedProxies::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        for bad in [
            "10.0.0.256",
            "10.0.0.0/33",
            "::/129",
            "proxy.local",
            "10.0.0.0/",
            "1.2.3.4/x",
        ] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn believes_forwarded_addresses_only_from_trusted_peers() {
        // Untrusted peer: its own address, whatever it claims.
        assert_eq!(
            client("", "203.0.113.9", &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client("10.0.0.1", "203.0.113.9", &["198.51.100.1"]),
            ip("203.0.113.9")
        );
        // Trusted peer: the rightmost entry that is not itself trusted.
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.1",
                &["6.6.6.6, 198.51.100.1, 10.0.0.7"]
            ),
            ip("198.51.100.1")
        );
        // Headers are one list, in order.
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.1",
                &["6.6.6.6", "198.51.100.1", "10.0.0.7"]
            ),
            ip("198.51.100.1")
        );
        // No header: the proxy itself.
        assert_eq!(client("10.0.0.1", "10.0.0.1", &[]), ip("10.0.0.1"));
        // Every hop trusted: the farthest.
        assert_eq!(
            client("10.0.0.0/8", "10.0.0.1", &["10.0.0.3, 10.0.0.2"]),
            ip("10.0.0.3")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client(
                "10.0.0.0/8",
                "10.0.0.1",
                &["198.51.100.1, unknown, 10.0.0.2"]
            ),
            ip("10.0.0.2")
        );
        // Ports and brackets, IPv6.
        assert_eq!(
            client("::1", "::1", &["[2001:db8::1]:4711"]),
            ip("2001:db8::1")
        );
        assert_eq!(client("::1", "::1", &["192.0.2.1:80"]), ip("192.0.2.1"));
    }
}
