//! Which peers may open outbound-socket connections: `allow_peers` in the configuration, a list
//! of addresses or networks (`127.0.0.1`, `10.0.0.0/8`, `::1/128`), loopback only by default.
//!
//! Invariant: a peer is compared by its canonical address (an IPv4-mapped IPv6 peer such as
//! `::ffff:10.1.2.3` is the IPv4 address), so listening on `[::]` does not widen the list.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An address or network: the address and its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNet {
    addr: IpAddr,
    prefix: u8,
}

impl PeerNet {
    pub fn parse(s: &str) -> Result<PeerNet, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (a.b.c.d/nn, x::/nn)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(PeerNet {
            addr: addr.to_canonical(),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = bits - self.prefix as u32;
        (a >> shift) == (b >> shift)
    }

    /// Loopback only.
    pub fn loopback() -> Vec<PeerNet> {
        vec![
            PeerNet::parse("127.0.0.0/8").unwrap_or(PeerNet {
                addr: IpAddr::from([127, 0, 0, 1]),
                prefix: 32,
            }),
            PeerNet {
                addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ]
    }
}

impl std::fmt::Display for PeerNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for PeerNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PeerNet::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PeerNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let n = PeerNet::parse("10.0.0.0/8").unwrap();
        assert!(n.contains("10.200.1.2".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.1.2.3".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let one = PeerNet::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = PeerNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(PeerNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        let lo = PeerNet::loopback();
        assert!(lo.iter().any(|n| n.contains("127.0.0.1".parse().unwrap())));
        assert!(lo.iter().any(|n| n.contains("::1".parse().unwrap())));
        for bad in ["10.0.0.0/33", "host.example", "1.2.3.4/x", "::/129"] {
            assert!(PeerNet::parse(bad).is_err(), "{bad}");
        }
    }
}
