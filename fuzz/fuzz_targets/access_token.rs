//! Fuzzes access-token verification: `stockade::crypto::jwt::Keyring::verify`.
//!
//! Property: `verify` never panics, whatever the token, and a token it accepts
//! always satisfies the checks it promises (issuer, audience, expiry, `iat`
//! skew). The first input byte picks how the rest becomes a token:
//!
//! * `0`: the bytes as a string, verbatim (the raw `Authorization` value).
//! * `1`: three byte strings, each base64url-encoded and joined with `.`, so
//!   the fuzzer gets past the JWT framing and base64 straight into the header
//!   JSON parsing (the signature is garbage, so it stops at the signature).
//! * `2`: a fuzzed header JSON and payload JSON, *validly signed* with the
//!   keyring's Ed25519 or HS256 key, so the fuzzer also reaches the claims
//!   deserialisation and validation behind the signature check.
//! * `3`: the genuine header of one of the keyring's keys and a fuzzed payload
//!   JSON, validly signed (the same, with the header search skipped).
//! * `4`: structured claims, signed by `Keyring::issue`, must verify exactly
//!   when they are valid at `now` and come back unchanged.
//! * `5`: a structured header (`alg`, `kid`, `typ` each right, absent or
//!   arbitrary) over structured claims, signed by either key: must verify
//!   exactly when the header names a known key with that key's algorithm, was
//!   signed by that key, has no foreign `typ`, and the claims are valid.
//!
//! Every input also goes through mode 0, so the whole input is always tried as
//! a raw token too.

#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use stockade::crypto::jwt::{
    ActClaim, Claims, KeyEntry, KeySecret, Keyring, MAX_IAT_SKEW_SECONDS, MAX_TOKEN_BYTES,
    TokenError,
};

const ISS: &str = "iss";
const AUD: &str = "aud";
const ED_KID: &str = "fuzz-ed";
const HS_KID: &str = "fuzz-hs";
/// 2023-11-14T22:13:20Z.
const NOW_TS: i64 = 1_700_000_000;

struct Fixture {
    ring: Keyring,
    ed: SigningKey,
    hs: jsonwebtoken::EncodingKey,
    now: DateTime<Utc>,
}

