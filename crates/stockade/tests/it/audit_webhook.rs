//! Audit log push to a SIEM as signed webhooks (SPEC §2.7, §2.12; issue #6
//! item 3), on SQLite and PostgreSQL, against a real HTTPS receiver.
//! Delivery is driven with `audit::webhook::deliver_due` and the injected
//! clock, never by sleeping.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::audit::webhook::{self, DeliveryReport};
use stockade::audit::{GENESIS_HASH, StoredEvent};
use stockade::clock::Clock;

use crate::audit::tenant_id;
use crate::auth::{Login, audit_actions, server, signup};
use crate::roles::{call, member};
use crate::testkit::{Backend, TestServer};
use crate::webhook_receiver::{Pki, Receiver, pki, verify, verify_delivery};

/// A server that trusts `pki`'s CA and may reach 127.0.0.1.
pub(crate) async fn webhook_server(
    backend: Backend,
    pki: &Pki,
) -> Option<(TestServer, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    webhook_server_with(backend, pki, dir, &[]).await
}

pub(crate) async fn webhook_server_with(
    backend: Backend,
    pki: &Pki,
    dir: tempfile::TempDir,
    extra: &[(&str, &str)],
) -> Option<(TestServer, tempfile::TempDir)> {
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca = ca.display().to_string();
    let mut env = vec![
        ("STOCKADE_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("STOCKADE_WEBHOOK_CA_FILE", ca.as_str()),
    ];
    env.extend_from_slice(extra);
    let s = server(backend, &env).await?;
    Some((s, dir))
}

pub(crate) async fn put_hook(s: &TestServer, who: &Login, url: &str) -> (StatusCode, Value) {
    call(
        s,
        Method::PUT,
        "/v1/audit/webhook",
        &who.access,
        Some(json!({ "url": url })),
    )
    .await
}

pub(crate) async fn get_hook(s: &TestServer, who: &Login) -> (StatusCode, Value) {
    call(s, Method::GET, "/v1/audit/webhook", &who.access, None).await
}

/// Something that records an audit event (a settings change).
pub(crate) async fn cause_event(s: &TestServer, who: &Login, idle: i64) {
    let (status, body) = call(
        s,
        Method::PATCH,
        "/v1/tenant/settings",
        &who.access,
        Some(json!({ "session_idle_secs": idle })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Runs deliveries until a run sends nothing; the sum of the runs.
pub(crate) async fn drain(s: &TestServer) -> DeliveryReport {
    let mut total = DeliveryReport::default();
    loop {
        let r = webhook::deliver_due(&s.state).await.unwrap();
        total.tenants += r.tenants;
        total.delivered += r.delivered;
        total.failed += r.failed;
        total.disabled += r.disabled;
        if r.delivered == 0 {
            return total;
        }
    }
}

/// The tenant's whole chain, as the export streams it.
pub(crate) async fn export(s: &TestServer, who: &Login) -> String {
    let res = s
        .client
        .get(s.url("/v1/audit/export"))
        .bearer_auth(&who.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

/// Checks that `events` are seq 1.. in order, each linked to the one before
/// by `prev_hash`, each hash recomputable.
pub(crate) fn check_chain(events: &[StoredEvent]) {
    let mut prev = GENESIS_HASH.to_owned();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "seq order");
        assert_eq!(e.prev_hash, prev, "prev_hash links seq {}", e.seq);
        assert_eq!(e.compute_hash(), e.hash, "hash of seq {}", e.seq);
        prev = e.hash.clone();
    }
}

async fn delivers_every_event_signed_in_order(backend: Backend) {
    let pki = pki();
    let Some((s, _dir)) = webhook_server(backend, &pki).await else {
        return;
    };
    let rx = Receiver::bind(&pki).await;
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let beta = signup(&s, "beta", "owner@beta.test").await;

    let (status, created) = put_hook(&s, &acme, &rx.url()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["url"], rx.url());
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );

    // The state is visible, the secret never again; not to another tenant.
    let (status, state) = get_hook(&s, &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            &state["enabled"],
            &state["delivered_seq"],
            &state["failures"]
        ),
        (&json!(true), &json!(0), &json!(0)),
        "{state}"
    );
    assert!(state.get("secret").is_none() && !state.to_string().contains(&secret[6..]));
    // At rest the secret is sealed: its bytes are not in the row.
    let raw = STANDARD.decode(&secret[6..]).unwrap();
    let ta = tenant_id(&s, "acme").await;
    let mut tx = s.db.tenant_read(ta).await.unwrap();
    let (sealed,): (Vec<u8>,) = tx
        .fetch_one(
            "SELECT sealed_secret FROM audit_webhooks WHERE tenant_id = $1",
            vec![],
        )
        .await
        .unwrap();
    drop(tx);
    assert!(!sealed.windows(raw.len()).any(|w| w == raw.as_slice()));
    let (status, other) = get_hook(&s, &beta).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(other["code"], "audit.webhook_not_configured");

    // Requests that cause events; then delivery.
    cause_event(&s, &acme, 3600).await;
    cause_event(&s, &acme, 7200).await;
    cause_event(&s, &beta, 3600).await;
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let got = rx.seen();
    let events: Vec<StoredEvent> = got.iter().map(|d| d.event()).collect();
    let head = stockade::audit::verify_tenant(&s.db, ta).await.unwrap();
    assert!(head.ok);
    assert_eq!(events.len() as i64, head.head_seq, "every event, once");
    assert_eq!(report.delivered, head.head_seq as u64);
    check_chain(&events);
    assert!(
        events.iter().all(|e| e.tenant_id == ta),
        "only acme's events"
    );
    assert_eq!(events.last().unwrap().hash, head.head_hash);
    let now = s.clock.now().timestamp().to_string();
    for d in &got {
        assert!(verify_delivery(&secret, d), "signature of {}", d.id);
        assert_eq!(d.id, d.event().id.to_string(), "webhook-id is the event id");
        assert_eq!(d.timestamp, now);
        assert_eq!(d.content_type, "application/json");
    }
    // The body is exactly an export line (without its newline).
    let lines: Vec<String> = export(&s, &acme).await.lines().map(str::to_owned).collect();
    // (The export is audited first, so it ends with its own event.)
    assert_eq!(lines.len(), got.len() + 1);
    for (d, line) in got.iter().zip(&lines) {
        assert_eq!(String::from_utf8(d.body.clone()).unwrap(), *line);
    }
    // The signature is meaningful: a changed body, id or timestamp, or
    // another secret, fails.
    let d = &got[0];
    let mut tampered = d.body.clone();
    let at = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[at] = b'2';
    assert!(!verify(
        &secret,
        &d.id,
        &d.timestamp,
        &tampered,
        &d.signature
    ));
    assert!(!verify(
        &secret,
        "other",
        &d.timestamp,
        &d.body,
        &d.signature
    ));
    assert!(!verify(&secret, &d.id, "1", &d.body, &d.signature));
    let wrong = webhook::encode_secret(&[7u8; 32]);
    assert!(!verify(&wrong, &d.id, &d.timestamp, &d.body, &d.signature));

    // Nothing is sent twice: the next run sends only the new event (the
    // export is audited), then nothing.
    assert_eq!(drain(&s).await.delivered, 1);
    assert_eq!(
        rx.seen().last().unwrap().event().action,
        "audit.events.exported"
    );
    assert_eq!(drain(&s).await.delivered, 0);
    cause_event(&s, &acme, 1800).await;
    assert_eq!(drain(&s).await.delivered, 1);
    let (_, state) = get_hook(&s, &acme).await;
    assert_eq!(state["delivered_seq"], head.head_seq + 2, "{state}");

    // The secret is in no event and nowhere in the log.
    let all = export(&s, &acme).await;
    assert!(!all.contains(&secret) && !all.contains(&secret[6..]));
    assert!(all.contains("audit.webhook.configured") && all.contains(&rx.url()));
    assert_eq!(drain(&s).await.delivered, 1, "the export event");

    // A PUT again rotates the secret and keeps the position.
    let (status, again) = put_hook(&s, &acme, &rx.url()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let secret2 = again["secret"].as_str().unwrap().to_owned();
    assert_ne!(secret2, secret);
    let before = rx.seen().len();
    assert_eq!(drain(&s).await.delivered, 1, "only the configured event");
    let last = rx.seen().pop().unwrap();
    assert_eq!(rx.seen().len(), before + 1);
    assert!(verify_delivery(&secret2, &last) && !verify_delivery(&secret, &last));
    assert_eq!(last.event().action, "audit.webhook.configured");
    assert_eq!(
        serde_json::from_str::<Value>(&last.event().details).unwrap()["secret_rotated"],
        true
    );

    // Removal: audited, and nothing more is sent.
    let (status, _) = call(&s, Method::DELETE, "/v1/audit/webhook", &acme.access, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(get_hook(&s, &acme).await.0, StatusCode::NOT_FOUND);
    let (status, _) = call(&s, Method::DELETE, "/v1/audit/webhook", &acme.access, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    cause_event(&s, &acme, 900).await;
    assert_eq!(drain(&s).await, DeliveryReport::default());
    assert_eq!(rx.seen().len(), before + 1);
    let actions = audit_actions(&s, "acme").await;
    assert!(actions.contains(&"audit.webhook.removed".to_owned()));
    assert!(
        !audit_actions(&s, "beta")
            .await
            .iter()
            .any(|a| a.starts_with("audit.webhook"))
    );
}

async fn bad_urls_and_callers_are_refused(backend: Backend) {
    // The default configuration: private addresses refused.
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let acme = signup(&s, "acme", "owner@acme.test").await;
    for (url, code) in [
        ("http://siem.example.com/hook", "audit.webhook_invalid_url"),
        (
            "https://user:pw@siem.example.com/hook",
            "audit.webhook_invalid_url",
        ),
        (
            "https://token@siem.example.com/hook",
            "audit.webhook_invalid_url",
        ),
        ("garbage", "audit.webhook_invalid_url"),
        ("", "audit.webhook_invalid_url"),
        ("https://siem.example.com/#x", "audit.webhook_invalid_url"),
        (
            "https://127.0.0.1:8443/hook",
            "audit.webhook_private_address",
        ),
        ("https://10.1.2.3/hook", "audit.webhook_private_address"),
        (
            "https://169.254.169.254/latest",
            "audit.webhook_private_address",
        ),
        ("https://[::1]/hook", "audit.webhook_private_address"),
        (
            "https://[::ffff:192.168.0.1]/hook",
            "audit.webhook_private_address",
        ),
        ("https://localhost/hook", "audit.webhook_private_address"),
    ] {
        let (status, body) = put_hook(&s, &acme, url).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["code"], code, "{url}: {body}");
    }
    let (status, body) = call(
        &s,
        Method::PUT,
        "/v1/audit/webhook",
        &acme.access,
        Some(json!({ "url": "https://1.1.1.1/", "extra": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Nothing was stored or audited.
    assert_eq!(get_hook(&s, &acme).await.0, StatusCode::NOT_FOUND);
    assert!(
        !audit_actions(&s, "acme")
            .await
            .iter()
            .any(|a| a.starts_with("audit.webhook"))
    );

    // Without settings:manage: 403, reading included.
    let plain = member(&s, "acme", "sam@acme.test", "member").await;
    let (status, body) = put_hook(&s, &plain, "https://1.1.1.1/").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("rbac.forbidden"))
    );
    assert_eq!(get_hook(&s, &plain).await.0, StatusCode::FORBIDDEN);
    // Without a recent password proof: 403 step-up.
    s.clock.advance(chrono::Duration::minutes(6));
    let (status, body) = put_hook(&s, &acme, "https://1.1.1.1/").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "auth.step_up_required");

    // The rule holds again at delivery: an endpoint stored while its name
    // resolved elsewhere (DNS rebinding), here written directly, is refused
    // before any connection.
    let pki = pki();
    let rx = Receiver::bind(&pki).await;
    let ta = tenant_id(&s, "acme").await;
    let mut tx = s.db.tenant_tx(ta).await.unwrap();
    webhook::configure(&mut tx, s.clock.as_ref(), &s.state.master(), &rx.url())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let r = webhook::deliver_due(&s.state).await.unwrap();
    assert_eq!((r.delivered, r.failed), (0, 1));
    assert!(rx.seen().is_empty(), "no request reached the receiver");
    let (_, state) = get_hook(&s, &acme).await;
    assert!(
        state["last_error"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{state}"
    );
}

async fn failures_back_off_then_deliver(backend: Backend) {
    let pki = pki();
    let Some((s, _dir)) = webhook_server(backend, &pki).await else {
        return;
    };
    let rx = Receiver::bind(&pki).await;
    rx.answer(&[500, 500]);
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let (_, created) = put_hook(&s, &acme, &rx.url()).await;
    let secret = created["secret"].as_str().unwrap().to_owned();

    let r = webhook::deliver_due(&s.state).await.unwrap();
    assert_eq!((r.delivered, r.failed), (0, 1));
    let (_, state) = get_hook(&s, &acme).await;
    assert_eq!(state["failures"], 1, "{state}");
    assert!(
        state["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{state}"
    );
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(state["next_attempt_at"].clone()).unwrap();
    assert_eq!(next, s.clock.now() + chrono::Duration::seconds(2));
    // Not due yet: no attempt.
    assert_eq!(
        webhook::deliver_due(&s.state).await.unwrap(),
        DeliveryReport::default()
    );
    assert_eq!(rx.seen().len(), 1);

    s.clock.advance(chrono::Duration::seconds(2));
    let r = webhook::deliver_due(&s.state).await.unwrap();
    assert_eq!((r.delivered, r.failed), (0, 1));
    let (_, state) = get_hook(&s, &acme).await;
    assert_eq!(state["failures"], 2, "{state}");
    s.clock.advance(chrono::Duration::seconds(3));
    assert_eq!(
        webhook::deliver_due(&s.state).await.unwrap().tenants,
        0,
        "4 s backoff"
    );
    s.clock.advance(chrono::Duration::seconds(1));
    let r = drain(&s).await;
    assert_eq!(r.failed, 0);
    let (_, state) = get_hook(&s, &acme).await;
    assert_eq!(
        (&state["failures"], &state["last_error"]),
        (&json!(0), &Value::Null)
    );

    // The first event was sent three times with the same webhook-id (the
    // receiver dedupes), and the accepted ones form the whole chain.
    let seen = rx.seen();
    assert_eq!(seen.iter().filter(|d| d.id == seen[0].id).count(), 3);
    let accepted: Vec<StoredEvent> = rx.accepted().iter().map(|d| d.event()).collect();
    check_chain(&accepted);
    assert_eq!(state["delivered_seq"], accepted.len() as i64);
    assert!(seen.iter().all(|d| verify_delivery(&secret, d)));
}

async fn a_down_receiver_never_blocks_requests(backend: Backend) {
    let pki = pki();
    let Some((s, _dir)) = webhook_server(backend, &pki).await else {
        return;
    };
    // A port with nobody listening (yet).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("https://localhost:{port}/hook");
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let (status, created) = put_hook(&s, &acme, &url).await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["secret"].as_str().unwrap().to_owned();
    // Requests that cause events succeed while the receiver is down.
    cause_event(&s, &acme, 3600).await;
    let r = webhook::deliver_due(&s.state).await.unwrap();
    assert_eq!((r.delivered, r.failed), (0, 1));
    cause_event(&s, &acme, 7200).await;
    let (_, state) = get_hook(&s, &acme).await;
    assert!(
        state["last_error"]
            .as_str()
            .unwrap()
            .contains("connection failed"),
        "{state}"
    );

    // It comes back: delivery catches up, in order, signed.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let rx = Receiver::start(listener, &pki).await;
    s.clock.advance(chrono::Duration::seconds(2));
    let r = drain(&s).await;
    assert_eq!(r.failed, 0);
    let events: Vec<StoredEvent> = rx.seen().iter().map(|d| d.event()).collect();
    check_chain(&events);
    let ta = tenant_id(&s, "acme").await;
    let head = stockade::audit::verify_tenant(&s.db, ta).await.unwrap();
    assert_eq!(events.len() as i64, head.head_seq);
    assert!(rx.seen().iter().all(|d| verify_delivery(&secret, d)));
}

crate::both_servers!(
    delivers_every_event_signed_in_order,
    bad_urls_and_callers_are_refused,
    failures_back_off_then_deliver,
    a_down_receiver_never_blocks_requests,
);
