//! Push of a tenant's audit log to its SIEM as signed webhooks (SPEC §2.7,
//! §2.12; issue #6). See docs/audit-events.md "Webhook push".
//!
//! - **Format.** One event per `POST`: the body is the event exactly as one
//!   line of `GET /v1/audit/export` (without the newline), so the receiver can
//!   recompute each hash and follow `prev_hash`. Signed with Standard
//!   Webhooks: `webhook-id` (the event id), `webhook-timestamp` (Unix
//!   seconds, from the injected clock) and `webhook-signature:
//!   v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the secret
//!   `whsec_<base64 of 32 random bytes>`.
//! - **Queue.** The chain itself is the queue: `delivered_seq` is the last
//!   event the endpoint answered 2xx for. Delivery runs outside every
//!   request ([`deliver_due`], called by a background job), so an endpoint
//!   that is down or slow never blocks or fails the request that caused an
//!   event. At-least-once: an event may be sent again (a crash after the
//!   POST, before `delivered_seq` moved); receivers dedupe by `webhook-id`.
//! - **Retries.** A failed attempt (no 2xx, an error, or a refused address)
//!   stops the run; the next waits 2^failures seconds, at most an hour. After
//!   [`DISABLE_AFTER_FAILURES`] consecutive failures spanning at least
//!   [`DISABLE_AFTER`] the endpoint is disabled and `audit.webhook.disabled`
//!   is recorded; configuring it again re-enables it (with a new secret).
//! - **One sender.** A run first claims the tenant's row with a lease
//!   (`UPDATE … WHERE lease expired`), so instances sharing a PostgreSQL
//!   database never send a tenant's events concurrently.
//! - **Secret.** Generated from the OS CSPRNG, shown once, stored sealed
//!   under the master key (AAD [`aad`]) and re-wrapped by `keys rotate`.
//!   Deliveries are not themselves audited: each would be a new event to
//!   deliver. Their state is `GET /v1/audit/webhook`.

use axum::extract::FromRef;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::AuditState;
use super::model::{Actor, AuditError, NewEvent, Target};
use super::pii::{EventView, Ids, reveal};
use super::query::page_after;
use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::keys::MasterKey;
use crate::db::{DbError, TenantTx};
use crate::http::AuthState;
use crate::ids::TenantId;

/// Prefix of a secret as shown to the tenant.
pub const SECRET_PREFIX: &str = "whsec_";
/// Events sent per tenant per run, at most.
pub const MAX_PER_RUN: i64 = 100;
/// Time limit of one attempt (connect, TLS, request and response head).
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a claim on a tenant lasts; renewed after every delivered event.
pub const LEASE: Duration = Duration::seconds(60);
/// Longest wait between attempts.
pub const MAX_BACKOFF_SECS: i64 = 3600;
/// Consecutive failures, and the time they must span, before disabling.
pub const DISABLE_AFTER_FAILURES: i64 = 20;
pub const DISABLE_AFTER: Duration = Duration::hours(24);
/// How often a serving instance looks for due deliveries.
pub const INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest `last_error` kept.
const MAX_ERROR_LEN: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("cannot seal or open the webhook secret")]
    Seal,
    #[error("the OS random number generator failed")]
    Random,
}

/// The associated data sealing a tenant's webhook secret.
pub fn aad(tenant: TenantId) -> Vec<u8> {
    format!("stockade:audit_webhook_secret:{tenant}").into_bytes()
}

/// `whsec_<base64>` for the raw secret.
pub fn encode_secret(raw: &[u8]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(raw))
}

/// The Standard Webhooks signature header value: `v1,<base64 HMAC-SHA256
/// of "id.timestamp.body">` keyed with the raw secret.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return String::new(); // HMAC takes keys of any length
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// What `GET /v1/audit/webhook` shows: never the secret.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct WebhookStatus {
    pub url: String,
    pub enabled: bool,
    /// The last event the endpoint acknowledged (0: none yet).
    pub delivered_seq: i64,
    /// Consecutive failed attempts.
    pub failures: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The endpoint of the transaction's tenant, if any.
pub async fn status(tx: &mut TenantTx) -> Result<Option<WebhookStatus>, DbError> {
    tx.fetch_optional(
        "SELECT url, enabled, delivered_seq, failures, last_error, next_attempt_at, \
         created_at, updated_at FROM audit_webhooks WHERE tenant_id = $1",
        vec![],
    )
    .await
}

