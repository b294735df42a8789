//! Audit webhooks, continued (see `audit_webhook.rs`): disabling after
//! repeated failure, master-key rotation of the secret, concurrent delivery
//! runs, and the secret kept out of logs.

use std::os::unix::fs::PermissionsExt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use stockade::audit::StoredEvent;
use stockade::audit::webhook;
use stockade::clock::Clock;

use crate::audit::tenant_id;
use crate::audit_webhook::{
    cause_event, check_chain, drain, get_hook, put_hook, webhook_server, webhook_server_with,
};
use crate::auth::{audit_actions, signup};
use crate::roles::call;
use crate::testkit::Backend;
use crate::webhook_receiver::{Receiver, pki, verify_delivery};

async fn repeated_failure_disables_the_endpoint(backend: Backend) {
    let pki = pki();
    let Some((s, _dir)) = webhook_server(backend, &pki).await else {
        return;
    };
    let rx = Receiver::bind(&pki).await;
    let acme = signup(&s, "acme", "owner@acme.test").await;
    put_hook(&s, &acme, &rx.url()).await;
    rx.answer(&[503; 100]);
    let start = s.clock.now();
    let mut attempts = 0;
    loop {
        let r = webhook::deliver_due(&s.state).await.unwrap();
        attempts += r.failed;
        if r.disabled == 1 {
            break;
        }
        assert!(attempts < 60, "never disabled");
        s.clock.advance(chrono::Duration::hours(1));
    }
    assert!(attempts >= webhook::DISABLE_AFTER_FAILURES as u64);
    assert!(s.clock.now() - start >= webhook::DISABLE_AFTER);
    // (A day later the first access token has expired: sign in again.)
    let acme = crate::auth::login_ok(&s, "owner@acme.test").await;
    let (_, state) = get_hook(&s, &acme).await;
    assert_eq!(state["enabled"], false, "{state}");
    let actions = audit_actions(&s, "acme").await;
    let at = actions.len() - 2;
    assert_eq!(
        actions[at..],
        ["audit.webhook.disabled", "auth.login.succeeded"],
        "disabled once, after the failures"
    );
    // Disabled: no more attempts, however late.
    s.clock.advance(chrono::Duration::days(2));
    assert_eq!(webhook::deliver_due(&s.state).await.unwrap().tenants, 0);
    let n = rx.seen().len();
    // Configuring it again (new secret) re-enables it and catches up.
    let acme = crate::auth::login_ok(&s, "owner@acme.test").await;
    rx.answer(&[]);
    let (status, again) = put_hook(&s, &acme, &rx.url()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let sent = drain(&s).await;
    assert!(sent.delivered >= 3, "{sent:?}");
    assert!(rx.seen().len() > n);
    let accepted: Vec<StoredEvent> = rx.accepted().iter().map(|d| d.event()).collect();
    check_chain(&accepted);
    assert!(
        accepted
            .iter()
            .any(|e| e.action == "audit.webhook.disabled")
    );
}

/// `stockade keys rotate` re-seals the webhook secret under the new master
/// version; deliveries keep verifying with the secret shown at configuration,
/// and the old version can be retired.
async fn master_rotation_rewraps_the_secret(backend: Backend) {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    std::fs::write(&key, format!("{}\n", STANDARD.encode([5u8; 32]))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = key.display().to_string();
    let Some((s, _dir)) = webhook_server_with(
        backend,
        &pki,
        dir,
        &[("STOCKADE_MASTER_KEY_FILE", file.as_str())],
    )
    .await
    else {
        return;
    };
    let rx = Receiver::bind(&pki).await;
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let (_, created) = put_hook(&s, &acme, &rx.url()).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let usage = stockade::crypto::rotation::master_usage(&s.db)
        .await
        .unwrap();
    assert_eq!(usage[&1].webhook_secrets, 1);

    let cli = stockade::crypto::keys::MasterKey::parse(
        &std::fs::read_to_string(&key).unwrap(),
        Some(key.clone()),
    )
    .unwrap();
    let done = stockade::crypto::rotation::rotate_master(&s.db, &cli, s.clock.as_ref())
        .await
        .unwrap();
    assert_eq!((done.version, done.rewrapped.webhook_secrets), (2, 1));
    let usage = stockade::crypto::rotation::master_usage(&s.db)
        .await
        .unwrap();
    assert_eq!(usage.get(&1).map_or(0, |w| w.total()), 0, "{usage:?}");
    assert_eq!(usage[&2].webhook_secrets, 1);
    stockade::crypto::rotation::retire_master(&s.db, &cli, s.clock.as_ref(), 1)
        .await
        .unwrap();

    // The serving instance opens the re-sealed secret; signatures verify.
    let r = drain(&s).await;
    assert!(r.delivered > 0 && r.failed == 0, "{r:?}");
    assert!(rx.seen().iter().all(|d| verify_delivery(&secret, d)));
}

/// Two delivery runs at once (two instances on one database): the lease
/// lets one send; every event arrives exactly once.
async fn concurrent_runs_never_send_twice(backend: Backend) {
    let pki = pki();
    let Some((s, _dir)) = webhook_server(backend, &pki).await else {
        return;
    };
    let rx = Receiver::bind(&pki).await;
    let acme = signup(&s, "acme", "owner@acme.test").await;
    put_hook(&s, &acme, &rx.url()).await;
    for idle in [1800, 3600, 7200] {
        cause_event(&s, &acme, idle).await;
    }
    let (a, b) = tokio::join!(
        webhook::deliver_due(&s.state),
        webhook::deliver_due(&s.state)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.tenants + b.tenants, 1, "one run claimed: {a:?} {b:?}");
    let ta = tenant_id(&s, "acme").await;
    let head = stockade::audit::verify_tenant(&s.db, ta).await.unwrap();
    assert_eq!(a.delivered + b.delivered, head.head_seq as u64);
    let events: Vec<StoredEvent> = rx.seen().iter().map(|d| d.event()).collect();
    check_chain(&events);
    assert_eq!(events.len() as i64, head.head_seq, "each event once");
}

thread_local! {
    /// Where this thread's log lines go, while a test captures them.
    static CAPTURE: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Writes to the current thread's capture, if any.
struct ThreadSink;

impl std::io::Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(v) = c.borrow_mut().as_mut() {
                v.extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, once per test binary, a global subscriber that formats every
/// event at every level, but only on a thread that captures (a scoped
/// subscriber per test would race with tracing's callsite cache). The
/// test's runtime is single-threaded, so the server's tasks log on it.
pub(crate) fn capture_logs() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| ThreadSink)
            // Dynamic: decided per event (`filter_fn` would cache its first
            // answer per callsite, made on whichever thread got there first).
            .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|_, _| {
                CAPTURE.with(|c| c.borrow().is_some())
            }));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .unwrap();
    });
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

