//! The development sender: until SMTP delivery exists, a server outside the
//! production profile delivers each queued message into a file of its own,
//! `<data_dir>/outbox/<message id>.txt` (directory 0700, file 0600, created
//! once, never overwritten), and marks it `sent`. Its log lines carry the
//! kind, a masked recipient and the file's path; never the body, whose
//! links are single-use secrets (SPEC §1: no secrets in logs, in any
//! profile). A production server runs no sender: bodies stay sealed in the
//! outbox until SMTP delivery drains it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use super::{EmailError, mask_address, outbox_aad};
use crate::clock::Clock;
use crate::crypto::keys::MasterKey;
use crate::db::Db;

/// How often queued messages are delivered.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Messages delivered per run at most.
const BATCH: i64 = 100;
/// Failed writes of one message before it is marked `failed`.
const MAX_ATTEMPTS: i64 = 5;

/// Where the development sender writes: `<data_dir>/outbox`.
pub fn sink_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("outbox")
}

/// The sealed part of a message (see `enqueue`).
#[derive(serde::Deserialize)]
struct Payload {
    subject: String,
    body: String,
}

#[derive(sqlx::FromRow)]
struct Queued {
    id: uuid::Uuid,
    to_address: String,
    kind: String,
    sealed_body: Vec<u8>,
    master_version: i64,
    attempts: i64,
    created_at: DateTime<Utc>,
}

/// What one run delivered: messages written, and messages whose write
/// failed (retried at the next run, `failed` after [`MAX_ATTEMPTS`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    pub failed: usize,
}

impl std::fmt::Display for Delivered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} messages written, {} failed", self.sent, self.failed)
    }
}

/// The `sender` label of this sender's deliveries (`ops::metrics`).
pub const METRIC_SENDER: &str = "development";

/// Delivers every queued message (up to a batch) into
/// `sink_dir(data_dir)`. A message another instance claimed first is
/// skipped. Each message written or failed is counted
/// (`stockade_email_deliveries_total`).
pub async fn deliver_queued(
    db: &Db,
    clock: &dyn Clock,
    master: &MasterKey,
    data_dir: &Path,
) -> Result<Delivered, EmailError> {
    let queued: Vec<Queued> = db
        .global_read()
        .await?
        .fetch_all(
            "SELECT id, to_address, kind, sealed_body, \
             CAST(master_version AS BIGINT) AS master_version, \
             CAST(attempts AS BIGINT) AS attempts, created_at \
             FROM email_outbox WHERE status = 'queued' ORDER BY created_at, id LIMIT $1",
            vec![BATCH.into()],
        )
        .await?;
    let mut run = Delivered::default();
    for message in queued {
        match deliver_one(db, clock, master, data_dir, &message).await {
            Ok(true) => {
                run.sent += 1;
                crate::ops::metrics::email_delivery(METRIC_SENDER, true);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(outbox_id = %message.id, kind = %message.kind, error = %e,
                    "development sender could not write a message");
                run.failed += 1;
                crate::ops::metrics::email_delivery(METRIC_SENDER, false);
                record_failure(db, clock, &message).await?;
            }
        }
    }
    Ok(run)
}

/// One run of the serving instance's sender (`app::spawn_jobs`; never in
/// production): [`deliver_queued`], its failure logged (retried at the next
/// run). Returns what it delivered (its `Display` is the job's summary).
pub async fn scheduled_delivery(
    db: &Db,
    clock: &dyn Clock,
    master: &MasterKey,
    data_dir: &Path,
) -> Result<Delivered, EmailError> {
    match deliver_queued(db, clock, master, data_dir).await {
        Ok(run) => Ok(run),
        Err(e) => {
            tracing::error!(error = %e, "development sender failed");
            Err(e)
        }
    }
}

/// Claims `message`, writes its file, then commits the claim: a crash in
/// between leaves it queued, and the next run finds its file already there.
async fn deliver_one(
    db: &Db,
    clock: &dyn Clock,
    master: &MasterKey,
    data_dir: &Path,
    message: &Queued,
) -> Result<bool, EmailError> {
    let mut tx = db.global_tx().await?;
    let claimed = tx
        .execute(
            "UPDATE email_outbox SET status = 'sent', attempts = attempts + 1, updated_at = $2 \
             WHERE id = $1 AND status = 'queued'",
            vec![message.id.into(), clock.now().into()],
        )
        .await?;
    if claimed == 0 {
        return Ok(false);
    }
    let version = u32::try_from(message.master_version)
        .map_err(|_| EmailError::Seal("bad master-key version".to_owned()))?;
    let opened = master
        .open(version, &outbox_aad(message.id), &message.sealed_body)
        .map_err(|e| EmailError::Seal(e.to_string()))?;
    let payload: Payload =
        serde_json::from_slice(&opened).map_err(|e| EmailError::Seal(e.to_string()))?;
    let body = Zeroizing::new(payload.body);
    let text = Zeroizing::new(format!(
        "To: {}\nKind: {}\nSubject: {}\nQueued: {}\n\n{}\n",
        message.to_address,
        message.kind,
        payload.subject,
        message.created_at.to_rfc3339(),
        body.as_str(),
    ));
    let path = sink_dir(data_dir).join(format!("{}.txt", message.id));
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_once(&target, text.as_bytes()))
        .await
        .map_err(|e| EmailError::Sink(e.to_string()))??;
    tx.commit().await?;
    tracing::info!(outbox_id = %message.id, kind = %message.kind,
        to = %mask_address(&message.to_address), file = %path.display(),
        "email written by the development sender");
    Ok(true)
}

/// Creates `path` (0600, in a 0700 directory) holding `contents`; a file
/// already there is the same message written by an earlier run.
fn write_once(path: &Path, contents: &[u8]) -> Result<(), EmailError> {
    if path.exists() {
        return Ok(());
    }
    crate::crypto::keys::write_private(path, contents).map_err(|e| EmailError::Sink(e.to_string()))
}

async fn record_failure(db: &Db, clock: &dyn Clock, message: &Queued) -> Result<(), EmailError> {
    let status = if message.attempts + 1 >= MAX_ATTEMPTS {
        "failed"
    } else {
        "queued"
    };
    let mut tx = db.global_tx().await?;
    tx.execute(
        "UPDATE email_outbox SET attempts = attempts + 1, status = $2, updated_at = $3 \
         WHERE id = $1 AND status = 'queued'",
        vec![message.id.into(), status.into(), clock.now().into()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_written_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sink = sink_dir(dir.path());
        let path = sink.join("m.txt");
        write_once(&path, b"first").unwrap();
        write_once(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sink), 0o700);
        assert_eq!(mode(&path), 0o600);
    }
}
