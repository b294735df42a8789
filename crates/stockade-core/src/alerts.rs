//! Operational alerts (SPEC §2.16), decided from observations alone: the
//! server feeds time-stamped counts (requests by status class, rate-limit
//! refusals per client address, webhook and email delivery outcomes) and the
//! latest backup and audit-chain verification results; [`Alerts::evaluate`]
//! says which alerts were raised or cleared at `now`. No I/O and no clock of
//! its own: every time comes from the caller (the injected `Clock`), so
//! tests move time instead of waiting.
//!
//! Rules over a sliding window (`window`, 5 minutes by default) raise when
//! over their threshold at an evaluation and clear only once they have been
//! back under it for a whole window (hysteresis: a rate hovering at the
//! threshold does not flap). Rules over the latest state (backups, the audit
//! chain) follow it: they clear at the first evaluation after a good result.
//!
//! | alert | raised when |
//! |---|---|
//! | `http_5xx_rate` | 5xx answers are at least `server_error_percent` % of at least `server_error_min_requests` requests in the window |
//! | `http_4xx_spike` | 4xx answers in the window are at least `client_error_min` and more than `client_error_factor` × the trailing baseline (the mean per window over the `baseline_windows` windows before it; no traffic before start counts as zero) |
//! | `rate_limited_address` | one client address (a per-address limit key) was refused by rate limits at least `rate_limit_hits` times in the window |
//! | `webhook_failure_rate`, `email_failure_rate` | failed deliveries are at least the `…_failure_percent` of at least `delivery_min_attempts` attempts in the window |
//! | `backup_overdue` | backups are reported, and the last success (or, before one, the first report) is older than `backup_max_age` (26 h) |
//! | `backup_failed` | the last reported backup failed |
//! | `audit_chain_verification_failed` | the last reported audit chain verification failed |
//!
//! Before any backup or chain verification is reported (none configured
//! yet) their alerts stay cleared. The addresses a rule counts are held for
//! detection and named in its evidence (the audit event), never anywhere
//! that would make them a metric label.

mod window;

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;
use std::ops::AddAssign;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use window::{Series, granularity};

/// Distinct client addresses tracked by `rate_limited_address` at most; past
/// it, addresses with nothing left in the window are forgotten, then the
/// one seen longest ago.
pub const MAX_ADDRESSES: usize = 10_000;

/// Addresses named in the evidence of `rate_limited_address` at most.
pub const EVIDENCE_ADDRESSES: usize = 10;

/// Every alert, by its stable name (the `name` label of `stockade_alert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alert {
    Http5xxRate,
    Http4xxSpike,
    RateLimitedAddress,
    WebhookFailureRate,
    EmailFailureRate,
    BackupOverdue,
    BackupFailed,
    AuditChainVerificationFailed,
}

impl Alert {
    pub const ALL: [Alert; 8] = [
        Alert::Http5xxRate,
        Alert::Http4xxSpike,
        Alert::RateLimitedAddress,
        Alert::WebhookFailureRate,
        Alert::EmailFailureRate,
        Alert::BackupOverdue,
        Alert::BackupFailed,
        Alert::AuditChainVerificationFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Alert::Http5xxRate => "http_5xx_rate",
            Alert::Http4xxSpike => "http_4xx_spike",
            Alert::RateLimitedAddress => "rate_limited_address",
            Alert::WebhookFailureRate => "webhook_failure_rate",
            Alert::EmailFailureRate => "email_failure_rate",
            Alert::BackupOverdue => "backup_overdue",
            Alert::BackupFailed => "backup_failed",
            Alert::AuditChainVerificationFailed => "audit_chain_verification_failed",
        }
    }

    /// Its position in [`Alert::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The thresholds (`STOCKADE_ALERT_*`, see `docs/metrics.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The sliding window of every rate rule, and how long a rule must stay
    /// under its threshold before it clears.
    pub window: Duration,
    pub server_error_percent: u32,
    pub server_error_min_requests: u64,
    pub client_error_factor: u32,
    pub client_error_min: u64,
    pub baseline_windows: u32,
    pub rate_limit_hits: u64,
    pub webhook_failure_percent: u32,
    pub email_failure_percent: u32,
    pub delivery_min_attempts: u64,
    pub backup_max_age: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            window: Duration::minutes(5),
            server_error_percent: 5,
            server_error_min_requests: 50,
            client_error_factor: 4,
            client_error_min: 100,
            baseline_windows: 12,
            rate_limit_hits: 30,
            webhook_failure_percent: 50,
            email_failure_percent: 50,
            delivery_min_attempts: 5,
            backup_max_age: Duration::hours(26),
        }
    }
}

