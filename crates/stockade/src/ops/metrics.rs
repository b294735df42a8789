//! Prometheus metrics (SPEC §2.16): the name of every series, defined once
//! here, and the one function per event that the rooms call where the event
//! happens (a failed sign-in, a lockout, a refresh-token reuse, an audit
//! append, a webhook or email delivery, a job run). The recorder is
//! process-wide (`metrics-exporter-prometheus`, installed once by
//! [`install`]); `ops::admin` renders it on the admin listener only, never
//! on the public port. See `docs/metrics.md`.
//!
//! Every label value is bounded: a route *template* (axum's `MatchedPath`,
//! or `unmatched`), a method from a fixed list, a status class, a name or
//! outcome from this file. Never a raw path, an id, an address or an email:
//! nothing a client sends becomes a label value, so no client can grow the
//! series or read another's data in them.
//!
//! Counters count from the process's start; with several server instances
//! in one process (the integration tests) they add up.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use metrics::{
    Counter, Histogram, SharedString, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::http::ApiError;

pub const HTTP_REQUESTS: &str = "stockade_http_requests_total";
pub const HTTP_DURATION: &str = "stockade_http_request_duration_seconds";
pub const SIGN_INS: &str = "stockade_sign_ins_total";
pub const RATE_LIMIT_REFUSALS: &str = "stockade_rate_limit_refusals_total";
pub const LOCKOUTS: &str = "stockade_account_lockouts_total";
pub const REFRESH_REUSE: &str = "stockade_refresh_token_reuse_detected_total";
pub const AUDIT_APPENDS: &str = "stockade_audit_events_appended_total";
pub const WEBHOOK_DELIVERIES: &str = "stockade_audit_webhook_deliveries_total";
pub const EMAIL_DELIVERIES: &str = "stockade_email_deliveries_total";
pub const BACKUP_LAST_SUCCESS: &str = "stockade_backup_last_success_timestamp_seconds";
pub const DB_POOL_CONNECTIONS: &str = "stockade_db_pool_connections";
pub const DB_POOL_IDLE: &str = "stockade_db_pool_idle_connections";
pub const DB_POOL_MAX: &str = "stockade_db_pool_max_connections";
pub const JOB_RUNS: &str = "stockade_job_runs_total";
pub const JOB_LAST_RUN: &str = "stockade_job_last_run_timestamp_seconds";
pub const BUILD_INFO: &str = "stockade_build_info";
pub const ALERT: &str = "stockade_alert";

/// The latency histogram's buckets, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The route label of a request no route matched (404s on made-up paths).
pub const UNMATCHED: &str = "unmatched";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder, once; later calls return the same
/// handle. `None` when another recorder was installed first (then nothing
/// is recorded, and `/metrics` says so).
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.to_owned()), &DURATION_BUCKETS)
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::error!(error = %e, "metrics recorder not installed: another one was");
                return None;
            }
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            for alert in stockade_core::alerts::Alert::ALL {
                gauge!(ALERT, "name" => alert.name()).set(0.0);
            }
            Some(handle)
        })
        .as_ref()
}

/// Folds the histograms' recent samples into their buckets. A scrape does
/// it too; without scrapes the samples would pile up, so the `ops.alerts`
/// job calls this on every run.
pub fn upkeep() {
    if let Some(handle) = handle() {
        handle.run_upkeep();
    }
}

/// The installed recorder's handle, if any.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get().and_then(Option::as_ref)
}

