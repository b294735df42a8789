//! The email outbox: messages are queued in the same transaction as the
//! change that causes them, with the body sealed under the master key (it
//! holds single-use links). SMTP delivery (STARTTLS, retries, suppression)
//! drains this table in a later change; until then, outside production, the
//! development sender (`dev_sender`) writes each message to a private file
//! in the data directory. Logs name a message's kind and a masked recipient,
//! never its body, in every profile.

pub mod dev_sender;

use crate::clock::Clock;
use crate::crypto::keys::MasterKey;
use crate::db::{DbError, GlobalTx};

#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot seal the message: {0}")]
    Seal(String),
    #[error("cannot write the message: {0}")]
    Sink(String),
}

/// One message to send.
pub struct Message<'a> {
    pub to: &'a str,
    /// `password_reset`, `password_reset_notice`, `verification`,
    /// `account_exists`, `invitation`, `lockout_notice`, `sign_in_link`.
    pub kind: &'a str,
    pub subject: &'a str,
    /// Plain text; may contain secrets (links), so it is sealed.
    pub body: &'a str,
}

pub fn outbox_aad(id: uuid::Uuid) -> Vec<u8> {
    format!("stockade:email_outbox:{id}").into_bytes()
}

/// Queues `message` inside `tx`.
pub async fn enqueue(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    master: &MasterKey,
    message: &Message<'_>,
    production: bool,
) -> Result<uuid::Uuid, EmailError> {
    let id = enqueue_inner(tx, clock, master, message, None, production).await?;
    id.ok_or_else(|| EmailError::Sink("the message was not queued".into()))
}

/// Queues `message` inside `tx` unless a message with the same
/// `dedup_key` was ever queued (one notice per cause, however many requests
/// race to send it). `None` when it was.
pub async fn enqueue_once(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    master: &MasterKey,
    message: &Message<'_>,
    dedup_key: &str,
    production: bool,
) -> Result<Option<uuid::Uuid>, EmailError> {
    enqueue_inner(tx, clock, master, message, Some(dedup_key), production).await
}

async fn enqueue_inner(
    tx: &mut GlobalTx,
    clock: &dyn Clock,
    master: &MasterKey,
    message: &Message<'_>,
    dedup_key: Option<&str>,
    production: bool,
) -> Result<Option<uuid::Uuid>, EmailError> {
    let id = uuid::Uuid::now_v7();
    let payload =
        serde_json::json!({ "subject": message.subject, "body": message.body }).to_string();
    let (sealed, master_version) = master
        .seal(&outbox_aad(id), payload.as_bytes())
        .map_err(|e| EmailError::Seal(e.to_string()))?;
    let now = clock.now();
    let inserted = tx.execute(
        "INSERT INTO email_outbox (id, to_address, kind, sealed_body, master_version, status, attempts, created_at, updated_at, dedup_key) \
         VALUES ($1, $2, $3, $4, $5, 'queued', 0, $6, $6, $7) ON CONFLICT DO NOTHING",
        vec![
            id.into(),
            message.to.into(),
            message.kind.into(),
            sealed.into(),
            i64::from(master_version).into(),
            now.into(),
            dedup_key.into(),
        ],
    )
    .await?;
    if inserted == 0 {
        return Ok(None);
    }
    // The body holds single-use links: it is never logged, in any profile
    // (`production` is kept for callers; the log line is the same).
    let _ = production;
    tracing::debug!(outbox_id = %id, kind = message.kind, to = %mask_address(message.to),
        "email queued");
    Ok(Some(id))
}

/// An address for logs: its first character, `***`, and its domain
/// (`o***@acme.test`).
pub fn mask_address(address: &str) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let first: String = local.chars().take(1).collect();
    match domain {
        "" => format!("{first}***"),
        domain => format!("{first}***@{domain}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_masked() {
        assert_eq!(mask_address("owner@acme.test"), "o***@acme.test");
        assert_eq!(mask_address("x@y"), "x***@y");
        assert_eq!(mask_address("no-at-sign"), "n***");
        assert_eq!(mask_address(""), "***");
        assert_eq!(mask_address("élodie@exemple.fr"), "é***@exemple.fr");
    }
}
