//! What authenticating a request needs, and nothing more: the database, the
//! clock, the read-only settings, the master key, the reloadable signing
//! keys and the token issuer, the session and API-key checks with their
//! caches, and the samplers of refused attempts. Every capability's state
//! slice holds one [`AuthState`] (cheap to clone: one `Arc`), so the
//! `Principal`, `ClientIp`, `SameOrigin` and `AuditContext` extractors work
//! under any of them through `FromRef`, and helpers every room shares
//! (`tenancy::allowlist`, `audit::sampler`, `sessions::access_token`) take
//! `&AuthState`. It must not grow into the application's state: what only
//! one room uses (the password hasher, the sign-in limiter, the refresh
//! rotation queue, webhook trust roots) belongs in that room's slice, built
//! by `app.rs`.

use std::ops::Deref;
use std::sync::{Arc, RwLock};

use crate::apikeys::ApiKeyAuth;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::jwt::Keyring;
use crate::crypto::keys::MasterKey;
use crate::db::Db;
use crate::http::refusals::Refusals;
use crate::sessions::SessionCache;

/// The `aud` of every access token (its `iss` is [`AuthParts::issuer`]).
pub const AUDIENCE: &str = "stockade";

/// How often a running server re-reads the signing keys, so a rotation made
/// with `stockade keys rotate --signing` (or by another instance) is picked
/// up without a restart. Tokens of the previous key keep verifying for 15
/// minutes after a rotation, so this delay never rejects a valid token.
pub const KEYRING_RELOAD: std::time::Duration = std::time::Duration::from_secs(30);

/// What authenticating a request needs (see the module documentation).
/// Clones share everything, the signing keys included: a reload seen by one
/// is seen by all.
#[derive(Clone)]
pub struct AuthState(Arc<AuthParts>);

pub struct AuthParts {
    pub db: Db,
    pub clock: SharedClock,
    /// Read-only settings.
    pub config: Arc<Config>,
    /// `iss` of every access token: the public URL.
    pub issuer: String,
    /// The per-request session check, cached (embedded mode; cluster mode
    /// with Redis).
    pub session_cache: SessionCache,
    /// API keys: HMAC key (loaded once), the cached check (same modes as
    /// `session_cache`), rate limits, denial sampling.
    pub api_keys: ApiKeyAuth,
    /// The sampled audit of refusals (`audit::sampler`).
    pub refusals: Refusals,
    master: Arc<MasterKey>,
    keyring: RwLock<Arc<Keyring>>,
}

impl AuthState {
    pub fn new(
        db: Db,
        clock: SharedClock,
        config: Arc<Config>,
        master: Arc<MasterKey>,
        keyring: Keyring,
        session_cache: SessionCache,
        api_keys: ApiKeyAuth,
    ) -> Self {
        Self(Arc::new(AuthParts {
            issuer: config.base_url(),
            db,
            clock,
            config,
            session_cache,
            api_keys,
            refusals: Refusals::default(),
            master,
            keyring: RwLock::new(Arc::new(keyring)),
        }))
    }

    /// The signing keys in force (cheap: an `Arc` clone).
    pub fn keyring(&self) -> Arc<Keyring> {
        self.0
            .keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps in a reloaded keyring (after `stockade keys rotate`).
    pub fn set_keyring(&self, keyring: Keyring) {
        *self.0.keyring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keyring);
    }

    /// The master key (wraps tenant keys and every stored secret). Call it
    /// as `&state.master()`: the one accessor. It is reloadable: it re-reads
    /// its key file when the file changed (before each seal, and when an item
    /// names a version it does not hold), so a server keeps serving through
    /// `stockade keys rotate` and `keys retire --master` without a restart
    /// (see `crypto::master`).
    pub fn master(&self) -> Arc<MasterKey> {
        self.0.master.clone()
    }
}

impl Deref for AuthState {
    type Target = AuthParts;
    fn deref(&self) -> &AuthParts {
        &self.0
    }
}

/// Makes a capability's state slice (a struct with an `auth: AuthState`
/// field) usable as an `AuthState`: `Deref` (so handlers read `state.db`,
/// `state.clock`) and `FromRef` (so the `Principal`, `ClientIp`,
/// `SameOrigin` and `AuditContext` extractors work under it). One
/// definition for every room's `state.rs`.
macro_rules! auth_slice {
    ($slice:ty) => {
        impl ::std::ops::Deref for $slice {
            type Target = $crate::http::AuthState;
            fn deref(&self) -> &$crate::http::AuthState {
                &self.auth
            }
        }

        impl ::axum::extract::FromRef<$slice> for $crate::http::AuthState {
            fn from_ref(state: &$slice) -> Self {
                state.auth.clone()
            }
        }
    };
}
pub(crate) use auth_slice;
