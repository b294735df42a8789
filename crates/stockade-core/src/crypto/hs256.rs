//! How strong an HS256 secret is (SPEC §1: at least 512 bits). Pure: it
//! judges the text it is given and must not read the configuration or
//! print the secret (the configuration's error line is
//! `stockade::crypto::hs256::problem`).
//!
//! Counting characters is not counting bits: `"x"` × 64 is 64 bytes and next
//! to no entropy. A secret must therefore be the base64 (standard or URL-safe
//! alphabet, padding optional, line breaks ignored — `openssl rand -base64 64`
//! wraps its output) or the hex encoding of at least 64 bytes, and both its
//! text and its decoded bytes must look random:
//!
//! - **few distinct values**: the decoded bytes use fewer than two thirds of
//!   the distinct byte values that as many random bytes would show on
//!   average, or the text uses fewer than two thirds of the distinct symbols
//!   of its alphabet that random text of its length would (a lower-case
//!   passphrase that happens to be valid base64 uses at most 26 of 64);
//! - **a repeating pattern or a long run**: some 6-byte sequence of the
//!   decoded bytes occurs twice (a run of 7 equal bytes, a block pasted
//!   twice, a short period).
//!
//! For real random input each test fails with a probability below 10⁻¹¹
//! (the thresholds sit far in the tails of the occupancy distributions; the
//! unit tests draw thousands of random secrets to show it).
//!
//! The HMAC key is the secret's **text** as configured (trailing line breaks
//! trimmed), not its decoded bytes: deployments that already share a
//! textual secret with another verifier keep their tokens valid, and the
//! key id stays the same across the upgrade. The text of a base64 or hex
//! encoding of 64 random bytes carries those 512 bits.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use zeroize::Zeroizing;

/// Decoded bytes an HS256 secret must carry (512 bits).
pub const MIN_SECRET_BYTES: usize = 64;

/// Length of the repeated byte sequence that counts as a pattern.
const PATTERN_WINDOW: usize = 6;

/// Why a secret is refused. Never holds or shows any part of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Weakness {
    #[error("is shorter than 512 bits")]
    TooShortText,
    #[error("is not base64 or hex")]
    NotEncoded,
    #[error("is shorter than 512 bits ({0} bytes once decoded)")]
    TooShort(usize),
    #[error("is low in entropy (too few distinct values)")]
    FewDistinct,
    #[error("is low in entropy (a repeating pattern or a long run)")]
    Pattern,
}

/// How to make one, for error lines.
pub const ADVICE: &str =
    "HS256 needs at least 64 random bytes as base64 or hex (e.g. `openssl rand -base64 64`)";

/// Checks `text` (the configured secret); `Ok` when it is strong enough.
pub fn check(text: &str) -> Result<(), Weakness> {
    let compact: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let (decoded, alphabet_size) = match decode(&compact) {
        Some(found) => found,
        None if compact.len() < MIN_SECRET_BYTES => return Err(Weakness::TooShortText),
        None => return Err(Weakness::NotEncoded),
    };
    if decoded.len() < MIN_SECRET_BYTES {
        return Err(Weakness::TooShort(decoded.len()));
    }
    let symbols = if alphabet_size == 16 {
        distinct(compact.to_ascii_lowercase().bytes())
    } else {
        distinct(compact.trim_end_matches('=').bytes())
    };
    let text_len = compact.trim_end_matches('=').len();
    if 3 * symbols < 2 * expected_distinct(text_len, alphabet_size)
        || 3 * distinct(decoded.iter().copied()) < 2 * expected_distinct(decoded.len(), 256)
    {
        return Err(Weakness::FewDistinct);
    }
    if repeats_a_window(&decoded) {
        return Err(Weakness::Pattern);
    }
    Ok(())
}

/// Hex (an even number of hex digits) or base64; the bytes and the size of
/// the alphabet the text was written in.
fn decode(compact: &str) -> Option<(Zeroizing<Vec<u8>>, usize)> {
    if compact.is_empty() {
        return None;
    }
    if compact.len().is_multiple_of(2) && compact.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(compact).ok().map(|b| (Zeroizing::new(b), 16));
    }
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    [alphabet::STANDARD, alphabet::URL_SAFE]
        .iter()
        .find_map(|a| GeneralPurpose::new(a, config).decode(compact).ok())
        .map(|b| (Zeroizing::new(b), 64))
}

fn distinct(bytes: impl Iterator<Item = u8>) -> usize {
    let mut seen = [false; 256];
    let mut n = 0;
    for b in bytes {
        if let Some(slot) = seen.get_mut(usize::from(b))
            && !*slot
        {
            *slot = true;
            n += 1;
        }
    }
    n
}

