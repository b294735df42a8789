//! argon2id hashing and verification over memory that the hashing thread
//! keeps between runs.
//!
//! `argon2`'s `PasswordHasher` allocates the 19 MiB working memory for every
//! run and frees it afterwards; the C allocator does not hand such chunks
//! back reliably, so a server that had signed people in held hundreds of MiB
//! (measured with `bench/run`). Here each hashing thread (see `hash_pool`)
//! keeps one buffer of the current parameters' size, zeroed after every run,
//! and the crate computes into it with `hash_password_into_with_memory`.
//! The PHC string is assembled from the crate's own types exactly as its
//! `PasswordHasher` does, and outputs are compared with `Output`'s
//! constant-time equality, as its `PasswordVerifier` does.

use std::cell::RefCell;

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use zeroize::Zeroize;

thread_local! {
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Hashes `password` with argon2id v1.3 under `params` and `salt`; returns
/// the PHC string. `keep` is the most blocks a thread keeps between runs.
pub(super) fn hash(
    params: &Params,
    keep: usize,
    password: &[u8],
    salt: &SaltString,
) -> Result<String, password_hash::Error> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = salt.as_salt();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(len, |out| {
        compute(&argon, keep, password, salt_bytes, out).map_err(password_hash::Error::from)
    })?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Checks `password` against a parsed argon2 PHC hash (any argon2 variant
/// and version it names): `Err(Error::Password)` when it does not match.
pub(super) fn verify(
    stored: &PasswordHash<'_>,
    keep: usize,
    password: &[u8],
) -> Result<(), password_hash::Error> {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return Err(password_hash::Error::Password);
    };
    let algorithm = Algorithm::try_from(stored.algorithm)?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(stored)?;
    let argon = Argon2::new(algorithm, version, params);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let computed = Output::init_with(expected.len(), |out| {
        compute(&argon, keep, password, salt_bytes, out).map_err(password_hash::Error::from)
    })?;
    // `Output`'s equality is constant-time.
    if computed == *expected {
        Ok(())
    } else {
        Err(password_hash::Error::Password)
    }
}

/// Runs argon2 into the thread's kept buffer when the parameters fit in
/// `keep` blocks, else into a buffer of its own for this run only. The
/// buffer is zeroed afterwards: nothing derived from a password outlives
/// the run.
fn compute(
    argon: &Argon2<'_>,
    keep: usize,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let need = argon.params().block_count();
    if need <= keep {
        let kept = BLOCKS.with(|cell| {
            let mut blocks = cell.try_borrow_mut().ok()?;
            if blocks.len() < need {
                blocks.resize(need, Block::default());
            }
            let memory = blocks.get_mut(..need)?;
            let result = argon.hash_password_into_with_memory(password, salt, out, &mut *memory);
            memory.iter_mut().for_each(Zeroize::zeroize);
            Some(result)
        });
        if let Some(result) = kept {
            return result;
        }
    }
    let mut memory = vec![Block::default(); need];
    let result = argon.hash_password_into_with_memory(password, salt, out, &mut memory);
    memory.iter_mut().for_each(Zeroize::zeroize);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::rand_core::OsRng;
    use argon2::{PasswordHasher, PasswordVerifier};

    fn small() -> Params {
        Params::new(64, 1, 1, Some(32)).unwrap()
    }

    #[test]
    fn same_phc_string_as_the_crate_and_verifies_both_ways() {
        let salt = SaltString::generate(&mut OsRng);
        let ours = hash(&small(), 64, b"correct horse", &salt).unwrap();
        let crate_hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, small())
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(ours, crate_hash);
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(verify(&parsed, 64, b"correct horse").is_ok());
        assert_eq!(
            verify(&parsed, 64, b"correct horsf"),
            Err(password_hash::Error::Password)
        );
        // The crate's verifier accepts ours.
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
    }

    #[test]
    fn larger_and_other_variants_use_a_buffer_of_their_own() {
        // argon2i v1.0 with more memory than `keep`: still verified exactly.
        let params = Params::new(256, 2, 1, Some(24)).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let stored = Argon2::new(Algorithm::Argon2i, Version::V0x10, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(verify(&parsed, 64, b"pw").is_ok());
        assert!(verify(&parsed, 64, b"pX").is_err());
        // The kept buffer never grew past `keep`.
        assert!(BLOCKS.with(|b| b.borrow().len()) <= 64);
    }
}