/// Requests answered, by status class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    pub total: u64,
    pub client_errors: u64,
    pub server_errors: u64,
}

impl AddAssign for Requests {
    fn add_assign(&mut self, o: Self) {
        self.total = self.total.saturating_add(o.total);
        self.client_errors = self.client_errors.saturating_add(o.client_errors);
        self.server_errors = self.server_errors.saturating_add(o.server_errors);
    }
}

/// Delivery attempts, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub ok: u64,
    pub failed: u64,
}

impl AddAssign for Deliveries {
    fn add_assign(&mut self, o: Self) {
        self.ok = self.ok.saturating_add(o.ok);
        self.failed = self.failed.saturating_add(o.failed);
    }
}

/// An alert raised or cleared, with what it was decided on (for the audit
/// event: counts, thresholds, and for `rate_limited_address` the addresses).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub alert: Alert,
    pub raised: bool,
    pub evidence: Value,
}

#[derive(Debug, Clone, Copy, Default)]
struct Standing {
    raised: bool,
    last_over: Option<DateTime<Utc>>,
}

/// A reported result (backup, chain verification) and its time.
#[derive(Debug, Clone, Copy)]
struct Report {
    ok: bool,
    at: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Backups {
    first: Option<DateTime<Utc>>,
    last_success: Option<DateTime<Utc>>,
    last: Option<Report>,
}

/// The detector of one server instance, keyed by client address type `K`.
#[derive(Debug)]
pub struct Alerts<K> {
    settings: Settings,
    requests: Series<Requests>,
    limited: HashMap<K, Series<u64>>,
    webhooks: Series<Deliveries>,
    emails: Series<Deliveries>,
    backups: Backups,
    chain: Option<Report>,
    standing: [Standing; Alert::ALL.len()],
}

/// What a rule found: over its threshold or not, and the numbers.
struct Finding {
    over: bool,
    evidence: Value,
}

impl<K: Hash + Eq + Clone + Display> Alerts<K> {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            requests: Series::default(),
            limited: HashMap::new(),
            webhooks: Series::default(),
            emails: Series::default(),
            backups: Backups::default(),
            chain: None,
            standing: [Standing::default(); Alert::ALL.len()],
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn grain(&self) -> Duration {
        granularity(self.settings.window)
    }

    /// How far back request counts are kept: the window and its baseline.
    fn request_horizon(&self) -> Duration {
        self.settings.window
            * i32::try_from(self.settings.baseline_windows.saturating_add(1)).unwrap_or(i32::MAX)
    }

    /// Requests answered up to `at` (since the last observation).
    pub fn observe_requests(&mut self, at: DateTime<Utc>, counts: Requests) {
        let grain = self.grain();
        self.requests.add(at, counts, grain);
        self.requests.prune(at - self.request_horizon());
    }

    /// `hits` rate-limit refusals of the client at `address`, at `at`.
    pub fn observe_rate_limited(&mut self, at: DateTime<Utc>, address: &K, hits: u64) {
        let grain = self.grain();
        let since = at - self.settings.window;
        if !self.limited.contains_key(address) && self.limited.len() >= MAX_ADDRESSES {
            self.limited.retain(|_, s| {
                s.prune(since);
                !s.is_empty()
            });
            if self.limited.len() >= MAX_ADDRESSES
                && let Some(oldest) = self
                    .limited
                    .iter()
                    .min_by_key(|(_, s)| s.latest())
                    .map(|(k, _)| k.clone())
            {
                self.limited.remove(&oldest);
            }
        }
        let series = self.limited.entry(address.clone()).or_default();
        series.add(at, hits, grain);
        series.prune(since);
    }

