//! The client-address rule: examples of every header shape, and property
//! tests over generated headers against a plain model of the rule.

use super::*;
use axum::http::HeaderValue;
use proptest::prelude::*;

fn headers(xff: &[&[u8]]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in xff {
        h.append("x-forwarded-for", HeaderValue::from_bytes(v).unwrap());
    }
    h
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn known(s: &str) -> ClientAddr {
    ClientAddr::Known(ip(s))
}

fn trusted() -> Vec<IpNet> {
    ["10.0.0.0/8", "2001:db8:ffff::/48"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect()
}

const PROXY: &str = "10.1.2.3";

#[test]
fn forwarded_for_is_believed_only_from_trusted_peers() {
    let t = trusted();
    // Untrusted peer: its header is ignored.
    assert_eq!(
        resolve(ip("203.0.113.7"), &headers(&[b"198.51.100.1"]), &t),
        known("203.0.113.7")
    );
    // Trusted peer: the nearest untrusted hop from the right.
    assert_eq!(
        resolve(
            ip(PROXY),
            &headers(&[b"198.51.100.1, 203.0.113.7, 10.9.9.9"]),
            &t
        ),
        known("203.0.113.7")
    );
    assert_eq!(
        resolve(ip(PROXY), &headers(&[b"198.51.100.1", b"203.0.113.7"]), &t),
        known("203.0.113.7")
    );
    // No header: the peer itself is the client.
    assert_eq!(resolve(ip(PROXY), &headers(&[]), &t), known(PROXY));
    // Every hop trusted: the leftmost, not the proxy.
    assert_eq!(
        resolve(ip(PROXY), &headers(&[b"10.7.7.7, 10.8.8.8"]), &t),
        known("10.7.7.7")
    );
}

#[test]
fn junk_left_of_the_client_is_ignored_and_junk_at_or_right_of_it_is_unknown() {
    let t = trusted();
    let at = |xff: &[&[u8]]| resolve(ip(PROXY), &headers(xff), &t);
    // The attack of issue #17: junk prepended by the client.
    assert_eq!(at(&[b"junk, 198.51.100.23"]), known("198.51.100.23"));
    assert_eq!(at(&[b"junk", b"198.51.100.23"]), known("198.51.100.23"));
    // An unreadable entry where the client should be, or between it and us.
    assert_eq!(at(&[b"not-an-ip"]), ClientAddr::Unknown);
    assert_eq!(at(&[b"198.51.100.23, junk"]), ClientAddr::Unknown);
    assert_eq!(at(&[b"198.51.100.23, junk, 10.0.0.9"]), ClientAddr::Unknown);
    for entry in [
        &b"unknown"[..],
        b"UNKNOWN",
        b"_hidden",
        b"_abc123",
        b"fe80::1%eth0",
        b"[fe80::1%2]:80",
        b"010.1.2.3",
        b"1.2.3",
        b"0x7f.0.0.1",
        b"\"198.51.100.23\"",
        b"[198.51.100.23]",
        b"198.51.100.23:",
        b"198.51.100.23:65536",
        b"2001:db8::1]",
        b"198.51.100.23\xff",
        b"\xc3\xa9",
    ] {
        assert_eq!(at(&[entry]), ClientAddr::Unknown, "{entry:?}");
    }
    let long = "1".repeat(MAX_ENTRY_LEN + 1);
    assert_eq!(at(&[long.as_bytes()]), ClientAddr::Unknown);
}

#[test]
fn ports_brackets_blanks_and_empty_entries() {
    let t = trusted();
    let at = |xff: &[&[u8]]| resolve(ip(PROXY), &headers(xff), &t);
    assert_eq!(at(&[b"198.51.100.23:443"]), known("198.51.100.23"));
    assert_eq!(at(&[b"[2001:db8::1]:443"]), known("2001:db8::1"));
    assert_eq!(at(&[b"[2001:db8::1]"]), known("2001:db8::1"));
    assert_eq!(at(&[b" \t198.51.100.23\t "]), known("198.51.100.23"));
    assert_eq!(
        at(&[b"198.51.100.23,,", b"", b" , "]),
        known("198.51.100.23")
    );
    // Only empty entries: as if there were no header.
    assert_eq!(at(&[b"", b" , ,"]), known(PROXY));
}

#[test]
fn ipv4_mapped_ipv6_is_the_ipv4_client() {
    let t = trusted();
    let at = |peer: &str, xff: &[&[u8]]| resolve(ip(peer), &headers(xff), &t);
    for entry in [
        &b"::ffff:198.51.100.23"[..],
        b"0:0:0:0:0:ffff:c633:6417",
        b"[::ffff:198.51.100.23]:8080",
    ] {
        assert_eq!(at(PROXY, &[entry]), known("198.51.100.23"), "{entry:?}");
    }
    // A mapped peer is trusted like its IPv4 twin, and recorded as it.
    assert_eq!(
        at("::ffff:10.1.2.3", &[b"198.51.100.23"]),
        known("198.51.100.23")
    );
    assert_eq!(
        at("::ffff:203.0.113.9", &[b"198.51.100.23"]),
        known("203.0.113.9")
    );
    // A mapped hop inside the trusted range is skipped like its twin.
    assert_eq!(
        at(PROXY, &[b"198.51.100.23, ::ffff:10.4.4.4"]),
        known("198.51.100.23")
    );
    // Trusted ranges written mapped match IPv4 peers.
    let mapped: Vec<IpNet> = vec![canonical_net("::ffff:10.0.0.0/104".parse().unwrap())];
    assert_eq!(mapped[0], "10.0.0.0/8".parse::<IpNet>().unwrap());
    assert_eq!(
        resolve(ip(PROXY), &headers(&[b"198.51.100.23"]), &mapped),
        known("198.51.100.23")
    );
    assert_eq!(
        canonical_net("2001:db8::/32".parse().unwrap()),
        "2001:db8::/32".parse::<IpNet>().unwrap()
    );
}

#[test]
fn too_many_trusted_hops_is_unknown() {
    let t = trusted();
    let hops = vec!["10.0.0.1"; MAX_HOPS].join(",");
    assert_eq!(
        resolve(ip(PROXY), &headers(&[hops.as_bytes()]), &t),
        known("10.0.0.1")
    );
    let more = format!("198.51.100.23,{hops}");
    assert_eq!(
        resolve(ip(PROXY), &headers(&[more.as_bytes()]), &t),
        ClientAddr::Unknown
    );
}

#[test]
fn limit_keys_fold_ipv6_to_its_64_and_mapped_to_ipv4() {
    let key = |s: &str| ClientAddr::of(ip(s)).limit_key();
    assert_eq!(
        key("2001:db8:1:2::1"),
        key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    );
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_eq!(key("::ffff:198.51.100.23"), key("198.51.100.23"));
    assert_eq!(
        ClientAddr::Known(ip("::ffff:198.51.100.23")).limit_key(),
        key("198.51.100.23")
    );
    assert_eq!(ClientAddr::Unknown.limit_key(), LimitKey::Unknown);
    assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    assert_eq!(key("198.51.100.23").to_string(), "198.51.100.23");
    assert_eq!(ClientAddr::Unknown.to_string(), "unknown");
    assert_eq!(ClientAddr::of(ip("::ffff:1.2.3.4")).to_string(), "1.2.3.4");
    assert_eq!(ClientAddr::from_recorded(Some("1.2.3.4")), known("1.2.3.4"));
    assert_eq!(
        ClientAddr::from_recorded(Some("unknown")),
        ClientAddr::Unknown
    );
    assert_eq!(ClientAddr::from_recorded(None), ClientAddr::Unknown);
}

// ---------------------------------------------------------------------------
// Properties over generated headers.

/// One entry as meant, before it is written out.
#[derive(Debug, Clone)]
enum Entry {
    Addr(IpAddr),
    Junk(Vec<u8>),
    Empty,
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u16; 8]>().prop_map(IpAddr::from),
        // Inside the trusted ranges, often.
        any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::from([10, a, b, c])),
        any::<[u16; 5]>()
            .prop_map(|[a, b, c, d, e]| { IpAddr::from([0x2001, 0xdb8, 0xffff, a, b, c, d, e]) }),
    ]
}