/// A newly configured endpoint: its secret (shown once) and what it replaced.
pub struct Configured {
    pub secret: Zeroizing<String>,
    /// The URL before, when an endpoint existed (then the secret rotated).
    pub previous_url: Option<String>,
}

/// Sets the tenant's endpoint to `url` with a new secret, enabled, failures
/// cleared. Delivery resumes after `delivered_seq`, which a replacement
/// keeps (0 for a new endpoint: the whole retained log is sent first).
pub async fn configure(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    master: &MasterKey,
    url: &str,
) -> Result<Configured, WebhookError> {
    let raw = crate::crypto::random::secret_bytes::<32>().map_err(|_| WebhookError::Random)?;
    let (sealed, version) = master
        .seal(&aad(tx.tenant()), raw.as_slice())
        .map_err(|_| WebhookError::Seal)?;
    let now = clock.now();
    let previous: Option<(String,)> = tx
        .fetch_optional(
            "SELECT url FROM audit_webhooks WHERE tenant_id = $1",
            vec![],
        )
        .await?;
    tx.execute(
        "INSERT INTO audit_webhooks (tenant_id, url, sealed_secret, master_version, enabled, \
         delivered_seq, failures, next_attempt_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $6, $6) \
         ON CONFLICT (tenant_id) DO UPDATE SET url = $2, sealed_secret = $3, \
         master_version = $4, enabled = $5, failures = 0, failing_since = NULL, \
         last_error = NULL, next_attempt_at = $6, updated_at = $6",
        vec![
            url.into(),
            sealed.into(),
            i64::from(version).into(),
            true.into(),
            now.into(),
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO webhook_tenants (owner_tenant) VALUES ($1) ON CONFLICT DO NOTHING",
        vec![],
    )
    .await?;
    Ok(Configured {
        secret: Zeroizing::new(encode_secret(raw.as_slice())),
        previous_url: previous.map(|p| p.0),
    })
}

/// Removes the tenant's endpoint; its URL, or `None` when there was none.
pub async fn remove(tx: &mut TenantTx) -> Result<Option<String>, DbError> {
    let url: Option<(String,)> = tx
        .fetch_optional(
            "DELETE FROM audit_webhooks WHERE tenant_id = $1 RETURNING url",
            vec![],
        )
        .await?;
    tx.execute(
        "DELETE FROM webhook_tenants WHERE owner_tenant = $1",
        vec![],
    )
    .await?;
    Ok(url.map(|u| u.0))
}

/// Master-key versions sealing the transaction tenant's webhook secret,
/// with counts (for `keys status` and `keys retire --master`).
pub async fn master_versions(tx: &mut TenantTx) -> Result<Vec<(i64, i64)>, DbError> {
    tx.fetch_all(
        "SELECT master_version, COUNT(*) FROM audit_webhooks WHERE tenant_id = $1 \
         GROUP BY master_version",
        vec![],
    )
    .await
}

/// Re-seals the tenant's webhook secret under the current master-key
/// version (`keys rotate`). Returns how many were re-sealed (0 or 1).
pub async fn rewrap(tx: &mut TenantTx, master: &MasterKey) -> Result<u64, WebhookError> {
    let target = i64::from(master.current_version());
    let row: Option<(Vec<u8>, i64)> = tx
        .fetch_optional(
            "SELECT sealed_secret, master_version FROM audit_webhooks \
             WHERE tenant_id = $1 AND master_version <> $2",
            vec![target.into()],
        )
        .await?;
    let Some((sealed, old)) = row else {
        return Ok(0);
    };
    let aad = aad(tx.tenant());
    let version = u32::try_from(old).map_err(|_| WebhookError::Seal)?;
    let plain = master
        .open(version, &aad, &sealed)
        .map_err(|_| WebhookError::Seal)?;
    let (resealed, used) = master.seal(&aad, &plain).map_err(|_| WebhookError::Seal)?;
    Ok(tx
        .execute(
            "UPDATE audit_webhooks SET sealed_secret = $2, master_version = $3 \
             WHERE tenant_id = $1 AND master_version = $4",
            vec![resealed.into(), i64::from(used).into(), old.into()],
        )
        .await?)
}

/// What one [`deliver_due`] run did, over all tenants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Tenants whose endpoint was due and claimed.
    pub tenants: u64,
    /// Events acknowledged by their endpoint.
    pub delivered: u64,
    /// Failed attempts (at most one per tenant per run).
    pub failed: u64,
    /// Endpoints disabled by this run.
    pub disabled: u64,
}