    /// Audit webhook delivery attempts that succeeded and failed, at `at`.
    pub fn observe_webhook_deliveries(&mut self, at: DateTime<Utc>, d: Deliveries) {
        let grain = self.grain();
        self.webhooks.add(at, d, grain);
        self.webhooks.prune(at - self.settings.window);
    }

    /// Email deliveries that succeeded and failed, at `at`.
    pub fn observe_email_deliveries(&mut self, at: DateTime<Utc>, d: Deliveries) {
        let grain = self.grain();
        self.emails.add(at, d, grain);
        self.emails.prune(at - self.settings.window);
    }

    /// A backup finished at `at`, successfully or not. Until the first call
    /// no backup is configured, and neither backup alert can be raised.
    pub fn observe_backup(&mut self, ok: bool, at: DateTime<Utc>) {
        let b = &mut self.backups;
        b.first = Some(b.first.map_or(at, |f| f.min(at)));
        if ok {
            b.last_success = Some(b.last_success.map_or(at, |s| s.max(at)));
        }
        if b.last.is_none_or(|last| at >= last.at) {
            b.last = Some(Report { ok, at });
        }
    }

    /// A verification of the audit chains finished at `at`: `ok` when every
    /// chain verified.
    pub fn observe_chain_verification(&mut self, ok: bool, at: DateTime<Utc>) {
        if self.chain.is_none_or(|last| at >= last.at) {
            self.chain = Some(Report { ok, at });
        }
    }

    /// Whether `alert` is raised.
    pub fn is_raised(&self, alert: Alert) -> bool {
        self.standing.get(alert.index()).is_some_and(|s| s.raised)
    }

    /// Judges every rule at `now`; the alerts raised or cleared since the
    /// last evaluation, in [`Alert::ALL`] order.
    pub fn evaluate(&mut self, now: DateTime<Utc>) -> Vec<Transition> {
        self.requests.prune(now - self.request_horizon());
        let since = now - self.settings.window;
        self.webhooks.prune(since);
        self.emails.prune(since);
        self.limited.retain(|_, s| {
            s.prune(since);
            !s.is_empty()
        });
        let mut out = Vec::new();
        for alert in Alert::ALL {
            let (finding, hysteresis) = match alert {
                Alert::Http5xxRate => (self.server_errors(now), true),
                Alert::Http4xxSpike => (self.client_error_spike(now), true),
                Alert::RateLimitedAddress => (self.rate_limited(now), true),
                Alert::WebhookFailureRate => (
                    failures(
                        &self.webhooks,
                        now,
                        since,
                        self.settings.webhook_failure_percent,
                        &self.settings,
                    ),
                    true,
                ),
                Alert::EmailFailureRate => (
                    failures(
                        &self.emails,
                        now,
                        since,
                        self.settings.email_failure_percent,
                        &self.settings,
                    ),
                    true,
                ),
                Alert::BackupOverdue => (self.backup_overdue(now), false),
                Alert::BackupFailed => (latest_failed(self.backups.last), false),
                Alert::AuditChainVerificationFailed => (latest_failed(self.chain), false),
            };
            if let Some(t) = self.judge(alert, finding, now, hysteresis) {
                out.push(t);
            }
        }
        out
    }

    /// Raises an alert over its threshold; clears one that is not, once it
    /// has been under for a whole window (`hysteresis`) or at once.
    fn judge(
        &mut self,
        alert: Alert,
        finding: Finding,
        now: DateTime<Utc>,
        hysteresis: bool,
    ) -> Option<Transition> {
        let window = self.settings.window;
        let standing = self.standing.get_mut(alert.index())?;
        if finding.over {
            standing.last_over = Some(now);
        }
        let change = match (standing.raised, finding.over) {
            (false, true) => true,
            (true, false) => !hysteresis || standing.last_over.is_none_or(|at| now - at >= window),
            _ => false,
        };
        if !change {
            return None;
        }
        standing.raised = finding.over;
        Some(Transition {
            alert,
            raised: finding.over,
            evidence: finding.evidence,
        })
    }

    fn window_secs(&self) -> i64 {
        self.settings.window.num_seconds()
    }

