//! Free loopback ports below 32768, away from the kernel's ephemeral range (32768–60999), where
//! ports handed out for outgoing connections could collide with the servers a test starts.

use std::net::TcpListener;

const LOW: u16 = 20000;
const HIGH: u16 = 32000;

/// A port on 127.0.0.1 that was free a moment ago. Callers that race other processes for it
/// must be ready to retry with a fresh port if binding fails.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = rand::random_range(LOW..HIGH);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port found in {LOW}..{HIGH}");
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::with_capacity(n);
    while out.len() < n {
        let p = free_port();
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_are_low_and_distinct() {
        let ports = super::free_ports(5);
        assert!(ports.iter().all(|p| (super::LOW..super::HIGH).contains(p)));
        let mut sorted = ports.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5);
    }
}
