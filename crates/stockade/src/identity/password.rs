//! Hashing and verifying passwords: argon2id (bcrypt for imported users) on
//! the hasher's own threads, a bounded number at a time, with one
//! key-derivation per verification whatever the outcome. The policy a new
//! password must meet is a pure rule of `stockade_core::identity::password`,
//! re-exported here; this file must not decide what a good password is, and
//! no type, message or log line here shows a password or a stored hash.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

pub use stockade_core::identity::password::{
    BCRYPT_MAX_BYTES, MAX_BYTES, PasswordPolicy, PolicyError, Violation, check, is_bcrypt_hash,
};

use super::argon;
use super::hash_pool::HashPool;
use zeroize::Zeroizing;

/// argon2id memory cost in KiB (19 MiB), as in SPEC §2.1 and the OWASP baseline.
pub const ARGON2_M_COST: u32 = 19_456;
/// argon2id iterations.
pub const ARGON2_T_COST: u32 = 2;
/// argon2id lanes.
pub const ARGON2_P_COST: u32 = 1;
/// Length of the argon2id output in bytes.
const ARGON2_OUTPUT_LEN: usize = 32;

/// Bounds on argon2 parameters found in a stored hash; anything larger is
/// treated as malformed rather than allocating/computing without bound.
const STORED_MAX_M_COST: u32 = 262_144; // 256 MiB
const STORED_MAX_T_COST: u32 = 16;
const STORED_MAX_P_COST: u32 = 16;

/// Why a hash or verification could not run. Never contains secret material.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Hash(password_hash::Error),
    #[error("invalid argon2 parameters: {0}")]
    Params(argon2::Error),
    #[error("the password hashing pool is closed")]
    Closed,
    #[error("the password hashing task failed")]
    Task,
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password is right. `needs_rehash` asks the caller to store a fresh
    /// [`Hasher::hash`] of it (bcrypt import, or older argon2 parameters).
    Match { needs_rehash: bool },
    /// The password is wrong, the user is unknown, or the stored hash is
    /// unusable; the caller cannot tell which (by design).
    Mismatch,
}

/// Hashes and verifies passwords with argon2id (m=19456 KiB, t=2, p=1).
///
/// Each hash or verification costs ≈ 15 ms of one core and 19 MiB of memory,
/// so it runs on a fixed set of threads (see `hash_pool`), and a semaphore
/// sized to the number of cores bounds how many run at once: unbounded, a
/// burst of logins would occupy every thread (starving other work such as
/// SQLite), multiply the memory by the burst size, and gain no throughput,
/// because the CPU is already saturated at one hash per core. Waiting callers
/// queue on the semaphore without holding a thread.
///
/// Every call to [`Hasher::verify`] executes exactly one key-derivation, also
/// for unknown users (against a dummy hash with the same parameters) and for
/// unusable stored hashes, so that the answer takes the same time.
///
/// Cheap to clone: the state is shared.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
    permits: Arc<Semaphore>,
    pool: Arc<HashPool>,
}

struct Inner {
    params: Params,
    /// A well-formed argon2id PHC string with the current parameters, a random
    /// salt and a random output: verifying against it costs a full argon2id run
    /// and never matches.
    dummy: String,
    operations: AtomicU64,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("m_cost", &self.inner.params.m_cost())
            .field("t_cost", &self.inner.params.t_cost())
            .field("p_cost", &self.inner.params.p_cost())
            .field("available_permits", &self.permits.available_permits())
            .field("operations", &self.operations())
            .finish()
    }
}