/// The mean number of distinct values among `draws` uniform draws from
/// `values`, rounded down: `values · (1 − (1 − 1/values)^draws)`.
fn expected_distinct(draws: usize, values: usize) -> usize {
    if values == 0 {
        return 0;
    }
    let k = values as f64;
    let missing = (1.0 - 1.0 / k).powi(i32::try_from(draws).unwrap_or(i32::MAX));
    // A count in 0..=values: the conversion cannot truncate.
    (k * (1.0 - missing)).floor() as usize
}

/// Whether some `PATTERN_WINDOW`-byte sequence occurs twice (the set holds
/// slices of `bytes`, no copies of the secret).
fn repeats_a_window(bytes: &[u8]) -> bool {
    let mut seen = std::collections::HashSet::new();
    bytes.windows(PATTERN_WINDOW).any(|w| !seen.insert(w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    fn random(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        getrandom::fill(&mut v).unwrap();
        v
    }

    #[test]
    fn random_secrets_in_every_encoding_pass() {
        // Thousands of draws: a false refusal would show here.
        for i in 0..3000 {
            let n = 64 + (i % 5) * 16;
            let bytes = random(n);
            for text in [
                STANDARD.encode(&bytes),
                URL_SAFE_NO_PAD.encode(&bytes),
                hex::encode(&bytes),
                hex::encode_upper(&bytes),
            ] {
                assert_eq!(check(&text), Ok(()), "{n} bytes");
            }
        }
        // openssl wraps base64 at 64 columns; the file ends with a newline.
        let wrapped = STANDARD.encode(random(64));
        let (a, b) = wrapped.split_at(64);
        assert_eq!(check(&format!("{a}\n{b}\n")), Ok(()));
    }

    #[test]
    fn sixty_four_times_x_is_refused() {
        // The review's case: 64 bytes of text, next to no entropy.
        assert_eq!(check(&"x".repeat(64)), Err(Weakness::TooShort(48)));
        assert_eq!(check(&"x".repeat(88)), Err(Weakness::FewDistinct));
        assert_eq!(check(&"x".repeat(63)), Err(Weakness::TooShortText));
        assert_eq!(check(&"a".repeat(128)), Err(Weakness::FewDistinct));
    }

    #[test]
    fn short_and_unencoded_secrets_are_refused() {
        assert_eq!(check(""), Err(Weakness::TooShortText));
        assert_eq!(
            check(&STANDARD.encode(random(63))),
            Err(Weakness::TooShort(63))
        );
        assert_eq!(check(&hex::encode(random(32))), Err(Weakness::TooShort(32)));
        // A long textual password: not an encoding.
        let password = "Tr0ub4dor&3-correct-horse-battery-staple-!!-and-some-more-words-here##";
        assert!(password.len() >= 64);
        assert_eq!(check(password), Err(Weakness::NotEncoded));
    }

    #[test]
    fn few_distinct_values_are_refused() {
        // 64 bytes drawn from 16 values.
        let low: Vec<u8> = random(64).iter().map(|b| b & 0x0f).collect();
        assert_eq!(check(&STANDARD.encode(&low)), Err(Weakness::FewDistinct));
        // A lower-case passphrase that happens to be valid base64.
        let phrase = "thequickbrownfoxjumpsoverthelazydogwhilethefivewizardsboxjumpquicklyandpackmyboxwithjugs";
        assert_eq!(phrase.len(), 88);
        assert_eq!(check(phrase), Err(Weakness::FewDistinct));
        // Hex text that uses few digits.
        assert_eq!(check(&"0f".repeat(64)), Err(Weakness::FewDistinct));
    }

    #[test]
    fn patterns_and_runs_are_refused() {
        // 32 random bytes pasted twice.
        let half = random(32);
        let twice = [half.clone(), half].concat();
        assert!(check(&STANDARD.encode(&twice)).is_err());
        // 56 random bytes and a run of 16 zeros.
        let run = [random(56), vec![0u8; 16]].concat();
        assert_eq!(check(&STANDARD.encode(&run)), Err(Weakness::Pattern));
        // 60 random bytes and 12 of them again.
        let mut block = random(60);
        let copy: Vec<u8> = block.iter().take(12).copied().collect();
        block.extend(copy);
        assert_eq!(check(&hex::encode(&block)), Err(Weakness::Pattern));
    }

    #[test]
    fn messages_never_show_the_secret() {
        for text in [
            "x".repeat(64),
            "x".repeat(88),
            "Zq9secret".to_owned(),
            "Zq9secret".repeat(10),
        ] {
            let message = check(&text).unwrap_err().to_string();
            assert!(
                !message.contains("xxx") && !message.contains("Zq9"),
                "{message}"
            );
        }
    }
}