/// The `HELP` line (and unit) of every series.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by method, route template and status class"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency, by method, route template and status class"
    );
    describe_counter!(
        SIGN_INS,
        Unit::Count,
        "Sign-in attempts, by step (password, mfa, passkey) and outcome"
    );
    describe_counter!(
        RATE_LIMIT_REFUSALS,
        Unit::Count,
        "Requests refused by a rate limit, by limiter"
    );
    describe_counter!(
        LOCKOUTS,
        Unit::Count,
        "Accounts locked after repeated failed password or factor attempts"
    );
    describe_counter!(
        REFRESH_REUSE,
        Unit::Count,
        "Rotated refresh tokens presented again (the session is revoked)"
    );
    describe_counter!(
        AUDIT_APPENDS,
        Unit::Count,
        "Audit events appended, by chain (platform or tenant)"
    );
    describe_counter!(
        WEBHOOK_DELIVERIES,
        Unit::Count,
        "Audit webhook deliveries, by outcome (delivered: one event; failed: one attempt)"
    );
    describe_counter!(
        EMAIL_DELIVERIES,
        Unit::Count,
        "Email deliveries, by sender and outcome"
    );
    describe_gauge!(
        BACKUP_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful backup (absent until one)"
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        Unit::Count,
        "Open database connections, by pool"
    );
    describe_gauge!(
        DB_POOL_IDLE,
        Unit::Count,
        "Idle database connections, by pool"
    );
    describe_gauge!(
        DB_POOL_MAX,
        Unit::Count,
        "Most database connections, by pool"
    );
    describe_counter!(
        JOB_RUNS,
        Unit::Count,
        "Scheduled job runs, by job and outcome"
    );
    describe_gauge!(
        JOB_LAST_RUN,
        Unit::Seconds,
        "Unix time the job's last run finished, by job"
    );
    describe_gauge!(BUILD_INFO, Unit::Count, "Always 1; the version is a label");
    describe_gauge!(
        ALERT,
        Unit::Count,
        "1 while the alert is raised on an instance of this process, else 0"
    );
}

/// The method label: one of a fixed list.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The status label: its class.
pub fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// One answered request (`ops::http_metrics`): `route` is a template or
/// [`UNMATCHED`]. The request path's one metrics call: the series' handles
/// are registered once per (route, method, status class) and reused, so a
/// request allocates nothing here (a read lock, never held across an
/// await, and two atomic updates). Nothing is recorded before [`install`].
pub fn http_request(method: &'static str, route: &str, status: &'static str, took: Duration) {
    if handle().is_none() {
        return;
    }
    let seconds = took.as_secs_f64();
    let record = |(counter, histogram): &RequestHandles| {
        counter.increment(1);
        histogram.record(seconds);
    };
    {
        let known = REQUEST_HANDLES
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = known.get(route).and_then(|by| find(by, method, status)) {
            record(h);
            return;
        }
    }
    let route_label = SharedString::from(Arc::<str>::from(route));
    let labels: [(&'static str, SharedString); 3] = [
        ("method", SharedString::const_str(method)),
        ("route", route_label),
        ("status", SharedString::const_str(status)),
    ];
    let handles = (
        counter!(HTTP_REQUESTS, &labels),
        histogram!(HTTP_DURATION, &labels),
    );
    let mut known = REQUEST_HANDLES
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    let by = known.entry(route.into()).or_default();
    if find(by, method, status).is_none() {
        by.push(((method, status), handles));
    }
    if let Some(h) = find(by, method, status) {
        record(h);
    }
}

type RequestHandles = (Counter, Histogram);

/// Per route template, the handles of each (method, status class) seen:
/// bounded by the router's routes (and `unmatched`) × 8 methods × 5 classes.
#[allow(clippy::type_complexity)] // reason: one map, named by its use
static REQUEST_HANDLES: LazyLock<
    RwLock<HashMap<Box<str>, Vec<((&'static str, &'static str), RequestHandles)>>>,
> = LazyLock::new(RwLock::default);

fn find<'a>(
    by: &'a [((&'static str, &'static str), RequestHandles)],
    method: &str,
    status: &str,
) -> Option<&'a RequestHandles> {
    by.iter()
        .find(|((m, s), _)| *m == method && *s == status)
        .map(|(_, h)| h)
}