impl Hasher {
    /// A hasher that runs as many hashes at once as there are cores.
    pub fn new() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self::with_concurrency(cores)
    }

    /// A hasher that runs at most `concurrency` (1 to 256) hashes at once.
    pub fn with_concurrency(concurrency: usize) -> Result<Self, HashError> {
        let params = Params::new(
            ARGON2_M_COST,
            ARGON2_T_COST,
            ARGON2_P_COST,
            Some(ARGON2_OUTPUT_LEN),
        )
        .map_err(HashError::Params)?;
        let dummy = dummy_hash(&params)?;
        Ok(Self {
            inner: Arc::new(Inner {
                params,
                dummy,
                operations: AtomicU64::new(0),
            }),
            permits: Arc::new(Semaphore::new(concurrency.clamp(1, 256))),
            pool: Arc::new(HashPool::new(concurrency.clamp(1, 256))),
        })
    }

    /// How many argon2/bcrypt computations (hashes and verifications) this
    /// hasher and its clones have executed.
    pub fn operations(&self) -> u64 {
        self.inner.operations.load(Ordering::Relaxed)
    }

    /// Hashes `password` with argon2id and a fresh random salt; returns the
    /// PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        self.run(move |inner| inner.hash(&password)).await?
    }

    /// Checks `password` against `stored` (`None` for an unknown user).
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verification, HashError> {
        self.run(move |inner| inner.verify(&password, stored.as_deref()))
            .await
    }

    /// Runs `f` on the hasher's own threads (`hash_pool::HashPool`, not
    /// tokio's blocking pool) while holding a permit. The permit moves into
    /// the job, so a caller that gives up (e.g. a dropped request) does not
    /// free the slot before the computation has really finished.
    async fn run<T, F>(&self, f: F) -> Result<T, HashError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> T + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| HashError::Closed)?;
        let inner = Arc::clone(&self.inner);
        let (done, answer) = tokio::sync::oneshot::channel();
        self.pool
            .execute(Box::new(move || {
                let out = f(&inner);
                drop(permit);
                let _ = done.send(out);
            }))
            .map_err(|()| HashError::Closed)?;
        answer.await.map_err(|_| HashError::Task)
    }
}

impl Inner {
    /// Blocks a hashing thread keeps between runs: the current parameters'.
    fn keep(&self) -> usize {
        self.params.block_count()
    }

    fn count(&self) {
        self.operations.fetch_add(1, Ordering::Relaxed);
    }

    fn hash(&self, password: &SecretString) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        self.count();
        argon::hash(
            &self.params,
            self.keep(),
            password.expose_secret().as_bytes(),
            &salt,
        )
        .map_err(HashError::Hash)
    }

    fn verify(&self, password: &SecretString, stored: Option<&str>) -> Verification {
        let pw = password.expose_secret().as_bytes();
        let Some(stored) = stored else {
            self.verify_dummy(pw);
            return Verification::Mismatch;
        };

        if stored.starts_with("$2") {
            if !is_bcrypt_hash(stored) {
                tracing::warn!("stored bcrypt password hash is malformed; treated as a mismatch");
                self.verify_dummy(pw);
                return Verification::Mismatch;
            }
            if pw.len() > BCRYPT_MAX_BYTES {
                // bcrypt would silently ignore everything past 72 bytes: refuse
                // rather than accept a password the user did not type in full.
                self.verify_dummy(pw);
                return Verification::Mismatch;
            }
            self.count();
            return match bcrypt::verify(pw, stored) {
                Ok(true) => Verification::Match { needs_rehash: true },
                Ok(false) => Verification::Mismatch,
                Err(_) => {
                    // The bcrypt error would quote the hash: log without it.
                    tracing::warn!("bcrypt verification failed; treated as a mismatch");
                    Verification::Mismatch
                }
            };
        }

        let Some((parsed, needs_rehash)) = self.parse_argon2(stored) else {
            tracing::warn!("stored password hash is malformed; treated as a mismatch");
            self.verify_dummy(pw);
            return Verification::Mismatch;
        };
        self.count();
        match argon::verify(&parsed, self.keep(), pw) {
            Ok(()) => Verification::Match { needs_rehash },
            Err(password_hash::Error::Password) => Verification::Mismatch,
            Err(e) => {
                tracing::warn!(error = %e, "argon2 verification failed; treated as a mismatch");
                Verification::Mismatch
            }
        }
    }

    /// Parses an argon2 PHC string with sane parameters; also says whether it
    /// differs from the current algorithm, version or parameters.
    fn parse_argon2<'a>(&self, stored: &'a str) -> Option<(PasswordHash<'a>, bool)> {
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let params = Params::try_from(&parsed).ok()?;
        parsed.salt?;
        let output_len = parsed.hash.map(|h| h.len())?;
        if params.m_cost() > STORED_MAX_M_COST
            || params.t_cost() > STORED_MAX_T_COST
            || params.p_cost() > STORED_MAX_P_COST
        {
            return None;
        }
        let current = algorithm == Algorithm::Argon2id
            && parsed.version == Some(Version::V0x13.into())
            && params.m_cost() == self.params.m_cost()
            && params.t_cost() == self.params.t_cost()
            && params.p_cost() == self.params.p_cost()
            && output_len == ARGON2_OUTPUT_LEN;
        Some((parsed, !current))
    }

    /// Spends the same work as a real verification and discards the answer.
    fn verify_dummy(&self, pw: &[u8]) {
        self.count();
        match PasswordHash::new(&self.dummy) {
            Ok(parsed) => {
                let _ = argon::verify(&parsed, self.keep(), pw);
            }
            Err(_) => {
                // Unreachable: the dummy is validated at construction. Spend
                // the same work anyway.
                let salt = SaltString::generate(&mut OsRng);
                let _ = argon::hash(&self.params, self.keep(), pw, &salt);
            }
        }
    }
}

