//! The state of the API-key routes (`/v1/api-keys`): the auth state and
//! nothing else (the HMAC key and the key caches are the auth state's own,
//! `ApiKeyAuth`), built by `app.rs`. A slice of its own so what the routes
//! need can grow here without reaching the other rooms.

use std::ops::Deref;

use axum::extract::FromRef;

use crate::http::AuthState;

/// What the API-key handlers use (see the module documentation).
#[derive(Clone)]
pub struct ApiKeysState {
    pub auth: AuthState,
}

impl Deref for ApiKeysState {
    type Target = AuthState;
    fn deref(&self) -> &AuthState {
        &self.auth
    }
}

impl FromRef<ApiKeysState> for AuthState {
    fn from_ref(state: &ApiKeysState) -> Self {
        state.auth.clone()
    }
}
