//! A cache of verified access tokens, so a token's signature is checked once
//! rather than on every request (an EdDSA verify costs ≈ 35 µs; a hit costs
//! one SHA-256 of the token and a map lookup). In memory only: it must not
//! store tokens themselves (entries are keyed by their hash) nor decide
//! anything that depends on time or on the request.
//!
//! What is cached is only the *signature* check: the verdict that these exact
//! bytes were signed by key `kid` and decode to these claims. Everything that
//! depends on time or on the request is checked again on every hit — expiry,
//! `iat`, that the key still verifies (a retired key's grace ends), issuer and
//! audience — and session revocation is checked by the caller as before. The
//! cache lives inside one [`Keyring`](super::jwt::Keyring), so loading new
//! keys starts with an empty one. Entries are keyed by SHA-256 of the whole
//! token: a token that differs in any byte is a miss and is verified in full.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::jwt::Claims;

/// Entries kept at most; past it the cache starts over (memory stays
/// bounded: ≈ 300 bytes per entry).
pub const MAX_ENTRIES: usize = 100_000;

#[derive(Clone)]
pub(crate) struct Verified {
    pub(crate) kid: String,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) claims: Claims,
}

#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
}

impl TokenCache {
    pub(crate) fn digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(crate) fn get(&self, digest: &[u8; 32]) -> Option<Verified> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    pub(crate) fn insert(&self, digest: [u8; 32], verified: Verified) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(digest, verified);
    }

    /// Drops the entries whose token has expired at `now` (unix seconds).
    pub(crate) fn sweep(&self, now: i64) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, v| v.claims.exp > now);
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
