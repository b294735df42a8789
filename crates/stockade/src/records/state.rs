//! The state of the records routes (`/v1/collections/*`, the import): the
//! auth state and nothing else, built by `app.rs`. A slice of its own so
//! what records need can grow here without reaching the other rooms.

use crate::http::AuthState;

/// What the records handlers use (see the module documentation).
#[derive(Clone)]
pub struct RecordsState {
    pub auth: AuthState,
}

crate::http::auth_state::auth_slice!(RecordsState);