/// Built once per process: key parsing is not what is being fuzzed, and
/// rebuilding it per input would cost most of the throughput.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let now = DateTime::from_timestamp(NOW_TS, 0).expect("fixed timestamp");
        let ed = SigningKey::from_bytes(&[7u8; 32]);
        let hs_secret = [9u8; 64];
        // The current EdDSA key signs; a retired HS256 key still verifies at
        // `now` (retired at `now`, inside RETIRED_KEY_GRACE), so both
        // verification paths are reachable.
        let ring = Keyring::new(
            KeyEntry::signing(ED_KID, KeySecret::Ed25519(&ed)).expect("ed25519 key"),
            [KeyEntry::verifying(HS_KID, KeySecret::Hs256(&hs_secret), now).expect("hs256 key")],
        )
        .expect("keyring");
        Fixture {
            ring,
            ed,
            hs: jsonwebtoken::EncodingKey::from_secret(&hs_secret),
            now,
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature`, validly signed by the fixture's Ed25519 key
/// (`ed == true`, independently of jsonwebtoken) or HS256 secret.
fn signed(fx: &Fixture, header_json: &[u8], payload_json: &[u8], ed: bool) -> String {
    let message = format!("{}.{}", b64(header_json), b64(payload_json));
    let signature = if ed {
        b64(&fx.ed.sign(message.as_bytes()).to_bytes())
    } else {
        jsonwebtoken::crypto::sign(message.as_bytes(), &fx.hs, jsonwebtoken::Algorithm::HS256)
            .expect("hs256 signing")
    };
    format!("{message}.{signature}")
}

/// Verifies `token` and checks that whatever is accepted really is valid.
fn check(fx: &Fixture, token: &str) -> Result<Claims, TokenError> {
    let result = fx.ring.verify(token, fx.now, ISS, AUD);
    match &result {
        Ok(claims) => {
            assert!(token.len() <= MAX_TOKEN_BYTES, "oversized token accepted");
            assert_eq!(claims.iss, ISS, "wrong issuer accepted");
            assert_eq!(claims.aud, AUD, "wrong audience accepted");
            assert!(claims.exp > NOW_TS, "expired token accepted");
            assert!(
                claims.iat <= NOW_TS + MAX_IAT_SKEW_SECONDS,
                "token from the future accepted"
            );
        }
        Err(e) => assert!(
            e.is_client_error(),
            "server-side error {e:?} for a client token"
        ),
    }
    result
}

/// Mode 4: claims whose fields are mostly right, so all the checks are hit.
#[derive(Debug, Arbitrary)]
struct FuzzClaims {
    iss: Choice,
    aud: Choice,
    sub: String,
    tid: String,
    sid: String,
    jti: String,
    /// Seconds from `now`: mostly a few minutes either way, sometimes wild.
    iat: Offset,
    exp: Offset,
    act: Option<String>,
}

#[derive(Debug, Arbitrary)]
enum Choice {
    Right,
    Other(String),
}

impl Choice {
    fn value(self, right: &str) -> String {
        match self {
            Self::Right => right.to_owned(),
            Self::Other(s) => s,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Offset {
    Near(i16),
    Absolute(i64),
}

impl Offset {
    fn at(self) -> i64 {
        match self {
            Self::Near(d) => NOW_TS + i64::from(d),
            Self::Absolute(t) => t,
        }
    }
}

fn structured(fx: &Fixture, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let claims = claims_of(FuzzClaims::arbitrary(u)?);
    let token = fx.ring.issue(&claims).expect("issuing never fails");
    let valid = token.len() <= MAX_TOKEN_BYTES && claims_valid(&claims);
    match check(fx, &token) {
        Ok(back) => {
            assert!(valid, "invalid claims accepted: {claims:?}");
            assert_eq!(back, claims, "claims changed in the round trip");
        }
        Err(e) => assert!(!valid, "valid claims refused ({e:?}): {claims:?}"),
    }
    Ok(())
}

#[derive(Debug, Arbitrary)]
enum Alg {
    EdDsa,
    Hs256,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Kid {
    Ed,
    Hs,
    Absent,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Typ {
    Jwt,
    Absent,
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct FuzzHeader {
    alg: Alg,
    kid: Kid,
    typ: Typ,
    /// Which of the fixture's keys really signs.
    sign_with_ed: bool,
}

fn claims_of(c: FuzzClaims) -> Claims {
    Claims {
        iss: c.iss.value(ISS),
        aud: c.aud.value(AUD),
        sub: c.sub,
        tid: c.tid,
        sid: c.sid,
        iat: c.iat.at(),
        exp: c.exp.at(),
        jti: c.jti,
        act: c.act.map(|sub| ActClaim { sub }),
    }
}

fn claims_valid(claims: &Claims) -> bool {
    claims.iss == ISS
        && claims.aud == AUD
        && claims.exp > NOW_TS
        && claims.iat <= NOW_TS + MAX_IAT_SKEW_SECONDS
}

fn structured_header(fx: &Fixture, u: &mut Unstructured<'_>) -> arbitrary::Result<()> {
    let h = FuzzHeader::arbitrary(u)?;
    let claims = claims_of(FuzzClaims::arbitrary(u)?);
    let alg = match h.alg {
        Alg::EdDsa => "EdDSA".to_owned(),
        Alg::Hs256 => "HS256".to_owned(),
        Alg::Other(s) => s,
    };
    let kid = match h.kid {
        Kid::Ed => Some(ED_KID.to_owned()),
        Kid::Hs => Some(HS_KID.to_owned()),
        Kid::Absent => None,
        Kid::Other(s) => Some(s),
    };
    let typ = match h.typ {
        Typ::Jwt => Some("JWT".to_owned()),
        Typ::Absent => None,
        Typ::Other(s) => Some(s),
    };
    let mut header = serde_json::json!({ "alg": alg });
    if let Some(kid) = &kid {
        header["kid"] = kid.as_str().into();
    }
    if let Some(typ) = &typ {
        header["typ"] = typ.as_str().into();
    }
    let header_json = serde_json::to_vec(&header).expect("json");
    let payload_json = serde_json::to_vec(&claims).expect("json");
    let token = signed(fx, &header_json, &payload_json, h.sign_with_ed);

    let right_key = match kid.as_deref() {
        Some(ED_KID) => alg == "EdDSA" && h.sign_with_ed,
        Some(HS_KID) => alg == "HS256" && !h.sign_with_ed,
        _ => false,
    };
    let valid = token.len() <= MAX_TOKEN_BYTES
        && typ.as_deref().is_none_or(|t| t == "JWT")
        && right_key
        && claims_valid(&claims);
    match check(fx, &token) {
        Ok(back) => {
            assert!(valid, "invalid token accepted: {header} {claims:?}");
            assert_eq!(back, claims, "claims changed in the round trip");
        }
        Err(e) => assert!(!valid, "valid token refused ({e:?}): {header} {claims:?}"),
    }
    Ok(())
}

fn run(fx: &Fixture, mode: u8, rest: &[u8]) -> arbitrary::Result<()> {
    let mut u = Unstructured::new(rest);
    match mode % 6 {
        0 => {}
        1 => {
            let header = <&[u8]>::arbitrary(&mut u)?;
            let payload = <&[u8]>::arbitrary(&mut u)?;
            let signature = u.take_rest();
            let token = format!("{}.{}.{}", b64(header), b64(payload), b64(signature));
            let _ = check(fx, &token);
        }
        2 => {
            let ed = bool::arbitrary(&mut u)?;
            let header = <&[u8]>::arbitrary(&mut u)?;
            let payload = u.take_rest();
            let _ = check(fx, &signed(fx, header, payload, ed));
        }
        3 => {
            let ed = bool::arbitrary(&mut u)?;
            let header = if ed {
                format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{ED_KID}"}}"#)
            } else {
                format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{HS_KID}"}}"#)
            };
            let payload = u.take_rest();
            let _ = check(fx, &signed(fx, header.as_bytes(), payload, ed));
        }
        4 => structured(fx, &mut u)?,
        _ => structured_header(fx, &mut u)?,
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let _ = check(fx, &String::from_utf8_lossy(data));
    if let Some((&mode, rest)) = data.split_first() {
        let _ = run(fx, mode, rest);
    }
});
