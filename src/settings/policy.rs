//! The destination policy: where a URL written into settings may lead. A recording's upload
//! URL is fetched from inside the operator's network, so a tenant must not be able to point it
//! at the cloud's metadata service or at the host's own services.
//!
//! | address | admin tokens and the config file | account tokens |
//! |---|---|---|
//! | link-local (169.254.0.0/16, fe80::/10), unspecified, multicast, broadcast | refused | refused |
//! | loopback (127.0.0.0/8, ::1, `localhost`) | allowed | refused |
//! | private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) | allowed | refused with `destination_policy = "strict"` |
//! | anything else | allowed | allowed |
//!
//! Checked twice: when a document is saved (the writer's row; a name is resolved then, and a
//! name that does not resolve is let through) and when an upload or a webhook connects (the row
//! of the URL's writer, recorded in the document as `pvt_writer` and carried by each URL:
//! `net::guard`'s resolver drops the refused addresses, so a name that resolves differently
//! later, DNS rebinding, still cannot reach them).
//!
//! Invariants: link-local is refused for every writer and at every connection, whatever the
//! configuration; the checks see the address that is connected to, never only the name.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Who wrote a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// An admin token, or the config file.
    Admin,
    /// A token of one account.
    Account,
}

/// The configurable part of the policy (`destination_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationPolicy {
    /// Link-local refused for everyone, loopback for account tokens.
    #[default]
    Default,
    /// Also private ranges for account tokens.
    Strict,
}

/// What kind of address an IP is, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Link-local, unspecified, multicast, broadcast: never a recording server.
    Never,
    Loopback,
    Private,
    Public,
}

pub fn classify(ip: IpAddr) -> Class {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || o[0] == 0
            {
                Class::Never
            } else if v4.is_loopback() {
                Class::Loopback
            } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                Class::Private
            } else {
                Class::Public
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_unspecified() || v6.is_multicast() || (s[0] & 0xffc0) == 0xfe80 {
                Class::Never
            } else if v6.is_loopback() {
                Class::Loopback
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Class::Private
            } else {
                Class::Public
            }
        }
    }
}

impl DestinationPolicy {
    /// Why `writer` may not send recordings to `ip`, if it may not.
    pub fn refuses(self, ip: IpAddr, writer: Writer) -> Option<&'static str> {
        match (classify(ip), writer) {
            (Class::Never, _) => Some("a link-local, unspecified or multicast address is never a destination"),
            (Class::Loopback, Writer::Account) => {
                Some("this host's own addresses are not a destination for an account")
            }
            (Class::Private, Writer::Account) if self == DestinationPolicy::Strict => {
                Some("private addresses are not a destination for an account (destination_policy = \"strict\")")
            }
            _ => None,
        }
    }

    /// Checks an `http(s)://` URL's host for `writer`: an address as written, `localhost`, or a
    /// name resolved now (best effort: one that does not resolve passes; the connection is
    /// checked again). `Err` says why.
    pub fn check_url(self, url: &str, writer: Writer) -> Result<(), String> {
        let Ok(u) = reqwest::Url::parse(url) else {
            return Ok(()); // not a URL: the settings' own validation speaks
        };
        if !matches!(u.scheme(), "http" | "https") {
            return Ok(());
        }
        let port = u.port_or_known_default().unwrap_or(80);
        let Some(host) = u.host_str() else {
            return Ok(());
        };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<IpAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => {
                let name = bare.trim_end_matches('.').to_ascii_lowercase();
                if name == "localhost" || name.ends_with(".localhost") {
                    vec![IpAddr::from([127, 0, 0, 1])]
                } else {
                    use std::net::ToSocketAddrs;
                    (name.as_str(), port)
                        .to_socket_addrs()
                        .map(|a| a.map(|s| s.ip()).collect())
                        .unwrap_or_default()
                }
            }
        };
        for ip in addrs {
            if let Some(why) = self.refuses(ip, writer) {
                return Err(format!("{why} ({ip})"));
            }
        }
        Ok(())
    }
}

/// Every `url`/`uri` string in a document, with its path (`record_call.url`,
/// `flow.children._.data.url`…), for the check on save.
pub fn urls_in(v: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match x {
                        serde_json::Value::String(s) if k == "url" || k == "uri" => {
                            out.push((p, s.clone()))
                        }
                        _ => walk(x, &p, out),
                    }
                }
            }
            serde_json::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, &format!("{path}.{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use DestinationPolicy::{Default as D, Strict as S};
    use Writer::{Account as Acc, Admin as Adm};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_table() {
        for (addr, admin, account, strict_account) in [
            ("169.254.169.254", false, false, false),
            ("fe80::1", false, false, false),
            ("0.0.0.0", false, false, false),
            ("::ffff:169.254.169.254", false, false, false),
            ("127.0.0.1", true, false, false),
            ("::1", true, false, false),
            ("10.1.2.3", true, true, false),
            ("172.16.0.9", true, true, false),
            ("192.168.1.1", true, true, false),
            ("100.64.0.1", true, true, false),
            ("fd00::5", true, true, false),
            ("203.0.113.7", true, true, true),
            ("2001:db8::1", true, true, true),
        ] {
            let a = ip(addr);
            assert_eq!(D.refuses(a, Adm).is_none(), admin, "{addr} admin");
            assert_eq!(D.refuses(a, Acc).is_none(), account, "{addr} account");
            assert_eq!(S.refuses(a, Acc).is_none(), strict_account, "{addr} strict");
        }
    }

    #[test]
    fn urls_are_checked_by_their_host() {
        assert!(D
            .check_url("http://169.254.169.254/latest/meta-data/", Adm)
            .is_err());
        assert!(D.check_url("http://localhost:8080/x/", Acc).is_err());
        assert!(D.check_url("http://127.0.0.1:8080/x/", Adm).is_ok());
        assert!(D.check_url("https://[fe80::1]/x", Adm).is_err());
        assert!(
            D.check_url("s3://bucket/prefix/", Acc).is_ok(),
            "not http: not ours to judge"
        );
    }

    #[test]
    fn every_url_of_a_document_is_found_with_its_path() {
        let doc = serde_json::json!({"record_call": {"url": "http://a/"}, "flow": {"data": {"url": "http://b/"},
            "children": {"_": {"data": {"url": "http://c/"}}}}, "hooks": [{"uri": "http://d/"}]});
        let mut got = urls_in(&doc);
        got.sort();
        assert_eq!(
            got.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            [
                "flow.children._.data.url",
                "flow.data.url",
                "hooks.0.uri",
                "record_call.url"
            ]
        );
    }
}
