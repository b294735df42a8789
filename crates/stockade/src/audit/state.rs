//! The state of the audit routes (`/v1/audit/*`) and of the webhook
//! delivery run: the auth state, plus the extra trust roots of webhook
//! endpoints (`STOCKADE_WEBHOOK_CA_FILE`, read once at start by
//! [`AuditState::new`]). It holds handles only: no rule and no I/O beyond
//! reading that file.

use std::sync::Arc;

use crate::http::AuthState;

/// What the audit handlers and the webhook delivery use (see the module
/// documentation).
#[derive(Clone)]
pub struct AuditState {
    pub auth: AuthState,
    webhook_roots: Arc<[reqwest::Certificate]>,
}

impl AuditState {
    /// `auth` with the trust roots its configuration names (an unreadable
    /// file, or one without a certificate, is an error: see
    /// [`super::webhook::trust_roots`]).
    pub fn new(auth: AuthState) -> anyhow::Result<Self> {
        let webhook_roots = super::webhook::trust_roots(&auth.config)?.into();
        Ok(Self {
            auth,
            webhook_roots,
        })
    }

    /// The extra trust roots of audit webhook endpoints.
    pub fn webhook_roots(&self) -> &[reqwest::Certificate] {
        &self.webhook_roots
    }
}

crate::http::auth_state::auth_slice!(AuditState);
