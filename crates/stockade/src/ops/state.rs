//! The state of the operations routes (`/healthz`, `/readyz`,
//! `/openapi.json`): the auth state (the database and settings readiness
//! reports on) and the watch of `X-Forwarded-For` from untrusted peers that
//! `/readyz` shows (`http::proxy_watch`, shared with its layer), built by
//! `app.rs`. It holds handles only.

use std::sync::Arc;

use crate::http::AuthState;
use crate::http::proxy_watch::ForwardedWatch;

/// What the operations handlers use (see the module documentation).
#[derive(Clone)]
pub struct OpsState {
    pub auth: AuthState,
    pub forwarded_watch: Arc<ForwardedWatch>,
}

crate::http::auth_state::auth_slice!(OpsState);
