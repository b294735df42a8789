//! The state of the multi-factor routes (`/v1/auth/mfa*`,
//! `/v1/auth/webauthn/*`): the auth state, plus the per-address sign-in
//! limiter (the second step is limited like sign-in), the per-address
//! limit on opening WebAuthn ceremonies (unauthenticated rows), and the
//! session policy (completing a sign-in starts a session). Handles only.

use std::sync::Arc;

use crate::http::AuthState;
use crate::identity::LoginLimiter;
use crate::sessions::SessionPolicy;

/// What the MFA handlers use (see the module documentation).
#[derive(Clone)]
pub struct MfaState {
    pub auth: AuthState,
    pub login_limiter: Arc<LoginLimiter>,
    /// `webauthn::CEREMONY_QUOTA`: opening WebAuthn ceremonies.
    pub ceremony_limiter: Arc<LoginLimiter>,
    pub session_policy: SessionPolicy,
}

crate::http::auth_state::auth_slice!(MfaState);
