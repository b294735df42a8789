//! Alerts through a real server (issue #20 item 6), on SQLite and
//! PostgreSQL, driven by a moved clock: real requests feed the instance's
//! detector, `app::evaluate_alerts` runs what the `ops.alerts` job runs, and
//! each alert raised or cleared shows as `stockade_alert{name=…}` 1 then 0
//! on the admin listener and as `ops.alert.raised` / `ops.alert.cleared` on
//! the platform audit chain (which still verifies). The rules themselves,
//! every threshold and edge, are unit-tested in `stockade_core::alerts`.
//!
//! The alert gauge is process-wide: these tests take [`ONE_AT_A_TIME`] so
//! one backend's run does not hold up or clear the other's.

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::ids::TenantId;
use stockade_core::alerts::Alert;
use tokio::sync::Mutex;

use crate::audit::events_of;
use crate::auth::server;
use crate::mailbox::fresh_ip;
use crate::metrics::{admin_for, scrape};
use crate::testkit::{Backend, TestServer};
use stockade::ops::admin::AdminListener;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A one-minute window, so the tests move the clock by minutes.
const WINDOW: (&str, &str) = ("STOCKADE_ALERT_WINDOW_SECS", "60");

/// Runs the `ops.alerts` job's work once, at the test clock's now.
async fn evaluate(s: &TestServer) {
    stockade::app::evaluate_alerts(&s.state).await.unwrap();
}

/// The details of the platform chain's `ops.alert.<what>` events for `alert`.
async fn alert_events(s: &TestServer, what: &str, alert: Alert) -> Vec<Value> {
    events_of(&s.db, TenantId::PLATFORM, &format!("ops.alert.{what}"))
        .await
        .into_iter()
        .map(|e| serde_json::from_str::<Value>(&e.details).unwrap())
        .filter(|d| d["alert"] == alert.name())
        .collect()
}

async fn gauge(admin: &AdminListener, alert: Alert) -> f64 {
    scrape(admin)
        .await
        .sum("stockade_alert", &[("name", alert.name())])
}

/// Raised now: the gauge, one `ops.alert.raised` event (returned), the
/// monitor; and the chain still verifies.
async fn assert_raised(s: &TestServer, admin: &AdminListener, alert: Alert) -> Value {
    assert!(
        s.state.monitor.is_raised(alert),
        "{} not raised",
        alert.name()
    );
    assert_eq!(gauge(admin, alert).await, 1.0, "{}", alert.name());
    let raised = alert_events(s, "raised", alert).await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let report = stockade::audit::verify_tenant(&s.db, TenantId::PLATFORM)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    raised[0]["evidence"].clone()
}

async fn assert_cleared(s: &TestServer, admin: &AdminListener, alert: Alert) {
    assert!(
        !s.state.monitor.is_raised(alert),
        "{} still raised",
        alert.name()
    );
    assert_eq!(gauge(admin, alert).await, 0.0, "{}", alert.name());
    assert_eq!(alert_events(s, "cleared", alert).await.len(), 1);
}