/// A sign-in step's answer (`password`, `mfa`, `passkey`), by its outcome.
pub fn sign_in(step: &'static str, result: &Result<Response, ApiError>) {
    counter!(SIGN_INS, "step" => step, "outcome" => sign_in_outcome(result)).increment(1);
}

/// Marks a sign-in answer that asks for the second factor.
#[derive(Debug, Clone, Copy)]
pub struct MfaRequired;

/// The outcome label of a sign-in answer.
pub fn sign_in_outcome(result: &Result<Response, ApiError>) -> &'static str {
    match result {
        Ok(res) if res.extensions().get::<MfaRequired>().is_some() => "mfa_required",
        Ok(res) if res.status().is_success() => "success",
        Ok(_) => "refused",
        Err(e) => match e.code() {
            "auth.invalid_credentials"
            | "auth.mfa_invalid_code"
            | "auth.webauthn_invalid"
            | "auth.mfa_token_invalid" => "bad_credentials",
            "auth.account_locked" => "locked",
            "auth.rate_limited" => "rate_limited",
            "tenancy.ip_not_allowed" => "ip_not_allowed",
            "tenancy.suspended" => "suspended",
            _ if e.status_code().is_server_error() => "error",
            _ => "refused",
        },
    }
}

/// A request refused by `limiter` (counted by the request layer).
pub fn rate_limited(limiter: &'static str) {
    counter!(RATE_LIMIT_REFUSALS, "limiter" => limiter).increment(1);
}

/// An account was locked.
pub fn account_locked() {
    counter!(LOCKOUTS).increment(1);
}

/// A rotated refresh token was presented again, and its session revoked.
pub fn refresh_reuse_detected() {
    counter!(REFRESH_REUSE).increment(1);
}

/// `n` events appended to the platform's chain or a tenant's.
pub fn audit_appended(platform: bool, n: usize) {
    let chain = if platform { "platform" } else { "tenant" };
    counter!(AUDIT_APPENDS, "chain" => chain).increment(u64::try_from(n).unwrap_or(u64::MAX));
}

/// An audit webhook delivery: `delivered` (one event) or `failed` (one
/// attempt, its events retried later).
pub fn webhook_delivery(delivered: bool) {
    let outcome = if delivered { "delivered" } else { "failed" };
    counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// An email delivery by `sender` (today only `development`): `sent` or
/// `failed`.
pub fn email_delivery(sender: &'static str, sent: bool) {
    let outcome = if sent { "sent" } else { "failed" };
    counter!(EMAIL_DELIVERIES, "sender" => sender, "outcome" => outcome).increment(1);
}

/// A scheduled job's run finished at `at` (`jobs::Scheduler`).
pub fn job_run(job: &'static str, ok: bool, at: DateTime<Utc>) {
    let outcome = if ok { "ok" } else { "error" };
    counter!(JOB_RUNS, "job" => job, "outcome" => outcome).increment(1);
    gauge!(JOB_LAST_RUN, "job" => job).set(unix_seconds(at));
}

/// The backups (issue #24) call this after each successful backup, with
/// the time it finished; until then the series is absent. A failed backup
/// changes nothing here: it is reported to the alerts
/// (`ops::alerts::Monitor::observe_backup`).
pub fn backup_succeeded(at: DateTime<Utc>) {
    gauge!(BACKUP_LAST_SUCCESS).set(unix_seconds(at));
}

/// One database pool's use, read at each scrape.
pub fn db_pool(pool: &'static str, size: u32, idle: usize, max: u32) {
    gauge!(DB_POOL_CONNECTIONS, "pool" => pool).set(f64::from(size));
    gauge!(DB_POOL_IDLE, "pool" => pool).set(idle as f64);
    gauge!(DB_POOL_MAX, "pool" => pool).set(f64::from(max));
}

/// Whether `alert` is raised on any instance of this process.
pub fn alert(name: &'static str, raised: bool) {
    gauge!(ALERT, "name" => name).set(if raised { 1.0 } else { 0.0 });
}

fn unix_seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_micros() as f64 / 1e6
}
