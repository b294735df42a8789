//! The state of the identity routes (`/v1/auth/*` sign-up, sign-in,
//! verification, password and reset endpoints, `/v1/me`, JWKS): the auth
//! state, plus the password hasher, the per-address sign-in limiter and the
//! session policy, each built once by `app.rs` and shared with the other
//! slices that need them. It holds handles only: no rule and no I/O of its
//! own.

use std::sync::Arc;

use crate::http::AuthState;
use crate::identity::LoginLimiter;
use crate::identity::password::Hasher;
use crate::sessions::SessionPolicy;

/// What the identity handlers use (see the module documentation).
#[derive(Clone)]
pub struct IdentityState {
    pub auth: AuthState,
    pub hasher: Hasher,
    pub login_limiter: Arc<LoginLimiter>,
    pub session_policy: SessionPolicy,
}

crate::http::auth_state::auth_slice!(IdentityState);
