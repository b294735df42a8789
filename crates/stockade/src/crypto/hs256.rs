//! The configuration's line about a weak HS256 secret. How strong a secret
//! must be (at least 512 bits, random-looking) is a pure rule of
//! `stockade_core::crypto::hs256`, re-exported here; this file only names
//! the variable a secret came from, and must never show its value.

use secrecy::ExposeSecret;

pub use stockade_core::crypto::hs256::{ADVICE, MIN_SECRET_BYTES, Weakness, check};

/// One line naming the variable (never the value) when the configured
/// secret is too weak; `None` when it is strong enough.
pub fn problem(secret: &crate::config::Secret) -> Option<String> {
    check(secret.value.expose_secret())
        .err()
        .map(|weak| format!("{} {weak}: {ADVICE}", secret.origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        getrandom::fill(&mut v).unwrap();
        v
    }

    #[test]
    fn the_config_line_names_the_variable_never_the_value() {
        let secret = |text: String| crate::config::Secret {
            value: secrecy::SecretString::from(text),
            origin: "STOCKADE_JWT_SECRET".to_owned(),
            file: None,
        };
        let line = problem(&secret("x".repeat(64))).unwrap();
        assert!(
            line.starts_with("STOCKADE_JWT_SECRET is shorter than 512 bits (48 bytes"),
            "{line}"
        );
        assert!(line.contains("openssl rand -base64 64"), "{line}");
        assert!(!line.contains("xxx"), "{line}");
        assert_eq!(problem(&secret(hex::encode(random(64)))), None);
    }
}
