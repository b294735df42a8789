//! The alerts of one server instance (SPEC §2.16): the [`Monitor`] holds the
//! pure detector (`stockade_core::alerts`) and what feeds it — status
//! classes from the request layer (three atomic counters, so the hot path
//! takes no lock), rate-limit refusals per client address, webhook and
//! email delivery outcomes, and the latest backup and audit-chain
//! verification results. The `ops.alerts` job ([`Monitor::run`], every
//! [`EVALUATE_EVERY`]) judges them on the injected clock, and each alert
//! raised or cleared becomes three things: the `stockade_alert{name}` gauge,
//! an `ops.alert.raised` / `ops.alert.cleared` event on the platform audit
//! chain (with the evidence; for `rate_limited_address` the addresses), and
//! one structured warning line. No lock is held across an await.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use stockade_core::alerts::{Alert, Alerts, Deliveries, Requests, Settings, Transition};

use crate::audit::{Actor, NewEvent, Outcome};
use crate::clock::SharedClock;
use crate::db::Db;
use crate::http::client_ip::LimitKey;
use crate::ids::TenantId;

/// How often the `ops.alerts` job evaluates (every instance runs it).
pub const EVALUATE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Per alert, how many instances of this process have it raised: the gauge
/// is 1 while any has (one instance per process in production; the
/// integration tests run many).
static RAISED: [AtomicU32; Alert::ALL.len()] = [const { AtomicU32::new(0) }; Alert::ALL.len()];

/// One instance's alert state (see the module documentation).
pub struct Monitor {
    clock: SharedClock,
    total: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    detector: Mutex<Alerts<LimitKey>>,
}

impl Monitor {
    pub fn new(settings: Settings, clock: SharedClock) -> Self {
        Self {
            clock,
            total: AtomicU64::new(0),
            client_errors: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            detector: Mutex::new(Alerts::new(settings)),
        }
    }

    fn detector(&self) -> std::sync::MutexGuard<'_, Alerts<LimitKey>> {
        self.detector.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One answered request, by status (the request layer; no lock).
    pub fn request(&self, status: axum::http::StatusCode) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if status.is_client_error() {
            self.client_errors.fetch_add(1, Ordering::Relaxed);
        } else if status.is_server_error() {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A rate-limit refusal of `client` (its per-address limit key: behind
    /// an untrusted peer, the peer, whatever `X-Forwarded-For` says).
    pub fn rate_limited(&self, client: LimitKey) {
        let now = self.clock.now();
        self.detector().observe_rate_limited(now, &client, 1);
    }

    /// The outcome of a webhook delivery run: events delivered, attempts
    /// failed.
    pub fn webhook_deliveries(&self, delivered: u64, failed: u64) {
        if delivered + failed > 0 {
            let now = self.clock.now();
            let d = Deliveries {
                ok: delivered,
                failed,
            };
            self.detector().observe_webhook_deliveries(now, d);
        }
    }

    /// The outcome of an email delivery run: messages sent and failed.
    pub fn email_deliveries(&self, sent: u64, failed: u64) {
        if sent + failed > 0 {
            let now = self.clock.now();
            let d = Deliveries { ok: sent, failed };
            self.detector().observe_email_deliveries(now, d);
        }
    }

    /// A backup finished at `at` (the backups, issue #24, call it; until
    /// then no backup alert can be raised). A success also sets
    /// `stockade_backup_last_success_timestamp_seconds`.
    pub fn observe_backup(&self, ok: bool, at: DateTime<Utc>) {
        if ok {
            super::metrics::backup_succeeded(at);
        }
        self.detector().observe_backup(ok, at);
    }

    /// A verification of every audit chain finished at `at`: `ok` when all
    /// verified (the daily chain verification calls it).
    pub fn observe_chain_verification(&self, ok: bool, at: DateTime<Utc>) {
        self.detector().observe_chain_verification(ok, at);
    }

    /// Whether `alert` is raised on this instance.
    pub fn is_raised(&self, alert: Alert) -> bool {
        self.detector().is_raised(alert)
    }

    /// Moves the requests counted since the last call into the detector and
    /// judges every rule at the clock's now; sets the gauges.
    pub fn evaluate(&self) -> Vec<Transition> {
        let now = self.clock.now();
        let counts = Requests {
            total: self.total.swap(0, Ordering::Relaxed),
            client_errors: self.client_errors.swap(0, Ordering::Relaxed),
            server_errors: self.server_errors.swap(0, Ordering::Relaxed),
        };
        let transitions = {
            let mut detector = self.detector();
            if counts.total > 0 {
                detector.observe_requests(now, counts);
            }
            detector.evaluate(now)
        };
        for t in &transitions {
            set_gauge(t.alert, t.raised);
        }
        transitions
    }

    /// One run of the `ops.alerts` job: [`Self::evaluate`], then each
    /// transition logged and appended to the platform chain. An append that
    /// fails is logged and makes the run fail; the gauge and the log line
    /// stand.
    pub async fn run(&self, db: &Db) -> anyhow::Result<String> {
        super::metrics::upkeep();
        let transitions = self.evaluate();
        let mut failed = 0;
        for t in &transitions {
            let name = t.alert.name();
            let evidence = t.evidence.to_string();
            match t.raised {
                true => {
                    tracing::warn!(alert = name, state = "raised", evidence = %evidence, "alert raised")
                }
                false => {
                    tracing::warn!(alert = name, state = "cleared", evidence = %evidence, "alert cleared")
                }
            }
            if let Err(e) = self.audit(db, t).await {
                tracing::error!(alert = name, error = %e, "the alert could not be written to the platform audit chain");
                failed += 1;
            }
        }
        if failed > 0 {
            anyhow::bail!("{failed} alert events not written");
        }
        let raised = Alert::ALL.iter().filter(|a| self.is_raised(**a)).count();
        Ok(format!("{} changes, {raised} raised", transitions.len()))
    }

    async fn audit(&self, db: &Db, t: &Transition) -> Result<(), crate::audit::AuditError> {
        let (action, outcome) = match t.raised {
            true => ("ops.alert.raised", Outcome::Failure),
            false => ("ops.alert.cleared", Outcome::Success),
        };
        let event = NewEvent::new(Actor::System, action)
            .outcome(outcome)
            .details(serde_json::json!({ "alert": t.alert.name(), "evidence": t.evidence }));
        let mut tx = db.tenant_tx(TenantId::PLATFORM).await?;
        crate::audit::append(&mut tx, self.clock.as_ref(), event).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// An instance dropped with alerts raised no longer holds them up.
impl Drop for Monitor {
    fn drop(&mut self) {
        let detector = self
            .detector
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for alert in Alert::ALL {
            if detector.is_raised(alert) {
                set_gauge(alert, false);
            }
        }
    }
}

/// Counts this instance in or out of `alert`'s raisers; the gauge follows.
fn set_gauge(alert: Alert, raised: bool) {
    let Some(count) = RAISED.get(alert.index()) else {
        return;
    };
    let now = match raised {
        true => count.fetch_add(1, Ordering::SeqCst).saturating_add(1),
        false => {
            let before = count
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    Some(n.saturating_sub(1))
                })
                .unwrap_or(0);
            before.saturating_sub(1)
        }
    };
    super::metrics::alert(alert.name(), now > 0);
}
