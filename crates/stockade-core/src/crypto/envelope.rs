//! The format of envelope encryption per tenant (SPEC §2.9): what a tenant's
//! unwrapped keys are ([`DataKeys`]), how a document ciphertext is framed
//! and bound to its tenant, table, column and row ([`Aad`]), the associated
//! data a wrapped key carries ([`wrap_aad`]) and the blind index. Pure: this
//! file must not create, store, load, wrap or destroy keys (that is
//! `stockade::crypto::envelope`, over the `tenant_keys` table), and no
//! `Debug` here shows key bytes.
//!
//! A ciphertext is `data-key version (4 bytes, big-endian) || seal output`
//! ([`crate::crypto::seal`]): the highest live data-key version encrypts and
//! every live version decrypts, so a new version never makes old ciphertexts
//! unreadable. Its associated data binds it to tenant, table, column and row,
//! each length-prefixed: a ciphertext swapped between rows, columns, tables
//! or tenants fails to decrypt. Blind indexes are HMAC-SHA256 under the
//! tenant's index key, so equality filters work without the plaintext.

use std::collections::BTreeMap;
use std::fmt::Display;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::crypto::seal::{self, SealError};

/// Prefix of the associated data a tenant key is wrapped with.
pub const WRAP_AAD_PREFIX: &str = "stockade:tenant_key:";

/// Bytes of the data-key version in front of every ciphertext.
pub const VERSION_LEN: usize = 4;

/// Bytes a ciphertext adds to its plaintext.
pub const OVERHEAD: usize = VERSION_LEN + seal::OVERHEAD;

/// Domain labels, so that the bytes authenticated for a document and the
/// bytes fed to a blind index can never be mistaken for one another.
const DOCUMENT_LABEL: &[u8] = b"stockade:document:v1";
const INDEX_LABEL: &[u8] = b"stockade:blind_index:v1";

/// What a ciphertext is bound to, besides its tenant: the table, column and
/// row it is stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: &'a str,
}

impl Aad<'_> {
    /// The associated data actually authenticated: a label, then tenant,
    /// table, column and row, each length-prefixed (so no two tuples encode
    /// to the same bytes).
    pub fn bytes(&self, tenant: impl Display) -> Vec<u8> {
        let tenant = tenant.to_string();
        length_prefixed(&[
            DOCUMENT_LABEL,
            tenant.as_bytes(),
            self.table.as_bytes(),
            self.column.as_bytes(),
            self.row.as_bytes(),
        ])
    }
}

/// The associated data a tenant key is wrapped with:
/// `stockade:tenant_key:<tenant>:<purpose>:<version>`, so a wrapped key
/// copied to another tenant, purpose or version fails to open.
pub fn wrap_aad(tenant: impl Display, purpose: Purpose, version: u32) -> Vec<u8> {
    format!("{WRAP_AAD_PREFIX}{tenant}:{}:{version}", purpose.as_str()).into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    Data,
    Index,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Index => "index",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "data" => Some(Self::Data),
            "index" => Some(Self::Index),
            _ => None,
        }
    }
}

/// A 256-bit key, wiped from memory on drop.
pub type Key = Zeroizing<[u8; 32]>;

