//! The state of the API-key routes (`/v1/api-keys`): the auth state and
//! nothing else (the HMAC key and the key caches are the auth state's own,
//! `ApiKeyAuth`), built by `app.rs`. A slice of its own so what the routes
//! need can grow here without reaching the other rooms.

use crate::http::AuthState;

/// What the API-key handlers use (see the module documentation).
#[derive(Clone)]
pub struct ApiKeysState {
    pub auth: AuthState,
}

crate::http::auth_state::auth_slice!(ApiKeysState);
