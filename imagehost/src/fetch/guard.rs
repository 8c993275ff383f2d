//! The SSRF guard (D9), pure: which URLs and addresses the proxy may reach. Checked on the URL of
//! every hop and again on every address the resolver returns, which are the only addresses the
//! client then connects to (no DNS rebinding window).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error("scheme `{0}` is not http or https")]
    Scheme(String),
    #[error("host `{0}` is internal")]
    Name(String),
    #[error("address {0} is not public")]
    Address(IpAddr),
    #[error("URL has no host")]
    NoHost,
}

/// Checks a URL before it is requested: scheme, literal addresses, and internal names.
pub fn check_url(url: &Url, allow_loopback: bool) -> Result<(), Blocked> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Blocked::Scheme(url.scheme().to_string()));
    }
    match url.host() {
        None => Err(Blocked::NoHost),
        Some(Host::Ipv4(a)) => check_addr(IpAddr::V4(a), allow_loopback),
        Some(Host::Ipv6(a)) => check_addr(IpAddr::V6(a), allow_loopback),
        Some(Host::Domain(d)) => check_name(d, allow_loopback),
    }
}

pub fn check_name(name: &str, allow_loopback: bool) -> Result<(), Blocked> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    let internal = n == "localhost"
        || n.ends_with(".localhost")
        || n.ends_with(".local")
        || n.ends_with(".internal")
        || n.is_empty();
    if internal && !(allow_loopback && (n == "localhost" || n.ends_with(".localhost"))) {
        return Err(Blocked::Name(name.to_string()));
    }
    Ok(())
}

/// Every address must be public: not loopback (unless allowed), private, link-local (cloud
/// metadata), CGNAT, unspecified, multicast or reserved. IPv6 is allowed only in global unicast
/// (2000::/3) outside the special-purpose blocks, so every form that embeds an IPv4 address
/// (mapped, compatible, SIIT, NAT64 of either prefix, 6to4, Teredo) is refused before any
/// connection, whatever the address inside.
pub fn check_addr(ip: IpAddr, allow_loopback: bool) -> Result<(), Blocked> {
    let ok = match ip {
        IpAddr::V4(a) => v4_ok(a, allow_loopback),
        IpAddr::V6(a) => v6_ok(a, allow_loopback),
    };
    if ok {
        Ok(())
    } else {
        Err(Blocked::Address(ip))
    }
}

fn v4_ok(a: Ipv4Addr, allow_loopback: bool) -> bool {
    let [o0, o1, o2, _] = a.octets();
    if o0 == 127 {
        return allow_loopback;
    }
    !(o0 == 0
        || o0 == 10
        || (o0 == 100 && (64..128).contains(&o1)) // CGNAT
        || (o0 == 169 && o1 == 254) // link-local, cloud metadata
        || (o0 == 172 && (16..32).contains(&o1))
        || (o0 == 192 && o1 == 168)
        || (o0 == 192 && o1 == 0 && o2 == 0) // IETF protocol assignments
        || (o0 == 198 && (18..20).contains(&o1)) // benchmarking
        || o0 >= 224) // multicast, reserved, broadcast
}

fn v6_ok(a: Ipv6Addr, allow_loopback: bool) -> bool {
    if a == Ipv6Addr::LOCALHOST {
        return allow_loopback;
    }
    let s = a.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    global_unicast
        && !(s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF protocol assignments (Teredo, ORCHID…)
        && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        && s[0] != 0x2002 // 6to4: an IPv4 address inside
        && s[0] != 0x3ffe // the old 6bone, reserved
        && (s[0] & 0xfff0) != 0x3ff0 // 3fff::/20 documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_table() {
        // D9's vectors: every one is refused, whatever its spelling.
        let blocked = [
            "http://127.0.0.1/x",
            "http://localhost/x",
            "http://LOCALHOST./x",
            "http://foo.localhost/x",
            "http://[::1]/x",
            "http://2130706433/x",
            "http://0x7f.1/x",
            "http://017700000001/x",
            "http://0177.0.0.1/x",
            "http://0.0.0.0/x",
            "http://0/x",
            "http://169.254.169.254/latest/meta-data",
            "http://10.1.2.3/x",
            "http://172.16.0.1/x",
            "http://172.31.255.255/x",
            "http://192.168.1.1/x",
            "http://100.64.0.1/x",
            "http://224.0.0.1/x",
            "http://255.255.255.255/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://[::ffff:7f00:1]/x",
            "http://[::127.0.0.1]/x",
            "http://[::]/x",
            "http://[fe80::1]/x",
            "http://[fc00::1]/x",
            "http://[fd12:3456::1]/x",
            "http://[ff02::1]/x",
            "http://[64:ff9b::a9fe:a9fe]/x",
            "http://[64:ff9b::5db8:d822]/x",
            "http://[64:ff9b:1::a9fe:a9fe]/x",
            "http://[::ffff:0:7f00:1]/x",
            "http://[::ffff:0:a9fe:a9fe]/x",
            "http://[::ffff:93.184.216.34]/x",
            "http://[2002:7f00:1::]/x",
            "http://[2002:5db8:d822::]/x",
            "http://[2001::5efe:7f00:1]/x",
            "http://[2001:db8::1]/x",
            "http://[3fff::1]/x",
            "http://[100::1]/x",
            "http://printer.local/x",
            "http://metadata.google.internal/x",
            "ftp://example.com/x",
            "file:///etc/passwd",
            "gopher://example.com/x",
        ];
        for u in blocked {
            let url = Url::parse(u).expect(u);
            assert!(check_url(&url, false).is_err(), "{u} must be blocked");
        }
        let allowed = [
            "http://example.com/a.jpg",
            "https://93.184.216.34/a.jpg",
            "http://[2606:2800:220:1:248:1893:25c8:1946]/a.jpg",
            "http://172.32.0.1/x",
            "http://100.128.0.1/x",
        ];
        for u in allowed {
            assert_eq!(check_url(&Url::parse(u).unwrap(), false), Ok(()), "{u}");
        }
        // The local-testing switch opens loopback only.
        assert_eq!(
            check_url(&Url::parse("http://127.0.0.1:9/x").unwrap(), true),
            Ok(())
        );
        assert_eq!(
            check_url(&Url::parse("http://localhost:9/x").unwrap(), true),
            Ok(())
        );
        assert!(check_url(&Url::parse("http://10.0.0.1/x").unwrap(), true).is_err());
        assert!(check_url(&Url::parse("http://[::ffff:10.0.0.1]/x").unwrap(), true).is_err());
    }
}
