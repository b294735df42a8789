//! The state of the platform routes (`/v1/platform/*`): the auth state,
//! plus the per-address sign-in limiter and the session policy that
//! redeeming a sign-in link needs, built once by `app.rs`. It holds handles
//! only: no rule and no I/O of its own.

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;

use crate::http::AuthState;
use crate::identity::LoginLimiter;
use crate::sessions::SessionPolicy;

/// What the platform handlers use (see the module documentation).
#[derive(Clone)]
pub struct PlatformState {
    pub auth: AuthState,
    pub login_limiter: Arc<LoginLimiter>,
    pub session_policy: SessionPolicy,
}

impl Deref for PlatformState {
    type Target = AuthState;
    fn deref(&self) -> &AuthState {
        &self.auth
    }
}

impl FromRef<PlatformState> for AuthState {
    fn from_ref(state: &PlatformState) -> Self {
        state.auth.clone()
    }
}
