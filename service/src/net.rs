//! Addresses: CIDR networks for access lists and trusted proxies (the edge's purge access, the
//! proxies whose `X-Forwarded-For` the edge and imagehost believe), and which address is the
//! client when `X-Forwarded-For` comes through proxies we trust.

use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 network, e.g. `10.0.0.0/8` or `::1/128`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (s, None),
        };
        let net: IpAddr = ip.trim().parse().map_err(|_| "not an IP network".to_string())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(Cidr { net, bits })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.bits),
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

pub fn any_contains(nets: &[Cidr], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// The client address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    if !any_contains(trusted, peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else { return peer };
    let mut client = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !any_contains(trusted, ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_table() {
        let cases = [
            ("127.0.0.0/8", "127.9.9.9", true),
            ("127.0.0.0/8", "128.0.0.1", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("10.1.2.3", "10.1.2.4", false),
            ("192.168.0.0/23", "192.168.1.200", true),
            ("192.168.0.0/23", "192.168.2.1", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("::1/128", "::1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("::1/128", "127.0.0.1", false),
        ];
        for (net, addr, want) in cases {
            assert_eq!(
                net.parse::<Cidr>().unwrap().contains(ip(addr)),
                want,
                "{net} {addr}"
            );
        }
        for bad in ["10.0.0.0/33", "::/129", "nope", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn client_ip_table() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let cases = [
            ("1.2.3.4", Some("9.9.9.9"), "1.2.3.4"),  // untrusted peer: XFF ignored
            ("10.0.0.1", Some("9.9.9.9"), "9.9.9.9"), // trusted proxy
            ("10.0.0.1", Some("6.6.6.6, 9.9.9.9"), "9.9.9.9"), // spoofed left part ignored
            ("10.0.0.1", Some("9.9.9.9, 10.0.0.7"), "9.9.9.9"), // chain of trusted proxies
            ("10.0.0.1", Some("garbage"), "10.0.0.1"),
            ("10.0.0.1", None, "10.0.0.1"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(client_ip(ip(peer), xff, &trusted), ip(want), "{peer} {xff:?}");
        }
    }
}
