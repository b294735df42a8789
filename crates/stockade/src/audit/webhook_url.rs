//! Where an audit webhook may point (SSRF guard, SPEC §2.12): an `https://`
//! URL without credentials whose host resolves only to public addresses,
//! unless `STOCKADE_WEBHOOK_ALLOW_PRIVATE` is set. The rule is checked when
//! the endpoint is configured and again at every delivery, on the addresses
//! the delivery then connects to (a DNS answer that changed in between —
//! DNS rebinding — is caught at delivery).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;

/// Why a URL is refused. `Invalid` and `Private` map to distinct stable codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Private(String),
}

/// A checked endpoint: the URL, the host to pin, and the addresses to use.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Url,
    /// The DNS name to pin to `addrs` (absent for an IP literal).
    pub domain: Option<String>,
    pub addrs: Vec<SocketAddr>,
}

/// Checks the syntax of `raw`: `https`, a host, no user or password, no
/// fragment, at most [`MAX_URL_LEN`] bytes.
pub fn parse(raw: &str) -> Result<Url, UrlError> {
    let bad = |m: &str| UrlError::Invalid(m.to_owned());
    if raw.len() > MAX_URL_LEN {
        return Err(bad("the URL is longer than 2048 bytes"));
    }
    let url = Url::parse(raw).map_err(|_| bad("not an absolute URL"))?;
    if url.scheme() != "https" {
        return Err(bad("the URL must use https://"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("the URL must not contain a user name or password"));
    }
    if url.fragment().is_some() {
        return Err(bad("the URL must not contain a fragment"));
    }
    if url.host().is_none() {
        return Err(bad("the URL has no host"));
    }
    Ok(url)
}

/// Resolves `url`'s host and checks every address (all must be allowed).
pub async fn resolve(url: &Url, allow_private: bool) -> Result<Target, UrlError> {
    let port = url.port_or_known_default().unwrap_or(443);
    let (domain, addrs): (Option<String>, Vec<SocketAddr>) = match url.host() {
        Some(Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Some(Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Some(Host::Domain(d)) => {
            let found = tokio::net::lookup_host((d, port))
                .await
                .map_err(|_| UrlError::Invalid(format!("the host {d} does not resolve")))?;
            (Some(d.to_owned()), found.collect())
        }
        None => return Err(UrlError::Invalid("the URL has no host".to_owned())),
    };
    if addrs.is_empty() {
        return Err(UrlError::Invalid("the host has no address".to_owned()));
    }
    if !allow_private && let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
        return Err(UrlError::Private(format!(
            "the host resolves to {}, which is not a public address",
            a.ip()
        )));
    }
    Ok(Target {
        url: url.clone(),
        domain,
        addrs,
    })
}

/// Whether `ip` is a globally routable unicast address: not loopback,
/// private, carrier-grade NAT, link-local, unspecified, broadcast,
/// multicast, documentation, benchmarking or reserved; IPv4-mapped and
/// IPv4-compatible IPv6 addresses are judged as the IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let first = s.first().copied().unwrap_or(0);
    // The deprecated IPv4-compatible form ::a.b.c.d.
    if s.iter().take(6).all(|x| *x == 0) && !ip.is_loopback() && !ip.is_unspecified() {
        let [_, _, _, _, _, _, hi, lo] = s;
        let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        return is_public_v4(v4);
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (first == 0x2001 && s.get(1) == Some(&0x0db8)) // documentation
        || first == 0x0064 // NAT64 64:ff9b::/96 (reaches IPv4 space)
        || first == 0x0100) // discard 100::/64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_rules() {
        assert!(parse("https://siem.example.com/hook?x=1").is_ok());
        for bad in [
            "http://siem.example.com/hook",
            "ftp://siem.example.com/",
            "https://user:pw@siem.example.com/",
            "https://user@siem.example.com/",
            "https://siem.example.com/#frag",
            "not a url",
            "",
            "https://",
        ] {
            assert!(
                matches!(parse(bad), Err(UrlError::Invalid(_))),
                "{bad:?} accepted"
            );
        }
        assert!(parse(&format!("https://a.example/{}", "x".repeat(MAX_URL_LEN))).is_err());
    }

    #[test]
    fn non_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} counted as public");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} counted as private");
        }
    }

    #[tokio::test]
    async fn literals_are_checked_without_dns() {
        let url = parse("https://127.0.0.1:8443/x").unwrap();
        assert!(matches!(
            resolve(&url, false).await,
            Err(UrlError::Private(_))
        ));
        let t = resolve(&url, true).await.unwrap();
        assert_eq!(t.addrs, vec!["127.0.0.1:8443".parse().unwrap()]);
        assert!(t.domain.is_none());
        let url = parse("https://[::1]/x").unwrap();
        assert!(matches!(
            resolve(&url, false).await,
            Err(UrlError::Private(_))
        ));
        let url = parse("https://localhost:9/x").unwrap();
        assert!(matches!(
            resolve(&url, false).await,
            Err(UrlError::Private(_))
        ));
    }
}