fn junk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"unknown".to_vec()),
        Just(b"_hidden".to_vec()),
        Just(b"fe80::1%eth0".to_vec()),
        Just(b"010.1.2.3".to_vec()),
        Just(b"\"1.2.3.4\"".to_vec()),
        Just(b"1.2.3.4:".to_vec()),
        Just(vec![b'1'; MAX_ENTRY_LEN + 1]),
        // Letters, punctuation and high bytes: never an address.
        proptest::collection::vec(
            prop_oneof![b'g'..=b'z', Just(b'_'), Just(b'"'), 0x80u8..=0xff],
            1..20
        ),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        6 => any_ip().prop_map(Entry::Addr),
        2 => junk().prop_map(Entry::Junk),
        1 => Just(Entry::Empty),
    ]
}

/// Writes `ip` in one of its accepted spellings (`style` picks one).
fn spell(ip: IpAddr, style: u8) -> String {
    let plain = match ip {
        IpAddr::V4(v4) if style % 4 == 1 => format!("::ffff:{v4}"),
        IpAddr::V4(v4) if style % 4 == 2 => {
            let [a, b, c, d] = v4.octets();
            format!(
                "0:0:0:0:0:ffff:{:x}:{:x}",
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d])
            )
        }
        other => other.to_string(),
    };
    let v6 = plain.contains(':');
    let text = match (style / 4) % 3 {
        1 if v6 => format!("[{plain}]:{}", 1 + u16::from(style)),
        1 => format!("{plain}:{}", 1 + u16::from(style)),
        2 if v6 => format!("[{plain}]"),
        _ => plain,
    };
    match style / 12 {
        1 => format!(" {text}"),
        2 => format!("\t{text} "),
        _ => text,
    }
}