/// Builds the dummy PHC string without running argon2 (so constructing a
/// [`Hasher`] is instant and counts no operation), then checks it parses.
fn dummy_hash(params: &Params) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let mut raw = Zeroizing::new([0u8; ARGON2_OUTPUT_LEN]);
    OsRng.fill_bytes(raw.as_mut());
    let output = Output::new(raw.as_ref()).map_err(HashError::Hash)?;
    let params_string = ParamsString::try_from(params).map_err(HashError::Hash)?;
    let phc = format!(
        "${}$v={}${}${}${}",
        Algorithm::Argon2id.ident(),
        u32::from(Version::V0x13),
        params_string,
        salt.as_str(),
        output,
    );
    PasswordHash::new(&phc).map_err(HashError::Hash)?;
    Ok(phc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::Argon2;
    use argon2::password_hash::PasswordHasher;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    const STRONG: &str = "Glacier-Tandem-47-Quokka";

    #[tokio::test]
    async fn hash_then_verify() {
        let h = Hasher::new().unwrap();
        let phc = h.hash(secret(STRONG)).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
        assert!(phc.contains("m=19456,t=2,p=1"), "{phc}");
        assert_eq!(
            h.verify(secret(STRONG), Some(phc.clone())).await.unwrap(),
            Verification::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            h.verify(secret("Glacier-Tandem-47-Quokkb"), Some(phc))
                .await
                .unwrap(),
            Verification::Mismatch
        );
    }

    #[tokio::test]
    async fn salts_differ() {
        let h = Hasher::new().unwrap();
        let a = h.hash(secret(STRONG)).await.unwrap();
        let b = h.hash(secret(STRONG)).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn bcrypt_hashes_verify_and_ask_for_rehash() {
        let h = Hasher::new().unwrap();
        let stored = bcrypt::hash("Imported-Pass-1", 4).unwrap();
        assert_eq!(
            h.verify(secret("Imported-Pass-1"), Some(stored.clone()))
                .await
                .unwrap(),
            Verification::Match { needs_rehash: true }
        );
        assert_eq!(
            h.verify(secret("Imported-Pass-2"), Some(stored.clone()))
                .await
                .unwrap(),
            Verification::Mismatch
        );
        // $2y$ (PHP) hashes verify too.
        let y = format!("$2y${}", &stored[4..]);
        assert_eq!(
            h.verify(secret("Imported-Pass-1"), Some(y)).await.unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn bcrypt_never_truncates() {
        let h = Hasher::new().unwrap();
        let long = "a".repeat(80);
        // The bcrypt crate would accept any password sharing the first 72 bytes.
        let stored = bcrypt::hash(&long[..72], 4).unwrap();
        let before = h.operations();
        assert_eq!(
            h.verify(secret(&long), Some(stored.clone())).await.unwrap(),
            Verification::Mismatch
        );
        assert_eq!(h.operations(), before + 1);
        assert_eq!(
            h.verify(secret(&long[..72]), Some(stored)).await.unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn older_argon2_parameters_ask_for_rehash() {
        let h = Hasher::new().unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(STRONG.as_bytes(), &salt)
        .unwrap()
        .to_string();
        assert_eq!(
            h.verify(secret(STRONG), Some(weak)).await.unwrap(),
            Verification::Match { needs_rehash: true }
        );
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default())
            .hash_password(STRONG.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            h.verify(secret(STRONG), Some(argon2i)).await.unwrap(),
            Verification::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn unknown_user_runs_one_hash_like_a_real_verify() {
        let h = Hasher::new().unwrap();
        let phc = h.hash(secret(STRONG)).await.unwrap();

        let before = h.operations();
        assert_eq!(
            h.verify(secret(STRONG), None).await.unwrap(),
            Verification::Mismatch
        );
        assert_eq!(h.operations(), before + 1);

        let before = h.operations();
        h.verify(secret("wrong"), Some(phc)).await.unwrap();
        assert_eq!(h.operations(), before + 1);

        // Clones share the counter.
        let c = h.clone();
        c.verify(secret(STRONG), None).await.unwrap();
        assert_eq!(h.operations(), before + 2);
    }

    #[tokio::test]
    async fn dummy_hash_has_the_current_parameters() {
        let h = Hasher::new().unwrap();
        assert!(h.inner.dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let (_, needs_rehash) = h.inner.parse_argon2(&h.inner.dummy).unwrap();
        assert!(!needs_rehash);
    }

    #[tokio::test]
    async fn malformed_hashes_are_a_mismatch_and_still_cost_one_hash() {
        let h = Hasher::new().unwrap();
        let good = h.hash(secret(STRONG)).await.unwrap();
        let malformed = [
            String::new(),
            "not a hash".to_owned(),
            "$2b$04$tooshort".to_owned(),
            good[..good.len() - 10].to_owned(),
            good.replace("argon2id", "argon9"),
            good.replace("m=19456", "m=999999999"),
            "$pbkdf2-sha256$29000$abc$def".to_owned(),
        ];
        for m in malformed {
            let before = h.operations();
            assert_eq!(
                h.verify(secret(STRONG), Some(m.clone())).await.unwrap(),
                Verification::Mismatch,
                "{m}"
            );
            assert_eq!(h.operations(), before + 1, "{m}");
        }
    }

    #[tokio::test]
    async fn concurrency_is_bounded_but_work_completes() {
        let h = Hasher::with_concurrency(1).unwrap();
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let h = h.clone();
                tokio::spawn(async move { h.hash(secret(&format!("{STRONG}{i}"))).await })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(h.operations(), 4);
        assert_eq!(h.permits.available_permits(), 1);
    }

    #[test]
    fn debug_shows_no_secrets() {
        let h = Hasher::new().unwrap();
        let dbg = format!("{h:?}");
        assert!(!dbg.contains(&h.inner.dummy), "{dbg}");
        assert!(dbg.contains("19456"));
        let err = check(&PasswordPolicy::default(), &secret("hunter2"), &[]).unwrap_err();
        assert!(!format!("{err:?}").contains("hunter2"));
        assert!(!err.to_string().contains("hunter2"));
    }
}
