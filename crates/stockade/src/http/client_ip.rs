//! The client's address: the socket peer, or — only when that peer is a
//! trusted proxy (`STOCKADE_TRUSTED_PROXIES`) — read from `X-Forwarded-For`
//! from the right, so a client cannot prepend a spoofed one.
//!
//! The rule ([`resolve`]), for a request whose peer is trusted: walk the
//! entries of every `X-Forwarded-For` header (several headers are one list,
//! in order) from the right; skip entries in a trusted range; the first
//! entry that is not is the client. An entry that cannot be read at or right
//! of that point makes the client [`ClientAddr::Unknown`] — never the
//! proxy's own address. When every entry is trusted the leftmost is the
//! client; with no entry at all, the peer is.
//!
//! Header shapes, decided once here:
//! - empty entries (`a,,b`, a trailing comma, an empty header) are skipped,
//!   as HTTP list syntax requires; spaces and tabs around entries are
//!   ignored;
//! - `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, `1.2.3.4:80` and
//!   `[2001:db8::1]:443` are addresses (the port is dropped);
//! - IPv4-mapped IPv6 (`::ffff:10.1.2.3`, `0:0:0:0:0:ffff:a01:203`) is its
//!   IPv4 address, in entries, for the socket peer and in trusted ranges;
//! - unreadable: the literal `unknown`, obfuscated identifiers (`_hidden`),
//!   zone ids (`fe80::1%eth0`), IPv4 with leading zeros or fewer than four
//!   parts, quoted strings, anything else `std::net` does not parse, an entry
//!   longer than [`MAX_ENTRY_LEN`] bytes, and non-ASCII bytes (headers are
//!   split on `,` as bytes, so one bad entry does not spoil its neighbours);
//! - more than [`MAX_HOPS`] non-empty entries walked without finding the
//!   client: unknown.
//!
//! The RFC 7239 `Forwarded` header is not read.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::{IpNet, Ipv4Net};

use super::auth_state::AuthState;

/// Longest `X-Forwarded-For` entry read (the longest address with brackets
/// and a port is 53 bytes).
pub const MAX_ENTRY_LEN: usize = 64;

/// Most non-empty entries walked from the right before giving up (unknown).
pub const MAX_HOPS: usize = 32;

/// Who the client of a request is, as far as it can be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAddr {
    /// The client's address; IPv4-mapped IPv6 is always folded into IPv4.
    Known(IpAddr),
    /// A trusted proxy forwarded an entry that cannot be read: the client
    /// is nobody in particular. Refused by any tenant allowlist, limited
    /// under one shared key, recorded as `unknown`.
    Unknown,
}

impl ClientAddr {
    /// The client at `ip` (canonical: IPv4-mapped IPv6 becomes IPv4).
    pub fn of(ip: IpAddr) -> Self {
        Self::Known(ip.to_canonical())
    }

    /// The address, when known.
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            Self::Known(ip) => Some(ip),
            Self::Unknown => None,
        }
    }

    /// The key per-address limits and samplers count under: an IPv4
    /// address, an IPv6 /64 (one subscriber's network), or the one shared
    /// key of every unknown client.
    pub fn limit_key(self) -> LimitKey {
        match self {
            Self::Known(IpAddr::V4(v4)) => LimitKey::V4(v4),
            Self::Known(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => LimitKey::V4(v4),
                None => LimitKey::V6Net((v6.to_bits() >> 64) as u64),
            },
            Self::Unknown => LimitKey::Unknown,
        }
    }

    /// Reads back what [`fmt::Display`] recorded (a session's or an audit
    /// context's `ip`). Absent or unreadable is unknown, so a context with
    /// no address fails closed against an allowlist.
    pub fn from_recorded(recorded: Option<&str>) -> Self {
        match recorded.map(str::parse::<IpAddr>) {
            Some(Ok(ip)) => Self::of(ip),
            _ => Self::Unknown,
        }
    }
}

/// How a client is written in audit events, sessions and API-key last use:
/// the address, or `unknown`.
impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(ip) => ip.fmt(f),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// What per-address limits count under (see [`ClientAddr::limit_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of an IPv6 address.
    V6Net(u64),
    Unknown,
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(ip) => ip.fmt(f),
            Self::V6Net(net) => write!(f, "{}/64", Ipv6Addr::from_bits(u128::from(*net) << 64)),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// A range of IPv4-mapped IPv6 addresses (within `::ffff:0:0/96`) as the
/// IPv4 range it stands for, so it matches canonical addresses; any other
/// range unchanged.
pub fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && let Ok(mapped) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(mapped);
    }
    net
}

/// Whether `ip` (canonical) is in one of `nets` (canonical).
pub fn in_any(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}

/// The client of a request (resolved once per request, then kept in its
/// extensions). Without a socket peer (a router called directly) the client
/// is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub ClientAddr);

impl ClientIp {
    /// The client of the request behind `parts`, with `trusted` the proxies
    /// whose `X-Forwarded-For` is read (resolved once, then kept).
    pub fn of(parts: &mut Parts, trusted: &[IpNet]) -> Self {
        if let Some(known) = parts.extensions.get::<ClientIp>() {
            return *known;
        }
        let client = match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(peer) => resolve(peer.0.ip(), &parts.headers, trusted),
            None => ClientAddr::Unknown,
        };
        parts.extensions.insert(ClientIp(client));
        Self(client)
    }
}

impl<S> FromRequestParts<S> for ClientIp
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(known) = parts.extensions.get::<ClientIp>() {
            return Ok(*known);
        }
        let state = AuthState::from_ref(state);
        Ok(Self::of(parts, &state.config.trusted_proxies))
    }
}

/// The pure rule (see the module documentation). `trusted` holds canonical
/// ranges ([`canonical_net`]; the configuration stores them so).
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientAddr {
    let peer = peer.to_canonical();
    if !in_any(trusted, peer) {
        return ClientAddr::Known(peer);
    }
    let values: Vec<&[u8]> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    let mut leftmost = None;
    let mut walked = 0;
    for value in values.iter().rev() {
        for entry in value.rsplit(|b| *b == b',').map(trim) {
            if entry.is_empty() {
                continue;
            }
            walked += 1;
            if walked > MAX_HOPS {
                return ClientAddr::Unknown;
            }
            match parse_entry(entry) {
                None => return ClientAddr::Unknown,
                Some(ip) if in_any(trusted, ip) => leftmost = Some(ip),
                Some(ip) => return ClientAddr::Known(ip),
            }
        }
    }
    ClientAddr::Known(leftmost.unwrap_or(peer))
}

fn trim(entry: &[u8]) -> &[u8] {
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = entry.iter().position(|b| !blank(b)).unwrap_or(entry.len());
    let end = entry
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    entry.get(start..end).unwrap_or_default()
}

/// One trimmed, non-empty entry: its canonical address, or `None` when it
/// cannot be read.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    if entry.len() > MAX_ENTRY_LEN {
        return None;
    }
    let text = std::str::from_utf8(entry).ok()?;
    if text.contains('%') {
        return None; // a zone id names an interface of some other host
    }
    let ip = if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else if let Ok(socket) = text.parse::<SocketAddr>() {
        socket.ip()
    } else {
        let inner = text.strip_prefix('[')?.strip_suffix(']')?;
        IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests;
