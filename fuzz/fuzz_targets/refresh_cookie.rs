//! Fuzzes the refresh-cookie path: the `Cookie` request header is split with
//! `cookie::Cookie::split_parse` (as `sessions::routes` does) and each value
//! is parsed with `stockade::sessions::RefreshToken::parse`.
//!
//! Properties:
//! * nothing panics, whatever the header;
//! * every accepted token round-trips: `RefreshToken::parse(&t.encode())`
//!   succeeds with the same `hash()` and `tenant()`, and since the format is
//!   strict (lowercase hex, unpadded base64url, zero trailing bits), the
//!   accepted value *is* the canonical encoding: `t.encode() == value`;
//! * a well-formed value built from the input (16 tenant bytes as 32 lowercase
//!   hex digits, 32 secret bytes as 43 base64url characters) is always
//!   accepted and encodes back to itself.
//!
//! The input is tried as a whole `Cookie` header, as the value of a lone
//! refresh cookie (`__Host-stockade_refresh=<input>`), and as a bare value.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::Cookie;
use libfuzzer_sys::fuzz_target;
use stockade::sessions::{REFRESH_COOKIE, RefreshToken};

/// Parses `value` and, when it is accepted, checks the round trip.
fn parse_checked(value: &str) -> Option<RefreshToken> {
    let token = RefreshToken::parse(value)?;
    let encoded = token.encode();
    let back = RefreshToken::parse(&encoded).expect("an encoded token parses");
    assert_eq!(back.hash(), token.hash(), "hash changed in the round trip");
    assert_eq!(
        back.tenant(),
        token.tenant(),
        "tenant changed in the round trip"
    );
    assert_eq!(
        encoded.as_str(),
        value,
        "a non-canonical refresh token was accepted"
    );
    Some(token)
}

/// What the server does with a `Cookie` header, with every cookie's value
/// (not only the refresh cookie's) fed to the parser as well.
fn header(value: &str) -> Option<RefreshToken> {
    let mut found = None;
    for cookie in Cookie::split_parse(value).filter_map(Result::ok) {
        let token = parse_checked(cookie.value());
        if found.is_none() && cookie.name() == REFRESH_COOKIE {
            found = Some(token);
        }
    }
    found.flatten()
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let _ = header(&input);
    let _ = header(&format!("{REFRESH_COOKIE}={input}"));
    let _ = parse_checked(&input);

    // Positive direction: a value in the exact format must be accepted.
    if let Some((tenant, rest)) = data.split_first_chunk::<16>() {
        if let Some((secret, _)) = rest.split_first_chunk::<32>() {
            let hex: String = tenant.iter().map(|b| format!("{b:02x}")).collect();
            let value = format!("{hex}.{}", URL_SAFE_NO_PAD.encode(secret));
            let token = parse_checked(&value).expect("a well-formed refresh token is accepted");
            let cookie_header = format!("a=b; {REFRESH_COOKIE}={value}; c=d");
            let via_header = header(&cookie_header).expect("the refresh cookie is found");
            assert_eq!(via_header.hash(), token.hash());
            assert_eq!(via_header.tenant(), token.tenant());
        }
    }
});
