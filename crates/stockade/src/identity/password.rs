//! Passwords: the policy a new password must meet (SPEC §2.1) and the hasher
//! that stores and verifies them (argon2id; bcrypt for imported users).
//!
//! Plaintext only ever travels as a [`SecretString`]; no type here shows secret
//! material in `Debug`, and no message or log line contains a password or a
//! stored hash.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Params, Version};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

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
/// bcrypt only reads the first 72 bytes of a password.
pub const BCRYPT_MAX_BYTES: usize = 72;
/// Longest password accepted when bcrypt compatibility is off.
pub const MAX_BYTES: usize = 256;

/// Bounds on argon2 parameters found in a stored hash; anything larger is
/// treated as malformed rather than allocating/computing without bound.
const STORED_MAX_M_COST: u32 = 262_144; // 256 MiB
const STORED_MAX_T_COST: u32 = 16;
const STORED_MAX_P_COST: u32 = 16;

/// Share of a password's characters one common-password (or user-input)
/// dictionary match must cover for the password to count as "that common
/// password with decorations" (e.g. `Password123!`), in percent.
const COMMON_COVERAGE_PERCENT: usize = 75;

/// Fewer estimated guesses than this is "too guessable" (zxcvbn's score 2 and
/// below ends here).
const WEAK_GUESSES: u64 = 100_000_000;

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

/// The rules a new password must meet. Per-tenant configurable; call
/// [`PasswordPolicy::validate`] on any policy that comes from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    /// Minimum length in Unicode characters (8 to 128).
    pub min_length: usize,
    /// At least one upper-case letter.
    pub require_upper: bool,
    /// At least one lower-case letter.
    pub require_lower: bool,
    /// At least one digit.
    pub require_digit: bool,
    /// Limit passwords to 72 bytes so that they stay usable with bcrypt;
    /// otherwise the limit is 256 bytes.
    pub bcrypt_compatible: bool,
    /// Reject common/breached passwords and passwords that are easy to guess
    /// (including ones built from the user's email, name or organisation).
    pub reject_common: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 10,
            require_upper: true,
            require_lower: true,
            require_digit: true,
            bcrypt_compatible: false,
            reject_common: true,
        }
    }
}

impl PasswordPolicy {
    /// Smallest `min_length` a tenant may configure.
    pub const MIN_LENGTH_FLOOR: usize = 8;
    /// Largest `min_length` a tenant may configure.
    pub const MIN_LENGTH_CEILING: usize = 128;

    /// Checks that the settings are within bounds and satisfiable.
    pub fn validate(&self) -> Result<(), String> {
        if !(Self::MIN_LENGTH_FLOOR..=Self::MIN_LENGTH_CEILING).contains(&self.min_length) {
            return Err(format!(
                "min_length must be between {} and {}",
                Self::MIN_LENGTH_FLOOR,
                Self::MIN_LENGTH_CEILING
            ));
        }
        if self.min_length > self.max_bytes() {
            return Err(format!(
                "min_length must be at most {} when bcrypt_compatible is on",
                self.max_bytes()
            ));
        }
        Ok(())
    }

    /// The longest password allowed, in bytes of UTF-8.
    pub fn max_bytes(&self) -> usize {
        if self.bcrypt_compatible {
            BCRYPT_MAX_BYTES
        } else {
            MAX_BYTES
        }
    }
}

/// One unmet rule of the policy. The message never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Violation {
    /// Stable code, e.g. `password.too_short`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
}

/// Every rule the password did not meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema, thiserror::Error)]
#[error("password does not meet the policy: {}", describe(.violations))]
pub struct PolicyError {
    pub violations: Vec<Violation>,
}

fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| v.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

impl PolicyError {
    /// The codes of the unmet rules, in order.
    pub fn codes(&self) -> Vec<&'static str> {
        self.violations.iter().map(|v| v.code).collect()
    }
}

