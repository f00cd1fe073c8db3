//! The destination policy at connect time: a `reqwest` name resolver that drops the addresses
//! a URL's writer may not reach ([`crate::settings::policy`]), so a name that resolves to the
//! cloud's metadata service or to this host, now or after a DNS change (rebinding), is never
//! connected to; and the same check for a URL whose host is written as an address (no resolver
//! is asked for those).
//!
//! Invariants: every address a connection may use has passed [`DestinationPolicy::refuses`]
//! for the writer; a name left with no allowed address fails the attempt with the policy's
//! reason; link-local is refused whatever the writer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::settings::policy::{DestinationPolicy, Writer};

/// Name resolution, replaceable (tests pin a name to an address no real DNS here gives).
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;
}

/// The system's resolver.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    }
}

/// Fixed answers for some names, the system's for the rest.
pub struct PinnedLookup(pub HashMap<String, Vec<IpAddr>>);

impl Lookup for PinnedLookup {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        match self.0.get(&host.to_ascii_lowercase()) {
            Some(ips) => {
                let found = ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
                Box::pin(async move { Ok(found) })
            }
            None => SystemLookup.lookup(host),
        }
    }
}

/// The resolver a client of one writer uses.
#[derive(Clone)]
pub struct Guard {
    pub policy: DestinationPolicy,
    pub writer: Writer,
    pub lookup: Arc<dyn Lookup>,
}

impl Guard {
    /// What every connection honours whoever wrote the URL: no link-local, unspecified or
    /// multicast address (the uploader's, whose URLs were checked for their writer on save).
    pub fn everyone() -> Guard {
        Guard {
            policy: DestinationPolicy::Default,
            writer: Writer::Admin,
            lookup: Arc::new(SystemLookup),
        }
    }

    /// The resolved addresses a connection may use.
    pub fn allowed(&self, found: &[SocketAddr]) -> Vec<SocketAddr> {
        found
            .iter()
            .copied()
            .filter(|a| self.policy.refuses(a.ip(), self.writer).is_none())
            .collect()
    }

    /// A URL whose host is written as an address this writer may not reach: why.
    pub fn literal_refused(&self, url: &str) -> Option<String> {
        let u = reqwest::Url::parse(url).ok()?;
        let host = u.host_str()?;
        let ip: IpAddr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?;
        self.policy
            .refuses(ip, self.writer)
            .map(|why| format!("{ip}: {why}"))
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let this = self.clone();
        Box::pin(async move {
            let found = this.lookup.lookup(host.clone()).await?;
            let allowed = this.allowed(&found);
            if allowed.is_empty() && !found.is_empty() {
                let why = format!(
                    "{host} resolves only to addresses this destination may not reach ({}); refused by destination_policy",
                    found
                        .iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                tracing::warn!(host = %host, "destination refused by destination_policy at connect time");
                return Err(why.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_no_destination_may_have_are_never_connected_to() {
        let g = Guard::everyone();
        assert_eq!(
            g.allowed(&[
                a("169.254.169.254:80"),
                a("203.0.113.5:80"),
                a("[fe80::1]:80")
            ]),
            [a("203.0.113.5:80")]
        );
        assert!(g.allowed(&[a("169.254.169.254:80")]).is_empty());
        assert!(g
            .literal_refused("http://169.254.169.254/latest/meta-data/")
            .is_some());
        assert!(g.literal_refused("http://[fe80::1]:8080/x").is_some());
        assert!(
            g.literal_refused("http://127.0.0.1:8080/x").is_none(),
            "admin-written loopback is allowed"
        );
        assert!(g.literal_refused("https://rec.example.com/x").is_none());
    }

    #[test]
    fn an_account_writer_is_held_to_its_row() {
        let g = Guard {
            writer: Writer::Account,
            ..Guard::everyone()
        };
        assert!(g.literal_refused("http://127.0.0.1:8080/x").is_some());
        assert_eq!(
            g.allowed(&[a("127.0.0.1:80"), a("10.0.0.1:80")]),
            [a("10.0.0.1:80")]
        );
        let strict = Guard {
            policy: DestinationPolicy::Strict,
            ..g
        };
        assert!(strict.allowed(&[a("10.0.0.1:80")]).is_empty());
    }

    /// A name that resolves to the metadata service is refused when the connection is made.
    #[tokio::test]
    async fn a_name_resolving_to_the_metadata_service_is_refused_at_connect_time() {
        let pinned = PinnedLookup(HashMap::from([(
            "rebound.example".to_string(),
            vec![IpAddr::from([169, 254, 169, 254])],
        )]));
        let g = Guard {
            lookup: Arc::new(pinned),
            ..Guard::everyone()
        };
        let name: reqwest::dns::Name = "rebound.example".parse().unwrap();
        let e = g.resolve(name).await.err().expect("refused");
        assert!(e.to_string().contains("169.254.169.254"), "{e}");
        let ok: reqwest::dns::Name = "localhost".parse().unwrap();
        let addrs: Vec<_> = g.resolve(ok).await.unwrap().collect();
        assert!(
            !addrs.is_empty(),
            "loopback passes for an admin writer (its writer was checked on save)"
        );
    }
}
