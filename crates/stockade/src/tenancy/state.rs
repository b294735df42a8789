//! The state of the tenancy routes (`/v1/members`, `/v1/invitations`,
//! `/v1/tenant/settings`): the auth state, plus the password hasher and the
//! per-address sign-in limiter that accepting an invitation as a new account
//! needs, built once by `app.rs`. It holds handles only: no rule and no I/O
//! of its own.

use std::sync::Arc;

use crate::http::AuthState;
use crate::identity::LoginLimiter;
use crate::identity::password::Hasher;

/// What the tenancy handlers use (see the module documentation).
#[derive(Clone)]
pub struct TenancyState {
    pub auth: AuthState,
    pub hasher: Hasher,
    pub login_limiter: Arc<LoginLimiter>,
}

crate::http::auth_state::auth_slice!(TenancyState);
