//! The shape of a stored bcrypt hash (imported users): what the `bcrypt`
//! crate can verify, checked before it is asked to. Pure string inspection:
//! it must not verify a password or log the hash.

use base64::Engine as _;

/// Whether `s` is a well-formed bcrypt hash: `$2a$`, `$2b$` or `$2y$`, a
/// two-digit cost from 04 to 31, `$`, then 22 characters of salt and 31 of
/// hash in bcrypt's base64 alphabet with canonical padding bits (60 bytes in
/// all) — exactly what the `bcrypt` crate can verify.
pub fn is_bcrypt_hash(s: &str) -> bool {
    if s.len() != 60 || !s.is_ascii() {
        return false;
    }
    let (Some(prefix), Some(cost), Some(sep), Some(salt), Some(hash)) = (
        s.get(..4),
        s.get(4..6),
        s.get(6..7),
        s.get(7..29),
        s.get(29..),
    ) else {
        return false;
    };
    let cost_ok = cost.bytes().all(|b| b.is_ascii_digit())
        && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c));
    matches!(prefix, "$2a$" | "$2b$" | "$2y$")
        && cost_ok
        && sep == "$"
        && bcrypt::BASE_64.decode(salt).is_ok_and(|b| b.len() == 16)
        && bcrypt::BASE_64.decode(hash).is_ok_and(|b| b.len() == 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_hash_shape() {
        let good = bcrypt::hash("pw", 4).unwrap();
        assert!(is_bcrypt_hash(&good));
        for prefix in ["$2a$", "$2b$", "$2y$"] {
            let h = format!("{prefix}{}", &good[4..]);
            assert!(is_bcrypt_hash(&h), "{prefix}");
        }
        let bad = [
            String::new(),
            format!("$2x${}", &good[4..]),
            format!("$2b$03{}", &good[6..]),
            format!("$2b$32{}", &good[6..]),
            format!("$2b$+4{}", &good[6..]),
            format!("{}!", &good[..59]),
            format!("{}é", &good[..58]),
            good[..59].to_owned(),
            format!("{good}a"),
            format!("{}#{}", &good[..6], &good[7..]),
            // Non-canonical trailing bits in the salt (22nd char must be . O e u).
            format!("{}Z{}", &good[..28], &good[29..]),
        ];
        for b in &bad {
            assert!(!is_bcrypt_hash(b), "{b}");
        }
    }
}