/// Checks `password` against `policy` and reports every unmet rule.
///
/// `user_inputs` are things the user or tenant is known by (email, name,
/// tenant slug/name); passwords built from them count as easy to guess.
/// Length is counted in Unicode characters for the minimum and in bytes for
/// the maximum. The strength estimate (zxcvbn, which ships the common and
/// breached password frequency lists) looks at the first 100 characters and
/// costs up to a few milliseconds of CPU.
pub fn check(
    policy: &PasswordPolicy,
    password: &SecretString,
    user_inputs: &[&str],
) -> Result<(), PolicyError> {
    let pw = password.expose_secret();
    let mut violations = Vec::new();

    if pw.chars().count() < policy.min_length {
        violations.push(Violation {
            code: "password.too_short",
            message: format!("must be at least {} characters long", policy.min_length),
        });
    }
    if pw.len() > policy.max_bytes() {
        violations.push(Violation {
            code: "password.too_long",
            message: format!(
                "must be at most {} bytes long (non-ASCII characters take 2 to 4 bytes)",
                policy.max_bytes()
            ),
        });
    }
    if policy.require_upper && !pw.chars().any(char::is_uppercase) {
        violations.push(Violation {
            code: "password.missing_upper",
            message: "must contain an upper-case letter".to_owned(),
        });
    }
    if policy.require_lower && !pw.chars().any(char::is_lowercase) {
        violations.push(Violation {
            code: "password.missing_lower",
            message: "must contain a lower-case letter".to_owned(),
        });
    }
    if policy.require_digit && !pw.chars().any(char::is_numeric) {
        violations.push(Violation {
            code: "password.missing_digit",
            message: "must contain a digit".to_owned(),
        });
    }
    if policy.reject_common && is_common(pw, user_inputs) {
        violations.push(Violation {
            code: "password.common",
            message: "is too common or too easy to guess (a well-known or breached password, \
                      or one built from your email, name or organisation)"
                .to_owned(),
        });
    }

    if violations.is_empty() {
        Ok(())
    } else {
        Err(PolicyError { violations })
    }
}

/// zxcvbn's verdict: a score below 3 ("too guessable", also judged on the
/// parts alone, see [`parts_guesses`]), or one match from the
/// common-password list or from the user's own inputs covering nearly the
/// whole password (`Password123!`, `alice2024!`).
fn is_common(password: &str, user_inputs: &[&str]) -> bool {
    if password.is_empty() {
        return true;
    }
    let inputs = expand_user_inputs(user_inputs);
    let input_refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
    let entropy = zxcvbn::zxcvbn(password, &input_refs);
    if entropy.score() < zxcvbn::Score::Three || parts_guesses(&entropy) < WEAK_GUESSES {
        return true;
    }
    // zxcvbn only looks at the first 100 characters.
    let considered = password.chars().count().min(100);
    entropy.sequence().iter().any(|m| {
        let zxcvbn::matching::patterns::MatchPattern::Dictionary(d) = &m.pattern else {
            return false;
        };
        if !is_guessable_dictionary(d) {
            return false;
        }
        let covered = m.token.chars().count();
        covered.saturating_mul(100) >= considered.saturating_mul(COMMON_COVERAGE_PERCENT)
    })
}

/// zxcvbn adds 10^4 guesses per extra match of its sequence to the estimate
/// (10^8 for three matches), which lifts every three-part password to score 3
/// however predictable its parts (`Summer2024!!`, `Abcdefgh1234`, or a name
/// and a year). So the parts themselves must also be worth [`WEAK_GUESSES`]:
/// the product of their guesses times the number of orderings.
fn parts_guesses(entropy: &zxcvbn::Entropy) -> u64 {
    let sequence = entropy.sequence();
    let orderings =
        (1..=u64::try_from(sequence.len()).unwrap_or(u64::MAX)).fold(1u64, u64::saturating_mul);
    sequence.iter().fold(orderings, |acc, m| {
        acc.saturating_mul(m.guesses.unwrap_or(1).max(1))
    })
}

/// zxcvbn's `DictionaryType` lives in a private module and cannot be named,
/// so the dictionary is recognised by its `Debug` name. The unit tests pin
/// this down (`common_password_dictionary_is_recognised`).
fn is_guessable_dictionary(d: &zxcvbn::matching::patterns::DictionaryPattern) -> bool {
    let name = format!("{:?}", d.dictionary_name);
    name == "Passwords" || name == "UserInputs"
}

