//! The state of the platform routes (`/v1/platform/*`): the auth state,
//! plus the per-address sign-in limiter and the session policy that
//! redeeming a sign-in link needs, built once by `app.rs`. It holds handles
//! only: no rule and no I/O of its own.

use std::sync::Arc;

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

crate::http::auth_state::auth_slice!(PlatformState);
