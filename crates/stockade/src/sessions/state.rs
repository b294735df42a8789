//! The state of the session routes (`/v1/auth/refresh`, logout, the
//! session list): the auth state, plus the session policy and the refresh
//! rotation queue (`rotation_batch.rs`), built once by `app.rs`. It holds
//! handles only: no rule and no I/O of its own.

use std::sync::Arc;

use super::{RotationBatcher, SessionPolicy};
use crate::http::AuthState;

/// What the session handlers use (see the module documentation).
#[derive(Clone)]
pub struct SessionsState {
    pub auth: AuthState,
    pub session_policy: SessionPolicy,
    /// Refresh rotations, group-committed on SQLite.
    pub refresh_rotations: Arc<RotationBatcher>,
}

crate::http::auth_state::auth_slice!(SessionsState);