/// zxcvbn matches user inputs as whole words; also offer their parts, so that
/// `Alice Smith <alice.smith@acme.io>` yields `alice`, `smith` and `acme`.
fn expand_user_inputs(user_inputs: &[&str]) -> Vec<String> {
    const MAX_INPUTS: usize = 64;
    const MAX_CHARS: usize = 100;
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let s: String = s.chars().take(MAX_CHARS).collect();
        if s.chars().count() >= 3 && out.len() < MAX_INPUTS && !out.contains(&s) {
            out.push(s);
        }
    };
    for input in user_inputs {
        let lower = input.trim().to_lowercase();
        push(&lower);
        for part in lower.split(|c: char| !c.is_alphanumeric()) {
            push(part);
        }
    }
    out
}

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

// ---------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------

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

    fn codes(policy: &PasswordPolicy, pw: &str, inputs: &[&str]) -> Vec<&'static str> {
        match check(policy, &secret(pw), inputs) {
            Ok(()) => Vec::new(),
            Err(e) => e.codes(),
        }
    }

    /// A policy with only one rule switched on, to test rules one at a time.
    fn only(f: impl FnOnce(&mut PasswordPolicy)) -> PasswordPolicy {
        let mut p = PasswordPolicy {
            min_length: 0,
            require_upper: false,
            require_lower: false,
            require_digit: false,
            bcrypt_compatible: false,
            reject_common: false,
        };
        f(&mut p);
        p
    }

    const STRONG: &str = "Glacier-Tandem-47-Quokka";

    #[test]
    fn defaults_match_the_spec() {
        let p = PasswordPolicy::default();
        assert_eq!(p.min_length, 10);
        assert!(p.require_upper && p.require_lower && p.require_digit && p.reject_common);
        assert!(!p.bcrypt_compatible);
        assert_eq!(p.max_bytes(), 256);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn policy_serde_defaults_and_rejects_unknown_fields() {
        let p: PasswordPolicy = serde_json::from_str(r#"{"min_length": 12}"#).unwrap();
        assert_eq!(p.min_length, 12);
        assert!(p.require_upper);
        assert!(serde_json::from_str::<PasswordPolicy>(r#"{"min_lenght": 12}"#).is_err());
        let back: PasswordPolicy =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn validate_bounds_the_settings() {
        for (min, bcrypt, ok) in [
            (7, false, false),
            (8, false, true),
            (128, false, true),
            (129, false, false),
            (72, true, true),
            (73, true, false),
            (0, false, false),
        ] {
            let p = PasswordPolicy {
                min_length: min,
                bcrypt_compatible: bcrypt,
                ..PasswordPolicy::default()
            };
            assert_eq!(p.validate().is_ok(), ok, "{min} {bcrypt}");
        }
        let p = PasswordPolicy {
            reject_common: false,
            ..PasswordPolicy::default()
        };
        assert!(p.validate().is_ok());
    }

    #[test]
    fn each_rule_on_its_own() {
        let p = only(|p| p.min_length = 10);
        assert_eq!(codes(&p, "abcdefghi", &[]), ["password.too_short"]);
        assert!(codes(&p, "abcdefghij", &[]).is_empty());
        // Characters, not bytes, count for the minimum.
        assert!(codes(&p, "éééééééééé", &[]).is_empty());
        assert_eq!(codes(&p, "ééééééééé", &[]), ["password.too_short"]);

        let p = only(|p| p.require_upper = true);
        assert_eq!(codes(&p, "abc1", &[]), ["password.missing_upper"]);
        assert!(codes(&p, "aBc1", &[]).is_empty());

        let p = only(|p| p.require_lower = true);
        assert_eq!(codes(&p, "ABC1", &[]), ["password.missing_lower"]);
        assert!(codes(&p, "AbC1", &[]).is_empty());

        let p = only(|p| p.require_digit = true);
        assert_eq!(codes(&p, "abcD", &[]), ["password.missing_digit"]);
        assert!(codes(&p, "abc4", &[]).is_empty());

        let p = only(|p| p.reject_common = true);
        assert_eq!(codes(&p, "password", &[]), ["password.common"]);
        assert!(codes(&p, STRONG, &[]).is_empty());

        let p = only(|_| {});
        assert!(codes(&p, "", &[]).is_empty());
    }

    #[test]
    fn all_violations_are_listed_at_once() {
        let p = PasswordPolicy::default();
        let err = check(&p, &secret("!!!"), &[]).unwrap_err();
        assert_eq!(
            err.codes(),
            [
                "password.too_short",
                "password.missing_upper",
                "password.missing_lower",
                "password.missing_digit",
                "password.common",
            ]
        );
        let long = "!".repeat(300);
        let err = check(&p, &secret(&long), &[]).unwrap_err();
        assert_eq!(
            err.codes(),
            [
                "password.too_long",
                "password.missing_upper",
                "password.missing_lower",
                "password.missing_digit",
                "password.common",
            ]
        );
        let text = err.to_string();
        assert!(text.contains("at most 256 bytes"), "{text}");
        assert!(!text.contains("!!!!"), "{text}");
    }

    #[test]
    fn byte_limits_72_and_256_with_multibyte_characters() {
        let bcrypt = only(|p| p.bcrypt_compatible = true);
        let plain = only(|_| {});
        // 'é' is 2 bytes, '😀' is 4 bytes.
        let e36 = "é".repeat(36); // 72 bytes
        let e37 = "é".repeat(37); // 74 bytes, only 37 characters
        assert!(codes(&bcrypt, &e36, &[]).is_empty());
        assert_eq!(codes(&bcrypt, &e37, &[]), ["password.too_long"]);
        assert!(codes(&plain, &e37, &[]).is_empty());

        let s64 = "😀".repeat(64); // 256 bytes
        let s65 = "😀".repeat(65); // 260 bytes
        assert!(codes(&plain, &s64, &[]).is_empty());
        assert_eq!(codes(&plain, &s65, &[]), ["password.too_long"]);
        let a256 = "a".repeat(256);
        let a257 = "a".repeat(257);
        assert!(codes(&plain, &a256, &[]).is_empty());
        assert_eq!(codes(&plain, &a257, &[]), ["password.too_long"]);
        assert_eq!(codes(&bcrypt, &"a".repeat(73), &[]), ["password.too_long"]);
        assert!(codes(&bcrypt, &"a".repeat(72), &[]).is_empty());
    }

    #[test]
    fn common_passwords_are_rejected() {
        let p = PasswordPolicy::default();
        for pw in [
            "Password123",
            "Qwerty12345",
            "Password123!",
            "P@ssw0rd1234",
            "Iloveyou2024",
            "Letmein12345",
            "Abcdefgh1234",
            "Aa1234567890",
            "Summer2024!!",
            "Winter2025??",
            "Monkey123456",
            "Michael19850",
        ] {
            assert_eq!(codes(&p, pw, &[]), ["password.common"], "{pw}");
        }
    }

    #[test]
    fn common_password_dictionary_is_recognised() {
        // Pins the Debug-name lookup of zxcvbn's private DictionaryType.
        let e = zxcvbn::zxcvbn("trustno1", &[]);
        assert!(e.sequence().iter().any(|m| matches!(
            &m.pattern,
            zxcvbn::matching::patterns::MatchPattern::Dictionary(d) if is_guessable_dictionary(d)
        )));
        let e = zxcvbn::zxcvbn("quokkasmith", &["quokkasmith"]);
        assert!(e.sequence().iter().any(|m| matches!(
            &m.pattern,
            zxcvbn::matching::patterns::MatchPattern::Dictionary(d) if is_guessable_dictionary(d)
        )));
    }

    #[test]
    fn passwords_built_from_user_inputs_are_rejected() {
        let p = PasswordPolicy::default();
        let inputs = [
            "zorbulon.quaxley@vintrastic.io",
            "Zorbulon Quaxley",
            "vintrastic-labs",
        ];
        // Accepted without context, rejected with it.
        for pw in ["Zorbulonquaxley1", "Vintrasticlabs2", "Quaxleyzorbulon9"] {
            assert!(codes(&p, pw, &[]).is_empty(), "{pw} without inputs");
            assert_eq!(codes(&p, pw, &inputs), ["password.common"], "{pw}");
        }
        assert!(codes(&p, STRONG, &inputs).is_empty());
    }

    #[test]
    fn strong_passwords_are_accepted() {
        let p = PasswordPolicy::default();
        for pw in [
            STRONG,
            "Tr1cky-Mango-Orbit",
            "xK9#mQ2vL7pZ",
            "Vélo-Chaton-93-Brume",
            "Purple-Monkey-42",
            "Tr0mbone!Salad",
            "Coffee&Cake99",
            "correct horse battery Staple 9",
        ] {
            assert!(
                check(&p, &secret(pw), &["alice@example.com"]).is_ok(),
                "{pw}"
            );
        }
    }

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

    // --- hashing -----------------------------------------------------------

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
