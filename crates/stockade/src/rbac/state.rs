//! The state of the role routes (`/v1/permissions`, `/v1/roles`): the auth
//! state and nothing else, built by `app.rs`. A slice of its own so what
//! the roles need can grow here without reaching the other rooms.

use crate::http::AuthState;

/// What the role handlers use (see the module documentation).
#[derive(Clone)]
pub struct RbacState {
    pub auth: AuthState,
}

crate::http::auth_state::auth_slice!(RbacState);
