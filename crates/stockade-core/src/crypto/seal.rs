//! Authenticated encryption with associated data: AES-256-GCM (RustCrypto
//! `aes-gcm`) with a fresh 96-bit random nonce per message. This file owns
//! the sealed-value format; it must not choose keys or associated data (its
//! callers do) and its errors never say which check failed.
//!
//! A sealed value is `version (1 byte) || nonce (12 bytes) || ciphertext+tag`.
//! The associated data is not stored: the caller supplies it again on
//! [`open`], so a value moved to another row, column or purpose (a different
//! AAD) fails to open. Random 96-bit nonces are safe for up to 2^32 messages
//! per key; keys here wrap a handful of secrets each (signing keys, tenant
//! data keys), far below that.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of nonce after the version byte.
pub const NONCE_LEN: usize = 12;
/// Bytes of the GCM authentication tag at the end.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed value adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the OS random number generator failed")]
    Random,
    #[error("encryption failed")]
    Encrypt,
    /// Too short, or a version this build does not know.
    #[error("the sealed value is malformed")]
    Malformed,
    /// Wrong key, wrong associated data, or tampered bytes: deliberately one
    /// error, so a caller cannot learn which.
    #[error("the sealed value does not authenticate")]
    Unauthentic,
}

/// Encrypts `plaintext` under `key`, binding `aad`.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
    let cipher = Aes256Gcm::new(key.into());
    let ciphertext = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Encrypt)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Decrypts a value made by [`seal`] with the same key and associated data.
/// The plaintext is wiped from memory when dropped.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let (&version, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
    if version != VERSION {
        return Err(SealError::Malformed);
    }
    let (nonce, ciphertext) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or(SealError::Malformed)?;
    if ciphertext.len() < TAG_LEN {
        return Err(SealError::Malformed);
    }
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::Malformed)?;
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Unauthentic)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];
    const AAD: &[u8] = b"stockade:test:row-1";

    #[test]
    fn round_trip() {
        let sealed = seal(&KEY, AAD, b"attack at dawn").unwrap();
        assert_eq!(sealed.len(), b"attack at dawn".len() + OVERHEAD);
        assert_eq!(sealed[0], VERSION);
        assert_eq!(
            open(&KEY, AAD, &sealed).unwrap().as_slice(),
            b"attack at dawn"
        );
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let sealed = seal(&KEY, AAD, b"").unwrap();
        assert_eq!(sealed.len(), OVERHEAD);
        assert!(open(&KEY, AAD, &sealed).unwrap().is_empty());
    }

    #[test]
    fn plaintext_does_not_appear_in_the_output() {
        let secret = b"a very recognisable secret value";
        let sealed = seal(&KEY, AAD, secret).unwrap();
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
    }

    #[test]
    fn wrong_aad_fails() {
        let sealed = seal(&KEY, AAD, b"secret").unwrap();
        assert_eq!(
            open(&KEY, b"stockade:test:row-2", &sealed),
            Err(SealError::Unauthentic)
        );
        assert_eq!(open(&KEY, b"", &sealed), Err(SealError::Unauthentic));
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = seal(&KEY, AAD, b"secret").unwrap();
        let mut other = KEY;
        other[31] ^= 1;
        assert_eq!(open(&other, AAD, &sealed), Err(SealError::Unauthentic));
    }

    #[test]
    fn every_tampered_byte_fails() {
        let sealed = seal(&KEY, AAD, b"secret").unwrap();
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            let err = open(&KEY, AAD, &tampered).unwrap_err();
            if i == 0 {
                assert_eq!(err, SealError::Malformed, "version byte");
            } else {
                assert_eq!(err, SealError::Unauthentic, "byte {i}");
            }
        }
    }

    #[test]
    fn truncated_input_fails_cleanly() {
        let sealed = seal(&KEY, AAD, b"secret").unwrap();
        for len in 0..sealed.len() {
            let err = open(&KEY, AAD, &sealed[..len]).unwrap_err();
            if len < OVERHEAD {
                assert_eq!(err, SealError::Malformed, "length {len}");
            } else {
                assert_eq!(err, SealError::Unauthentic, "length {len}");
            }
        }
        let mut extended = sealed.clone();
        extended.push(0);
        assert_eq!(open(&KEY, AAD, &extended), Err(SealError::Unauthentic));
    }

    #[test]
    fn two_seals_of_the_same_plaintext_differ() {
        let a = seal(&KEY, AAD, b"same").unwrap();
        let b = seal(&KEY, AAD, b"same").unwrap();
        assert_ne!(a, b);
        assert_ne!(a[1..=NONCE_LEN], b[1..=NONCE_LEN], "fresh nonce each time");
        assert_eq!(open(&KEY, AAD, &a).unwrap(), open(&KEY, AAD, &b).unwrap());
    }
}