    fn server_errors(&self, now: DateTime<Utc>) -> Finding {
        let s = &self.settings;
        let r = self.requests.sum(now - s.window, now);
        Finding {
            over: r.total >= s.server_error_min_requests.max(1)
                && at_least_percent(r.server_errors, r.total, s.server_error_percent),
            evidence: json!({
                "window_secs": self.window_secs(),
                "requests": r.total,
                "server_errors": r.server_errors,
                "threshold_percent": s.server_error_percent,
                "min_requests": s.server_error_min_requests,
            }),
        }
    }

    fn client_error_spike(&self, now: DateTime<Utc>) -> Finding {
        let s = &self.settings;
        let current = self.requests.sum(now - s.window, now).client_errors;
        let baseline_start = now - self.request_horizon();
        let baseline = self
            .requests
            .sum(baseline_start, now - s.window)
            .client_errors;
        let windows = u128::from(s.baseline_windows.max(1));
        // current > factor × baseline / windows, in integers.
        let spike = u128::from(current) * windows
            > u128::from(s.client_error_factor) * u128::from(baseline);
        Finding {
            over: current >= s.client_error_min.max(1) && spike,
            evidence: json!({
                "window_secs": self.window_secs(),
                "client_errors": current,
                "baseline_per_window": u64::try_from(u128::from(baseline) / windows).unwrap_or(u64::MAX),
                "baseline_windows": s.baseline_windows,
                "factor": s.client_error_factor,
                "min_client_errors": s.client_error_min,
            }),
        }
    }

    fn rate_limited(&self, now: DateTime<Utc>) -> Finding {
        let s = &self.settings;
        let since = now - s.window;
        let mut over: Vec<(u64, &K)> = self
            .limited
            .iter()
            .map(|(k, series)| (series.sum(since, now), k))
            .filter(|(hits, _)| *hits >= s.rate_limit_hits.max(1))
            .collect();
        over.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.to_string().cmp(&b.1.to_string()))
        });
        let named: Vec<Value> = over
            .iter()
            .take(EVIDENCE_ADDRESSES)
            .map(|(hits, k)| json!({ "address": k.to_string(), "hits": hits }))
            .collect();
        Finding {
            over: !over.is_empty(),
            evidence: json!({
                "window_secs": self.window_secs(),
                "threshold_hits": s.rate_limit_hits,
                "addresses_over": over.len(),
                "addresses": named,
            }),
        }
    }

    fn backup_overdue(&self, now: DateTime<Utc>) -> Finding {
        let b = &self.backups;
        let max_age = self.settings.backup_max_age;
        let Some(since) = b.last_success.or(b.first) else {
            return Finding {
                over: false,
                evidence: json!({ "configured": false }),
            };
        };
        Finding {
            over: now - since > max_age,
            evidence: json!({
                "last_success_at": b.last_success,
                "max_age_hours": max_age.num_hours(),
            }),
        }
    }
}

fn failures(
    series: &Series<Deliveries>,
    now: DateTime<Utc>,
    since: DateTime<Utc>,
    percent: u32,
    s: &Settings,
) -> Finding {
    let d = series.sum(since, now);
    let attempts = d.ok.saturating_add(d.failed);
    Finding {
        over: attempts >= s.delivery_min_attempts.max(1)
            && at_least_percent(d.failed, attempts, percent),
        evidence: json!({
            "window_secs": s.window.num_seconds(),
            "attempts": attempts,
            "failed": d.failed,
            "threshold_percent": percent,
            "min_attempts": s.delivery_min_attempts,
        }),
    }
}

fn latest_failed(report: Option<Report>) -> Finding {
    Finding {
        over: report.is_some_and(|r| !r.ok),
        evidence: match report {
            Some(r) => json!({ "ok": r.ok, "at": r.at }),
            None => json!({ "configured": false }),
        },
    }
}

/// `part` is at least `percent` % of `whole` (exact, in integers).
fn at_least_percent(part: u64, whole: u64, percent: u32) -> bool {
    whole > 0 && u128::from(part) * 100 >= u128::from(percent) * u128::from(whole)
}

#[cfg(test)]
mod tests;