/// The extra trust roots of webhook endpoints: the PEM certificates of
/// `webhook_ca_file`, if set (an unreadable file, or one with no
/// certificate, is an error: the server does not start).
pub fn trust_roots(config: &Config) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let Some(path) = &config.webhook_ca_file else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("STOCKADE_WEBHOOK_CA_FILE {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| anyhow::anyhow!("STOCKADE_WEBHOOK_CA_FILE {}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "STOCKADE_WEBHOOK_CA_FILE {} holds no PEM certificate",
        path.display()
    );
    Ok(certs)
}

/// Sends every due tenant's undelivered events (up to [`MAX_PER_RUN`] per
/// tenant), in ascending `seq`. Errors of one tenant are logged and do not
/// stop the others. Callable directly (tests) or from the background job,
/// with any state the [`AuditState`] is taken from.
pub async fn deliver_due<S>(state: &S) -> Result<DeliveryReport, DbError>
where
    AuditState: FromRef<S>,
{
    let state = AuditState::from_ref(state);
    let mut tx = state.db.global_read().await?;
    let tenants: Vec<(TenantId,)> = tx
        .fetch_all(
            "SELECT owner_tenant FROM webhook_tenants ORDER BY owner_tenant",
            vec![],
        )
        .await?;
    drop(tx);
    let mut report = DeliveryReport::default();
    for (tenant,) in tenants {
        if let Err(e) = super::webhook_send::deliver_tenant(&state, tenant, &mut report).await {
            tracing::error!(%tenant, error = %e, "audit webhook delivery failed");
        }
    }
    Ok(report)
}

/// The claim on one tenant's endpoint held by a run.
pub(super) struct Claim {
    pub lease_id: String,
    pub url: String,
    pub secret: Zeroizing<Vec<u8>>,
    pub delivered_seq: i64,
}

/// Claims `tenant`'s endpoint if it is enabled, due, not leased and behind
/// the chain's head. `None` when there is nothing to do (or another instance
/// holds it): an idle endpoint costs one read per run, no write.
pub(super) async fn claim(
    state: &AuthState,
    tenant: TenantId,
) -> Result<Option<Claim>, WebhookError> {
    let now = state.clock.now();
    let lease_id = uuid::Uuid::new_v4().to_string();
    let mut tx = state.db.tenant_tx(tenant).await?;
    let row: Option<(String, Vec<u8>, i64, i64)> = tx
        .fetch_optional(
            "UPDATE audit_webhooks SET lease_id = $2, lease_until = $3 \
             WHERE tenant_id = $1 AND enabled AND next_attempt_at <= $4 \
             AND (lease_until IS NULL OR lease_until <= $4) \
             AND delivered_seq < (SELECT seq FROM audit_heads WHERE tenant_id = $1) \
             RETURNING url, sealed_secret, master_version, delivered_seq",
            vec![lease_id.clone().into(), (now + LEASE).into(), now.into()],
        )
        .await?;
    tx.commit().await?;
    let Some((url, sealed, version, delivered_seq)) = row else {
        return Ok(None);
    };
    let version = u32::try_from(version).map_err(|_| WebhookError::Seal)?;
    let secret = match state.master().open(version, &aad(tenant), &sealed) {
        Ok(s) => s,
        Err(_) => {
            let c = Claim {
                lease_id,
                url,
                secret: Zeroizing::new(Vec::new()),
                delivered_seq,
            };
            failed(state, tenant, &c, "the webhook secret cannot be opened").await?;
            return Ok(None);
        }
    };
    Ok(Some(Claim {
        lease_id,
        url,
        secret,
        delivered_seq,
    }))
}

/// The next undelivered events of the claim, as the export shows them
/// (personal fields opened while their subject's key exists).
pub(super) async fn pending(
    state: &AuthState,
    tenant: TenantId,
    after: i64,
) -> Result<Vec<EventView>, AuditError> {
    let mut tx = state.db.tenant_read(tenant).await?;
    let page = page_after(&mut tx, after, MAX_PER_RUN).await?;
    reveal(&mut tx, page, Ids::Stored).await
}

