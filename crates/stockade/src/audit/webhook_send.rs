//! One delivery run for one tenant: claim, check the address again, POST the
//! pending events one by one, record the outcome (see `webhook`).

use super::AuditState;
use super::webhook::{self, Claim, DeliveryReport, WebhookError};
use super::webhook_url::{self, UrlError};
use crate::ids::TenantId;

/// The HTTP client of one run: HTTPS only, no proxy, no redirects, the
/// attempt timeout, the configured extra trust roots, and the host pinned to
/// the addresses that were just checked (so the connection goes where the
/// SSRF check looked).
fn client(state: &AuditState, target: &webhook_url::Target) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(webhook::ATTEMPT_TIMEOUT)
        .connect_timeout(webhook::ATTEMPT_TIMEOUT)
        .user_agent("stockade-audit-webhook/1");
    for cert in state.webhook_roots() {
        b = b.add_root_certificate(cert.clone());
    }
    if let Some(domain) = &target.domain {
        b = b.resolve_to_addrs(domain, &target.addrs);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Claims `tenant` and sends its pending events; adds to `report`.
pub(super) async fn deliver_tenant(
    state: &AuditState,
    tenant: TenantId,
    report: &mut DeliveryReport,
) -> Result<(), WebhookError> {
    let Some(claim) = webhook::claim(state, tenant).await? else {
        return Ok(());
    };
    report.tenants += 1;
    match send_pending(state, tenant, &claim, report).await {
        Ok(()) => webhook::release(state, tenant, &claim).await?,
        Err(Failure::Lost) => {}
        Err(Failure::Attempt(msg)) => {
            report.failed += 1;
            crate::ops::metrics::webhook_delivery(false);
            if webhook::failed(state, tenant, &claim, &msg).await? {
                report.disabled += 1;
                tracing::warn!(%tenant, "audit webhook disabled after repeated failures");
            }
        }
        Err(Failure::Store(e)) => {
            // Leave the lease to expire; the next run retries.
            return Err(e);
        }
    }
    Ok(())
}

enum Failure {
    /// The attempt failed: counts towards backoff and disabling.
    Attempt(String),
    /// Another instance took the lease over.
    Lost,
    Store(WebhookError),
}

impl From<crate::db::DbError> for Failure {
    fn from(e: crate::db::DbError) -> Self {
        Self::Store(e.into())
    }
}

impl From<super::AuditError> for Failure {
    fn from(e: super::AuditError) -> Self {
        Self::Store(e.into())
    }
}

async fn send_pending(
    state: &AuditState,
    tenant: TenantId,
    claim: &Claim,
    report: &mut DeliveryReport,
) -> Result<(), Failure> {
    let events = webhook::pending(state, tenant, claim.delivered_seq).await?;
    if events.is_empty() {
        return Ok(());
    }
    let url = webhook_url::parse(&claim.url).map_err(|e| Failure::Attempt(e.to_string()))?;
    let target = webhook_url::resolve(&url, state.config.webhook_allow_private)
        .await
        .map_err(|e| {
            Failure::Attempt(match e {
                UrlError::Invalid(m) => m,
                UrlError::Private(m) => format!("refused: {m}"),
            })
        })?;
    let http = client(state, &target).map_err(Failure::Attempt)?;
    for view in &events {
        // Exactly an export line, without its newline.
        let mut body = super::api::ndjson_line(view);
        body.pop();
        let e = &view.event;
        let id = e.id.to_string();
        let timestamp = state.clock.now().timestamp();
        let signature = webhook::sign(&claim.secret, &id, timestamp, &body);
        let res = http
            .post(target.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|err| Failure::Attempt(describe(&err)))?;
        let status = res.status();
        if !status.is_success() {
            return Err(Failure::Attempt(format!(
                "the endpoint answered HTTP {} for seq {}",
                status.as_u16(),
                e.seq
            )));
        }
        if !webhook::delivered(state, tenant, claim, e.seq).await? {
            return Err(Failure::Lost);
        }
        report.delivered += 1;
        crate::ops::metrics::webhook_delivery(true);
    }
    Ok(())
}

/// A transport error in words, without the URL (kept short and stable).
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}