/// The entries written out, as the values of one or more headers.
fn render(entries: &[Entry], styles: &[u8], cuts: &[bool]) -> Vec<Vec<u8>> {
    let mut values = vec![Vec::new()];
    for (i, e) in entries.iter().enumerate() {
        let style = styles.get(i).copied().unwrap_or(0);
        let cut = cuts.get(i).copied().unwrap_or(false);
        let last = values.last_mut().unwrap();
        if i > 0 {
            if cut {
                values.push(Vec::new());
            } else {
                last.push(b',');
            }
        }
        let bytes = match e {
            Entry::Addr(ip) => spell(*ip, style).into_bytes(),
            Entry::Junk(j) => j.clone(),
            Entry::Empty => Vec::new(),
        };
        values.last_mut().unwrap().extend(bytes);
    }
    values
}

/// The rule, written plainly over meant entries.
fn model(peer: IpAddr, entries: &[Entry], trusted: &[IpNet]) -> ClientAddr {
    let peer = peer.to_canonical();
    if !in_any(trusted, peer) {
        return ClientAddr::Known(peer);
    }
    let mut leftmost = None;
    for (walked, e) in entries
        .iter()
        .rev()
        .filter(|e| !matches!(e, Entry::Empty))
        .enumerate()
    {
        if walked >= MAX_HOPS {
            return ClientAddr::Unknown;
        }
        match e {
            Entry::Addr(ip) if in_any(trusted, ip.to_canonical()) => {
                leftmost = Some(ip.to_canonical())
            }
            Entry::Addr(ip) => return ClientAddr::Known(ip.to_canonical()),
            _ => return ClientAddr::Unknown,
        }
    }
    ClientAddr::Known(leftmost.unwrap_or(peer))
}

fn header_map(values: &[Vec<u8>]) -> HeaderMap {
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    headers(&refs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any entries, in any spelling, split over any number of headers:
    /// the answer is the model's.
    #[test]
    fn resolve_follows_the_rule(
        peer in any_ip(),
        entries in proptest::collection::vec(entry(), 0..12),
        styles in proptest::collection::vec(any::<u8>(), 12),
        cuts in proptest::collection::vec(any::<bool>(), 12),
    ) {
        let t = trusted();
        let values = render(&entries, &styles, &cuts);
        prop_assert_eq!(resolve(peer, &header_map(&values), &t), model(peer, &entries, &t));
    }

    /// Whatever a client writes in front of what the proxies append, the
    /// client is the address the proxies saw, never the proxy.
    #[test]
    fn a_client_cannot_change_its_address(
        forged in proptest::collection::vec(entry(), 0..8),
        client in any_ip().prop_filter("untrusted", |ip| !in_any(&trusted(), ip.to_canonical())),
        hops in proptest::collection::vec(any::<[u8; 3]>(), 0..3),
        styles in proptest::collection::vec(any::<u8>(), 12),
        cuts in proptest::collection::vec(any::<bool>(), 12),
    ) {
        let mut entries = forged;
        entries.push(Entry::Addr(client));
        entries.extend(hops.iter().map(|[a, b, c]| Entry::Addr(IpAddr::from([10, *a, *b, *c]))));
        let values = render(&entries, &styles, &cuts);
        prop_assert_eq!(
            resolve(ip(PROXY), &header_map(&values), &trusted()),
            ClientAddr::Known(client.to_canonical())
        );
    }

    /// An unreadable entry between the client and us makes it unknown.
    #[test]
    fn junk_the_proxies_pass_on_is_unknown(
        forged in proptest::collection::vec(entry(), 0..8),
        bad in junk(),
        hops in proptest::collection::vec(any::<[u8; 3]>(), 0..3),
        cuts in proptest::collection::vec(any::<bool>(), 12),
    ) {
        let mut entries = forged;
        entries.push(Entry::Junk(bad));
        entries.extend(hops.iter().map(|[a, b, c]| Entry::Addr(IpAddr::from([10, *a, *b, *c]))));
        let values = render(&entries, &[], &cuts);
        prop_assert_eq!(resolve(ip(PROXY), &header_map(&values), &trusted()), ClientAddr::Unknown);
    }

    /// An untrusted peer is the client, whatever it sends.
    #[test]
    fn an_untrusted_peer_is_its_own_client(
        peer in any_ip().prop_filter("untrusted", |ip| !in_any(&trusted(), ip.to_canonical())),
        entries in proptest::collection::vec(entry(), 0..8),
    ) {
        let values = render(&entries, &[], &[]);
        prop_assert_eq!(
            resolve(peer, &header_map(&values), &trusted()),
            ClientAddr::Known(peer.to_canonical())
        );
    }
}