/// One tenant's unwrapped keys (the tenant itself is bound by the caller,
/// through the associated data): the live data keys by version, the highest
/// of which encrypts, and the index key. `Debug` shows versions only.
pub struct DataKeys {
    /// Never empty.
    data: BTreeMap<u32, Key>,
    current: u32,
    index: Key,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeys")
            .field("data_versions", &self.data_versions())
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl DataKeys {
    /// The live data keys and the index key; `None` without a data key.
    pub fn new(data: BTreeMap<u32, Key>, index: Key) -> Option<Self> {
        let current = *data.keys().next_back()?;
        Some(Self {
            data,
            current,
            index,
        })
    }

    /// The data-key version new ciphertexts use.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// The live data-key versions, ascending.
    pub fn data_versions(&self) -> Vec<u32> {
        self.data.keys().copied().collect()
    }

    /// Encrypts `plaintext` under the current data key, bound to `aad` (see
    /// [`Aad::bytes`]). A fresh random nonce each time: the same plaintext
    /// twice gives different ciphertexts.
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        // `new` makes `current` a key of `data`; the error arm is unreachable.
        let key = self.data.get(&self.current).ok_or(SealError::Encrypt)?;
        let sealed = seal::seal(key, aad, plaintext)?;
        let mut out = Vec::with_capacity(VERSION_LEN + sealed.len());
        out.extend_from_slice(&self.current.to_be_bytes());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a value made by [`DataKeys::encrypt`] with the same `aad`,
    /// with the key version its prefix names. `None` for anything that does
    /// not authenticate (tampered, truncated, moved, an unknown version).
    pub fn decrypt(&self, aad: &[u8], ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (version, sealed) = ciphertext.split_first_chunk::<VERSION_LEN>()?;
        let key = self.data.get(&u32::from_be_bytes(*version))?;
        seal::open(key, aad, sealed).ok()
    }

    /// A keyed blind index of `value` in `field` of `collection`: equal
    /// inputs give equal outputs under this index key; other keys, fields or
    /// collections give unrelated ones.
    pub fn blind_index(&self, collection: &str, field: &str, value: &str) -> [u8; 32] {
        let mut mac = hmac_sha256(&self.index);
        mac.update(&length_prefixed(&[
            INDEX_LABEL,
            collection.as_bytes(),
            field.as_bytes(),
            value.as_bytes(),
        ]));
        mac.finalize().into_bytes().into()
    }
}

/// HMAC-SHA256 keyed with a 256-bit key. HMAC zero-pads a key shorter than
/// the hash's 64-byte block (RFC 2104 §2), so padding it here is the same
/// MAC as `new_from_slice`, without a fallible call (a unit test checks).
fn hmac_sha256(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    for (dst, src) in block.iter_mut().zip(key.iter()) {
        *dst = *src;
    }
    <Hmac<Sha256> as KeyInit>::new((&*block).into())
}

/// Each part as an 8-byte big-endian length, then its bytes.
fn length_prefixed(parts: &[&[u8]]) -> Vec<u8> {
    let total: usize = parts.iter().map(|p| 8 + p.len()).sum();
    let mut out = Vec::with_capacity(total);
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(data: &[(u32, u8)], index: u8) -> DataKeys {
        let data: BTreeMap<u32, Key> = data
            .iter()
            .map(|&(v, b)| (v, Zeroizing::new([b; 32])))
            .collect();
        DataKeys::new(data, Zeroizing::new([index; 32])).unwrap()
    }

    const AAD: Aad<'static> = Aad {
        table: "records",
        column: "data",
        row: "row-1",
    };

    fn tenant() -> uuid::Uuid {
        uuid::Uuid::from_u128(0x0190_a8f2_0000_7000_8000_0000_0000_0002)
    }

    #[test]
    fn round_trip_with_version_prefix() {
        let k = keys(&[(1, 1), (7, 2)], 9);
        let aad = AAD.bytes(tenant());
        let ct = k.encrypt(&aad, b"invoice 42").unwrap();
        assert_eq!(ct[..4], 7u32.to_be_bytes());
        assert_eq!(ct.len(), b"invoice 42".len() + OVERHEAD);
        assert_eq!(k.decrypt(&aad, &ct).unwrap().as_slice(), b"invoice 42");
    }

    #[test]
    fn aad_parts_cannot_slide_into_each_other() {
        let t = tenant();
        let a = Aad {
            table: "ab",
            column: "c",
            row: "1",
        };
        let b = Aad {
            table: "a",
            column: "bc",
            row: "1",
        };
        assert_ne!(a.bytes(t), b.bytes(t));
        assert_ne!(a.bytes(t), a.bytes(uuid::Uuid::nil()));
        let k = keys(&[(1, 1)], 9);
        let ct = k.encrypt(&a.bytes(t), b"x").unwrap();
        assert!(k.decrypt(&b.bytes(t), &ct).is_none());
    }

    #[test]
    fn blind_index_is_keyed_and_separates_its_inputs() {
        let k = keys(&[(1, 1)], 9);
        let same = keys(&[(1, 1)], 9);
        let other = keys(&[(1, 1)], 10);
        let v = k.blind_index("orders", "status", "paid");
        assert_eq!(v, same.blind_index("orders", "status", "paid"));
        assert_ne!(v, other.blind_index("orders", "status", "paid"));
        assert_ne!(v, k.blind_index("orders", "state", "paid"));
        assert_ne!(v, k.blind_index("order", "sstatus", "paid"));
        assert_ne!(v, k.blind_index("orders", "status", "Paid"));
    }

    #[test]
    fn padded_hmac_key_equals_the_crate_s_own_key_handling() {
        let key = [0xA5u8; 32];
        let mut ours = hmac_sha256(&key);
        let mut theirs = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        ours.update(b"message");
        theirs.update(b"message");
        assert_eq!(ours.finalize().into_bytes(), theirs.finalize().into_bytes());
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let k = keys(&[(1, 0xAB)], 0xCD);
        let s = format!("{k:?}");
        assert!(s.contains("current: 1"), "{s}");
        for secret in ["171", "205", "ab", "AB", "cd", "CD"] {
            assert!(!s.contains(secret), "{s}");
        }
    }

    #[test]
    fn wrap_aad_names_tenant_purpose_and_version() {
        let t = tenant();
        assert_eq!(
            wrap_aad(t, Purpose::Index, 3),
            format!("stockade:tenant_key:{t}:index:3").into_bytes()
        );
    }

    #[test]
    fn no_data_key_no_keys() {
        assert!(DataKeys::new(BTreeMap::new(), Zeroizing::new([1; 32])).is_none());
    }
}