pub(crate) fn captured() -> String {
    CAPTURE.with(|c| String::from_utf8(c.borrow_mut().take().unwrap_or_default()).unwrap())
}

/// Everything the server logs at every level while a webhook is
/// configured, delivered, failing, shown, rotated and removed holds neither
/// form of the secret.
async fn the_secret_is_never_logged(backend: Backend) {
    capture_logs();
    let pki = pki();
    let Some((s, _dir)) = webhook_server(backend, &pki).await else {
        return;
    };
    let rx = Receiver::bind(&pki).await;
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let mut secrets = Vec::new();
    for _ in 0..2 {
        let (_, created) = put_hook(&s, &acme, &rx.url()).await;
        secrets.push(created["secret"].as_str().unwrap().to_owned());
        rx.answer(&[500]);
        webhook::deliver_due(&s.state).await.unwrap();
        s.clock.advance(chrono::Duration::seconds(2));
        drain(&s).await;
        get_hook(&s, &acme).await;
    }
    call(&s, Method::DELETE, "/v1/audit/webhook", &acme.access, None).await;
    let logs = captured();
    assert!(logs.contains("/v1/audit/webhook"), "requests are logged");
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()) && !logs.contains(&secret[6..]));
    }
}

crate::both_servers!(
    repeated_failure_disables_the_endpoint,
    the_secret_is_never_logged,
    concurrent_runs_never_send_twice,
    master_rotation_rewraps_the_secret,
);