/// Records that `seq` was acknowledged; renews the lease. False when the
/// lease was lost (another instance took over): stop.
pub(super) async fn delivered(
    state: &AuthState,
    tenant: TenantId,
    claim: &Claim,
    seq: i64,
) -> Result<bool, DbError> {
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(tenant).await?;
    let n = tx
        .execute(
            "UPDATE audit_webhooks SET delivered_seq = $3, failures = 0, failing_since = NULL, \
             last_error = NULL, lease_until = $4 WHERE tenant_id = $1 AND lease_id = $2",
            vec![
                claim.lease_id.clone().into(),
                seq.into(),
                (now + LEASE).into(),
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Ends a run without a failure: releases the lease. The endpoint stays
/// due: the next run goes on when events remain or new ones were appended.
pub(super) async fn release(
    state: &AuthState,
    tenant: TenantId,
    claim: &Claim,
) -> Result<(), DbError> {
    let now = state.clock.now();
    let mut tx = state.db.tenant_tx(tenant).await?;
    tx.execute(
        "UPDATE audit_webhooks SET lease_id = NULL, lease_until = NULL, next_attempt_at = $3 \
         WHERE tenant_id = $1 AND lease_id = $2",
        vec![claim.lease_id.clone().into(), now.into()],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The wait after `failures` consecutive failures: 2^failures seconds, at
/// most [`MAX_BACKOFF_SECS`].
pub fn backoff(failures: i64) -> Duration {
    let exp = u32::try_from(failures.clamp(0, 12)).unwrap_or(12);
    Duration::seconds((1i64 << exp).min(MAX_BACKOFF_SECS))
}

/// Records a failed attempt: counts it, schedules the retry, releases the
/// lease, and disables the endpoint (audited) after repeated failure.
/// Returns true when it disabled the endpoint.
pub(super) async fn failed(
    state: &AuthState,
    tenant: TenantId,
    claim: &Claim,
    error: &str,
) -> Result<bool, WebhookError> {
    let now = state.clock.now();
    let error: String = error.chars().take(MAX_ERROR_LEN).collect();
    let mut tx = state.db.tenant_tx(tenant).await?;
    let row: Option<(i64, Option<DateTime<Utc>>)> = tx
        .fetch_optional(
            "UPDATE audit_webhooks SET failures = failures + 1, \
             failing_since = COALESCE(failing_since, $3), last_error = $4, \
             lease_id = NULL, lease_until = NULL \
             WHERE tenant_id = $1 AND lease_id = $2 RETURNING failures, failing_since",
            vec![
                claim.lease_id.clone().into(),
                now.into(),
                error.clone().into(),
            ],
        )
        .await?;
    let Some((failures, since)) = row else {
        return Ok(false); // the lease was lost: the new holder records its own
    };
    let since = since.unwrap_or(now);
    let disable = failures >= DISABLE_AFTER_FAILURES && now - since >= DISABLE_AFTER;
    if disable {
        tx.execute(
            "UPDATE audit_webhooks SET enabled = $2, updated_at = $3 WHERE tenant_id = $1",
            vec![false.into(), now.into()],
        )
        .await?;
        super::append(
            &mut tx,
            state.clock.as_ref(),
            NewEvent::new(Actor::System, "audit.webhook.disabled")
                .target(Target::new("tenant", tenant))
                .details(serde_json::json!({
                    "url": claim.url,
                    "failures": failures,
                    "failing_since": since,
                    "last_error": error,
                    "delivered_seq": claim.delivered_seq,
                })),
        )
        .await
        .map_err(|e| match e {
            super::AuditError::Db(d) => WebhookError::Db(d),
            _ => WebhookError::Seal,
        })?;
    } else {
        tx.execute(
            "UPDATE audit_webhooks SET next_attempt_at = $2 WHERE tenant_id = $1",
            vec![(now + backoff(failures)).into()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(disable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::seconds(2));
        assert_eq!(backoff(2), Duration::seconds(4));
        assert_eq!(backoff(11), Duration::seconds(2048));
        assert_eq!(backoff(12), Duration::seconds(3600));
        assert_eq!(backoff(500), Duration::seconds(3600));
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference
        // libraries: secret, id, timestamp, payload and signature.
        let secret = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(encode_secret(&[0u8; 32]).starts_with(SECRET_PREFIX));
    }
}
