//! TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps, one step of skew
//! either way), computed by `totp-rs`. What this module adds is the rule the
//! crate leaves to its caller: a code is accepted **once**. The caller
//! stores the last accepted time step; [`verify`] accepts only a later step,
//! so the same code — or any earlier one still inside the window — never
//! works twice.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds per step.
pub const STEP_SECS: u64 = 30;
/// Steps accepted either side of the current one (clock drift).
pub const SKEW: u64 = 1;
/// Bytes of a secret: 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;

/// Why a submitted code cannot even be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a code is 6 digits (0-9)")]
    Malformed,
}

/// A fresh random secret.
pub fn new_secret() -> anyhow::Result<Zeroizing<[u8; SECRET_BYTES]>> {
    crate::crypto::random::secret_bytes::<SECRET_BYTES>()
}

/// The generator for `secret`, labelled `issuer:account` for authenticator
/// apps. A colon in either label (which `otpauth://` reserves) becomes `_`.
pub fn generator(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<Totp> {
    let label = |s: &str| s.replace(':', "_");
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_skew(SKEW as u16)
        .with_step_duration(STEP_SECS)
        .with_secret(secret.to_vec())
        .with_issuer(Some(label(issuer)))
        .with_account_name(label(account))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the TOTP generator: {e}"))
}

/// The `otpauth://totp/…` URI an authenticator app scans.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> anyhow::Result<String> {
    generator(secret, issuer, account)?
        .to_url()
        .map_err(|e| anyhow::anyhow!("cannot write the otpauth URI: {e}"))
}

/// The secret as an authenticator app's manual entry (RFC 4648 base32).
pub fn secret_base32(secret: &[u8]) -> Zeroizing<String> {
    Zeroizing::new(totp_rs::Secret::from(secret.to_vec()).to_base32())
}

/// A base32 secret read back (an app's manual entry; tests play the app).
pub fn decode_base32(secret: &str) -> Option<Zeroizing<Vec<u8>>> {
    let secret = totp_rs::Secret::try_from_base32(secret).ok()?;
    Some(Zeroizing::new(secret.as_ref().to_vec()))
}

/// A submitted code: exactly six ASCII digits, spaces ignored (apps show
/// `123 456`). Anything else — letters, full-width or other Unicode
/// digits, more or fewer digits — is malformed.
pub fn parse_code(input: &str) -> Result<[u8; DIGITS], CodeError> {
    if input.len() > 32 {
        return Err(CodeError::Malformed);
    }
    let mut out = [0u8; DIGITS];
    let mut n = 0;
    for b in input.bytes() {
        match b {
            b' ' => continue,
            b'0'..=b'9' => {
                let slot = out.get_mut(n).ok_or(CodeError::Malformed)?;
                *slot = b;
                n += 1;
            }
            _ => return Err(CodeError::Malformed),
        }
    }
    if n != DIGITS {
        return Err(CodeError::Malformed);
    }
    Ok(out)
}

/// The time step `code` belongs to, if it is the code of a step within
/// [`SKEW`] of `now_unix` **and later than `last_step`** (the last step
/// accepted for this secret). The caller stores the answer as the new last
/// step. Every candidate step is computed and compared in constant time.
pub fn verify(
    secret: &[u8],
    code: &[u8; DIGITS],
    now_unix: i64,
    last_step: Option<u64>,
) -> Option<u64> {
    let now = u64::try_from(now_unix).ok()?;
    let generator = generator(secret, "", "").ok()?;
    let origin = now / STEP_SECS;
    let mut accepted = None;
    for step in origin.saturating_sub(SKEW)..=origin + SKEW {
        let expected = Zeroizing::new(generator.generate(step * STEP_SECS).to_string());
        let same: bool = expected.as_bytes().ct_eq(code).into();
        let fresh = last_step.is_none_or(|last| step > last);
        if same && fresh && accepted.is_none() {
            accepted = Some(step);
        }
    }
    accepted
}

/// The code of `secret` at `unix` (tests and benchmarks play the app).
pub fn code_at(secret: &[u8], unix: u64) -> anyhow::Result<String> {
    Ok(generator(secret, "", "")?.generate(unix).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1 seed, truncated to 6 digits.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn matches_the_rfc_6238_vectors() {
        for (t, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(code_at(RFC_SECRET, t).unwrap(), code, "t={t}");
        }
    }

    #[test]
    fn a_code_is_accepted_once_and_never_an_earlier_one() {
        let now = 1_234_567_890i64;
        let step = now as u64 / STEP_SECS;
        let code = parse_code(&code_at(RFC_SECRET, now as u64).unwrap()).unwrap();
        assert_eq!(verify(RFC_SECRET, &code, now, None), Some(step));
        // Replayed inside its window (the next two steps still cover it).
        assert_eq!(verify(RFC_SECRET, &code, now, Some(step)), None);
        assert_eq!(verify(RFC_SECRET, &code, now + 30, Some(step)), None);
        // The previous step's code, still inside the skew, after a later use.
        let previous = parse_code(&code_at(RFC_SECRET, now as u64 - 30).unwrap()).unwrap();
        assert_eq!(verify(RFC_SECRET, &previous, now, Some(step)), None);
        // Skew: one step either way, not two.
        assert_eq!(verify(RFC_SECRET, &code, now + 30, None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, now - 30, None), Some(step));
        assert_eq!(verify(RFC_SECRET, &code, now + 61, None), None);
        assert_eq!(verify(RFC_SECRET, &code, now - 61, None), None);
        // Another secret's code.
        assert_eq!(verify(b"another secret 20 b.", &code, now, None), None);
        assert_eq!(verify(RFC_SECRET, &code, -5, None), None);
    }

    #[test]
    fn only_six_ascii_digits_parse() {
        assert_eq!(parse_code("123456"), Ok(*b"123456"));
        assert_eq!(parse_code(" 123 456 "), Ok(*b"123456"));
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "１２３４５６",
            "١٢٣٤٥٦",
            "123\u{200b}456",
            "-12345",
            "12 34 5",
            "123456\n",
            "0x1234",
        ] {
            assert_eq!(parse_code(bad), Err(CodeError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_code(&" ".repeat(40)), Err(CodeError::Malformed));
    }

    #[test]
    fn the_uri_names_issuer_account_and_the_rfc_parameters() {
        let uri = otpauth_uri(RFC_SECRET, "Stockade", "ada:x@example.test").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Stockade:ada_x%40example.test?"),
            "{uri}"
        );
        assert!(uri.contains(&format!("secret={}", secret_base32(RFC_SECRET).as_str())));
        assert!(uri.contains("issuer=Stockade"));
        let typed = decode_base32(&secret_base32(RFC_SECRET)).unwrap();
        assert_eq!(typed.as_slice(), RFC_SECRET);
        assert!(decode_base32("not base32!").is_none());
    }
}