/// Hides (or brings back) the table every sign-in reads first, as an owner
/// with direct database access would: sign-ins then fail with 500.
async fn break_sign_in(s: &TestServer, broken: bool) {
    let sql = match broken {
        true => "ALTER TABLE login_throttle RENAME TO login_throttle_hidden",
        false => "ALTER TABLE login_throttle_hidden RENAME TO login_throttle",
    };
    match s.db.sqlite_pool() {
        Some(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
        None => {
            let pool = crate::testkit::owner_pool(&s.db).await;
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

/// A wrong sign-in, for an address of its own each time (so the account
/// lockout never answers instead of the per-address limit).
async fn sign_in_from(s: &TestServer, forwarded_for: &str) -> StatusCode {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    s.client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": format!("nobody{n}@alerts.example"), "password": "Wrong-Horse-1"}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn server_errors_raise_then_clear_after_a_quiet_window(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let env = [
        WINDOW,
        ("STOCKADE_ALERT_5XX_MIN_REQUESTS", "10"),
        ("STOCKADE_ALERT_5XX_PERCENT", "50"),
        ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let Some(s) = server(backend, &env).await else {
        return;
    };
    let admin = admin_for(&s).await;
    let alert = Alert::Http5xxRate;
    break_sign_in(&s, true).await;
    // Nine failures: under the minimum of ten requests.
    for _ in 0..9 {
        assert_eq!(
            sign_in_from(&s, &fresh_ip()).await,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    evaluate(&s).await;
    assert!(!s.state.monitor.is_raised(alert));
    assert!(alert_events(&s, "raised", alert).await.is_empty());
    assert_eq!(
        sign_in_from(&s, &fresh_ip()).await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    evaluate(&s).await;
    let evidence = assert_raised(&s, &admin, alert).await;
    assert_eq!(evidence["server_errors"], 10, "{evidence}");
    assert_eq!(evidence["requests"], 10, "{evidence}");
    // Repaired; healthy traffic.
    break_sign_in(&s, false).await;
    for _ in 0..5 {
        let res = s.client.get(s.url("/healthz")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    // Still inside the window of the failures (10 of 15): over, raised.
    s.clock.advance(Duration::seconds(30));
    evaluate(&s).await;
    assert!(s.state.monitor.is_raised(alert));
    // The failures left the window at 60 s, but the alert was last over at
    // 30 s: it clears a whole window after that, not before.
    s.clock.advance(Duration::seconds(59));
    evaluate(&s).await;
    assert!(s.state.monitor.is_raised(alert));
    assert_eq!(gauge(&admin, alert).await, 1.0);
    s.clock.advance(Duration::seconds(1));
    evaluate(&s).await;
    assert_cleared(&s, &admin, alert).await;
    assert_eq!(
        alert_events(&s, "raised", alert).await.len(),
        1,
        "raised once"
    );
}

async fn a_burst_of_client_errors_raises_a_spike_then_clears(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let env = [WINDOW, ("STOCKADE_ALERT_4XX_SPIKE_MIN", "20")];
    let Some(s) = server(backend, &env).await else {
        return;
    };
    let admin = admin_for(&s).await;
    let alert = Alert::Http4xxSpike;
    // A scanner walking made-up paths: 404s.
    for i in 0..19 {
        let res = s
            .client
            .get(s.url(&format!("/wp-admin/{i}.php")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    evaluate(&s).await;
    assert!(!s.state.monitor.is_raised(alert), "19 is under the minimum");
    let res = s.client.get(s.url("/.env")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    evaluate(&s).await;
    let evidence = assert_raised(&s, &admin, alert).await;
    assert_eq!(evidence["client_errors"], 20, "{evidence}");
    assert_eq!(evidence["baseline_per_window"], 0, "{evidence}");
    // Still in the window at 59 s (over again); out of it at 60 s, but
    // cleared only a whole window after the last evaluation over it.
    s.clock.advance(Duration::seconds(59));
    evaluate(&s).await;
    assert!(s.state.monitor.is_raised(alert));
    s.clock.advance(Duration::seconds(1));
    evaluate(&s).await;
    assert!(s.state.monitor.is_raised(alert));
    s.clock.advance(Duration::seconds(59));
    evaluate(&s).await;
    assert_cleared(&s, &admin, alert).await;
}

/// Attacker: sign-in guesses from one peer, each claiming another address
/// in `X-Forwarded-For`. The peer is not a trusted proxy, so every refusal
/// counts against the peer itself; the alert names it, and none of the
/// forged addresses.
async fn refusals_from_one_address_raise_against_the_real_peer(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let env = [WINDOW, ("STOCKADE_ALERT_RATE_LIMIT_HITS", "3")];
    let Some(s) = server(backend, &env).await else {
        return;
    };
    let admin = admin_for(&s).await;
    let alert = Alert::RateLimitedAddress;
    let forged: Vec<String> = (0..14).map(|i| format!("203.0.113.{}", 100 + i)).collect();
    let mut refused = 0;
    for ip in &forged {
        if sign_in_from(&s, ip).await == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert_eq!(refused, 4, "the per-address limit refuses after 10");
    evaluate(&s).await;
    let evidence = assert_raised(&s, &admin, alert).await;
    assert_eq!(
        evidence["addresses"],
        json!([{ "address": "127.0.0.1", "hits": 4 }]),
        "{evidence}"
    );
    let event = events_of(&s.db, TenantId::PLATFORM, "ops.alert.raised").await;
    for ip in &forged {
        assert!(!event[0].details.contains(ip.as_str()), "{ip} was believed");
    }
    // Never a label: the address is in the audit event only.
    let exposition = scrape(&admin).await;
    assert!(!exposition.text.contains("127.0.0.1"));
    assert!(!exposition.text.contains("203.0.113."));
    s.clock.advance(Duration::seconds(60));
    evaluate(&s).await;
    assert_cleared(&s, &admin, alert).await;
}

/// Behind a trusted proxy each forwarded client is its own address: many
/// clients under the limit raise nothing; one client hammering is named.
async fn refusals_behind_a_trusted_proxy_count_per_client(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let env = [
        WINDOW,
        ("STOCKADE_ALERT_RATE_LIMIT_HITS", "3"),
        ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let Some(s) = server(backend, &env).await else {
        return;
    };
    let admin = admin_for(&s).await;
    let alert = Alert::RateLimitedAddress;
    for _ in 0..14 {
        assert_eq!(
            sign_in_from(&s, &fresh_ip()).await,
            StatusCode::UNAUTHORIZED
        );
    }
    evaluate(&s).await;
    assert!(!s.state.monitor.is_raised(alert));
    let client = "198.51.100.77";
    for i in 0..13 {
        let want = if i < 10 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(sign_in_from(&s, client).await, want, "attempt {i}");
    }
    evaluate(&s).await;
    let evidence = assert_raised(&s, &admin, alert).await;
    assert_eq!(
        evidence["addresses"],
        json!([{ "address": client, "hits": 3 }])
    );
    s.clock.advance(Duration::seconds(60));
    evaluate(&s).await;
    assert_cleared(&s, &admin, alert).await;
}

/// Failed audit webhook deliveries (an endpoint that refuses connections)
/// raise the webhook failure alert, and are counted by outcome.
async fn failing_webhook_deliveries_raise_an_alert(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let env = [
        WINDOW,
        ("STOCKADE_ALERT_DELIVERY_MIN_ATTEMPTS", "1"),
        ("STOCKADE_WEBHOOK_ALLOW_PRIVATE", "true"),
    ];
    let Some(s) = server(backend, &env).await else {
        return;
    };
    let admin = admin_for(&s).await;
    let alert = Alert::WebhookFailureRate;
    let owner = crate::auth::signup(&s, "hookalerts", "owner@hookalerts.example").await;
    // Nothing listens on port 1.
    let (status, body) =
        crate::audit_webhook::put_hook(&s, &owner, "https://127.0.0.1:1/siem").await;
    assert!(status.is_success(), "{status}: {body}");
    crate::audit_webhook::cause_event(&s, &owner, 1800).await;
    let before = scrape(&admin).await;
    stockade::app::deliver_webhooks(&s.state).await.unwrap();
    let after = scrape(&admin).await;
    let failed = [("outcome", "failed")];
    let grew = after.sum("stockade_audit_webhook_deliveries_total", &failed)
        - before.sum("stockade_audit_webhook_deliveries_total", &failed);
    assert!(grew >= 1.0, "{grew}");
    evaluate(&s).await;
    let evidence = assert_raised(&s, &admin, alert).await;
    assert_eq!(evidence["failed"], 1, "{evidence}");
    assert!(!evidence.to_string().contains("127.0.0.1:1"), "{evidence}");
    s.clock.advance(Duration::seconds(60));
    evaluate(&s).await;
    assert_cleared(&s, &admin, alert).await;
}

/// Attacker with database access edits a tenant's audit chain: the daily
/// verification (`audit.chain_verification`, run here as the leader runs
/// it) records the failure, and every instance's alert job raises the
/// chain alert from that record — a second instance that never ran the
/// verification too. A later verification that holds clears it.
async fn a_failed_chain_verification_raises_on_every_instance(backend: Backend) {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(s) = server(backend, &[WINDOW]).await else {
        return;
    };
    let admin = admin_for(&s).await;
    let alert = Alert::AuditChainVerificationFailed;
    crate::auth::signup(&s, "chainco", "owner@chainco.example").await;
    let tenant = crate::audit::tenant_id(&s, "chainco").await;
    let verify = || async {
        stockade::audit::verification::scheduled_verification(&s.db, s.clock.as_ref())
            .await
            .unwrap()
    };
    assert!(verify().await.ok);
    evaluate(&s).await;
    assert!(!s.state.monitor.is_raised(alert));
    let outcome = |value: &str| {
        format!("UPDATE audit_events SET outcome = '{value}' WHERE tenant_id = $1 AND seq = 1")
    };
    let mut read = s.db.tenant_read(tenant).await.unwrap();
    let (original,): (String,) = read
        .fetch_one(
            "SELECT outcome FROM audit_events WHERE tenant_id = $1 AND seq = 1",
            vec![],
        )
        .await
        .unwrap();
    drop(read);
    let forged = if original == "denied" {
        "success"
    } else {
        "denied"
    };
    crate::testkit::raw_execute(&s.db, &outcome(forged), tenant.as_uuid()).await;
    s.clock.advance(Duration::seconds(10));
    assert!(!verify().await.ok);
    evaluate(&s).await;
    let evidence = assert_raised(&s, &admin, alert).await;
    assert_eq!(evidence["ok"], false, "{evidence}");
    let other = TestServer::start_beside(&s, &[WINDOW]).await;
    evaluate(&other).await;
    assert!(other.state.monitor.is_raised(alert));
    assert_eq!(
        alert_events(&s, "raised", alert).await.len(),
        2,
        "one per instance"
    );
    // Repaired, verified again: both clear.
    crate::testkit::raw_execute(&s.db, &outcome(&original), tenant.as_uuid()).await;
    s.clock.advance(Duration::seconds(10));
    assert!(verify().await.ok);
    evaluate(&s).await;
    assert!(!s.state.monitor.is_raised(alert));
    assert_eq!(
        gauge(&admin, alert).await,
        1.0,
        "the other instance still has it"
    );
    evaluate(&other).await;
    assert!(!other.state.monitor.is_raised(alert));
    assert_eq!(gauge(&admin, alert).await, 0.0);
    assert_eq!(alert_events(&s, "cleared", alert).await.len(), 2);
}

crate::both_servers!(
    server_errors_raise_then_clear_after_a_quiet_window,
    a_burst_of_client_errors_raises_a_spike_then_clears,
    refusals_from_one_address_raise_against_the_real_peer,
    refusals_behind_a_trusted_proxy_count_per_client,
    failing_webhook_deliveries_raise_an_alert,
    a_failed_chain_verification_raises_on_every_instance,
);
