//! Recovery codes: ten single-use codes shown once when the first factor is
//! confirmed (and on regeneration). Each is 12 characters of Crockford
//! base32 (60 bits), shown as `XXXX-XXXX-XXXX`. Only a keyed hash is stored
//! ([`hash`]: HMAC-SHA-256 under a server key, bound to the user), so a copy
//! of the table cannot be tried offline and a code cannot be moved to
//! another account.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Codes in a set.
pub const COUNT: usize = 10;
/// Characters of a code, 5 bits each.
pub const LEN: usize = 12;
/// Bits of entropy per code.
pub const BITS: usize = LEN * 5;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh set, formatted for display.
pub fn generate() -> anyhow::Result<Vec<Zeroizing<String>>> {
    (0..COUNT)
        .map(|_| {
            let bytes = crate::crypto::random::secret_bytes::<LEN>()?;
            let mut out = Zeroizing::new(String::with_capacity(LEN + 2));
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 && i % 4 == 0 {
                    out.push('-');
                }
                let symbol = ALPHABET.get(usize::from(b & 31)).copied().unwrap_or(b'0');
                out.push(char::from(symbol));
            }
            Ok(out)
        })
        .collect()
}

/// The canonical form of a typed code: hyphens and spaces dropped, letters
/// upper-cased, the look-alikes Crockford allows read as digits (`O` → 0,
/// `I`/`L` → 1). `None` for anything else (wrong length, other
/// characters, non-ASCII).
pub fn normalize(input: &str) -> Option<Zeroizing<String>> {
    if input.len() > 64 {
        return None;
    }
    let mut out = Zeroizing::new(String::with_capacity(LEN));
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        out.push(c);
    }
    (out.len() == LEN).then_some(out)
}

/// The stored form of a normalized code of `user`.
pub fn hash(key: &[u8; 32], user: impl std::fmt::Display, normalized: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(format!("stockade:recovery_code:{user}:").as_bytes());
    mac.update(normalized.as_bytes());
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_ten_distinct_codes_of_sixty_bits() {
        const { assert!(BITS >= 50) };
        let set = generate().unwrap();
        assert_eq!(set.len(), COUNT);
        let mut seen = std::collections::HashSet::new();
        for code in &set {
            assert_eq!(code.len(), LEN + 2, "{}", code.as_str());
            assert_eq!(code.matches('-').count(), 2);
            assert!(seen.insert(normalize(code).unwrap().to_string()));
        }
    }

    #[test]
    fn typing_variants_normalize_and_nothing_else_does() {
        let canonical = normalize("ABCD-EF01-2345").unwrap();
        for typed in [
            "abcd-ef01-2345",
            "ABCDEF012345",
            "abcd ef0l 2345",
            "ABCD-EFO1-2345",
        ] {
            assert_eq!(
                normalize(typed).as_deref().map(String::as_str),
                Some(canonical.as_str()),
                "{typed}"
            );
        }
        for bad in [
            "",
            "ABCD-EF01-234",
            "ABCD-EF01-23456",
            "ABCD-EF01-234U",
            "ＡBCD-EF01-2345",
            "ABCD-EF01-2345\u{200b}",
        ] {
            assert!(normalize(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn hashes_are_keyed_and_bound_to_the_user() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        let h = hash(&k1, "u1", "ABCDEF012345");
        assert_eq!(h, hash(&k1, "u1", "ABCDEF012345"));
        assert_ne!(h, hash(&k2, "u1", "ABCDEF012345"));
        assert_ne!(h, hash(&k1, "u2", "ABCDEF012345"));
    }
}
