//! Audit `details` are JSON objects, not strings holding JSON (issue #17
//! item 17), on every surface a reader or a SIEM sees: `GET /v1/audit/events`,
//! the NDJSON export (API and `stockade audit export`) and the webhook push.
//! The chain still verifies, and a receiver can still recompute every hash
//! by following `docs/audit-events.md` ("Hash") with nothing but the line:
//! [`siem_hash`] does exactly that, without Stockade's types.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stockade::audit::{Actor, GENESIS_HASH, NewEvent};

use crate::audit::{append, get, tenant_id};
use crate::audit_webhook::{cause_event, drain, export, put_hook, webhook_server};
use crate::auth::signup;
use crate::testkit::Backend;
use crate::webhook_receiver::{Receiver, pki};

/// Details no naive re-encoding survives: nesting, key order, escapes,
/// control characters, non-ASCII, big and negative numbers, a float.
fn awkward() -> Value {
    json!({
        "text": "a \"quoted\" \\ word\nnext\tline \u{1} é 😀 \u{7f} \u{2028}",
        "n": -7,
        "f": 0.1,
        "big": u64::MAX,
        "nested": {"z": [1, null, true, "x"], "a": {}, "B": "upper first"},
    })
}

/// The hash of one exported line, computed the way `docs/audit-events.md`
/// tells a receiver to: the canonical members in their fixed order, nulls
/// written out, `occurred_at` with microseconds, `details` as the compact
/// text of the object with sorted keys; form v2 (a `subject_id`) leaves out
/// `ip` and `user_agent` and appends `subject_id` and `pii_digest`.
pub(crate) fn siem_hash(line: &Value) -> String {
    let v2 = !line["subject_id"].is_null();
    let at = chrono::DateTime::parse_from_rfc3339(line["occurred_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let details = line["details"].to_string();
    let mut members: Vec<(&str, Value)> = vec![
        ("v", json!(if v2 { 2 } else { 1 })),
        ("tenant_id", line["tenant_id"].clone()),
        ("seq", line["seq"].clone()),
        ("id", line["id"].clone()),
        ("occurred_at", json!(at)),
        ("actor_type", line["actor_type"].clone()),
        ("actor_id", line["actor_id"].clone()),
        ("impersonator_id", line["impersonator_id"].clone()),
    ];
    if !v2 {
        members.push(("ip", line["ip"].clone()));
        members.push(("user_agent", line["user_agent"].clone()));
    }
    for k in [
        "request_id",
        "action",
        "target_type",
        "target_id",
        "outcome",
    ] {
        members.push((k, line[k].clone()));
    }
    members.push(("details", json!(details)));
    if v2 {
        members.push(("subject_id", line["subject_id"].clone()));
        members.push(("pii_digest", line["pii_digest"].clone()));
    }
    let body: Vec<String> = members
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    let canonical = format!("{{{}}}", body.join(","));
    let mut h = Sha256::new();
    h.update(line["prev_hash"].as_str().unwrap().as_bytes());
    h.update(b"\n");
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

/// Every line has object details and recomputes; the lines link up.
fn check_lines(lines: &[Value], mut prev: String) {
    assert!(!lines.is_empty());
    for line in lines {
        assert!(line["details"].is_object(), "details not an object: {line}");
        assert_eq!(line["prev_hash"], json!(prev), "{line}");
        assert_eq!(
            siem_hash(line),
            line["hash"].as_str().unwrap(),
            "the documented recomputation fails: {line}"
        );
        prev = line["hash"].as_str().unwrap().to_owned();
    }
}

fn ndjson(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn details_are_objects_on_every_surface(backend: Backend) {
    let pki = pki();
    let Some((s, _dir)) = webhook_server(backend, &pki).await else {
        return;
    };
    let rx = Receiver::bind(&pki).await;
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let (status, body) = put_hook(&s, &acme, &rx.url()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    cause_event(&s, &acme, 3600).await;
    let ta = tenant_id(&s, "acme").await;
    append(
        &s,
        ta,
        vec![NewEvent::new(Actor::System, "test.details.shown").details(awkward())],
    )
    .await;

    // The read API: objects, read as they were written.
    let page: Value = get(&s, &acme, "/v1/audit/events?order=asc&limit=500")
        .await
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert!(events.len() >= 4, "{page}");
    for e in events {
        assert!(e["details"].is_object(), "details not an object: {e}");
    }
    let by_action = |a: &str| {
        events
            .iter()
            .find(|e| e["action"] == a)
            .unwrap_or_else(|| panic!("no {a} in {page}"))
    };
    assert_eq!(
        by_action("tenancy.settings.updated")["details"]["changes"]["session_idle_secs"],
        json!({"old": 28800, "new": 3600})
    );
    assert_eq!(by_action("test.details.shown")["details"], awkward());

    // The export over HTTP: objects, and a SIEM recomputes every hash.
    let lines = ndjson(&export(&s, &acme).await);
    check_lines(&lines, GENESIS_HASH.to_owned());
    let shown = lines
        .iter()
        .find(|l| l["action"] == "test.details.shown")
        .unwrap();
    assert_eq!(shown["details"], awkward());

    // The export the CLI writes (`stockade audit export` calls `export_to`).
    let mut out = Vec::new();
    stockade::audit::api::export_to(&s.db, ta, 0, &mut out)
        .await
        .unwrap();
    let cli = ndjson(&String::from_utf8(out).unwrap());
    check_lines(&cli, GENESIS_HASH.to_owned());
    assert_eq!(cli, lines, "the same lines as the API export");

    // The webhook push: each body is one export line.
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{report:?}");
    let pushed: Vec<Value> = rx
        .seen()
        .iter()
        .map(|d| serde_json::from_slice(&d.body).unwrap())
        .collect();
    check_lines(&pushed, GENESIS_HASH.to_owned());
    assert!(pushed.iter().any(|b| b["details"] == awkward()));

    // The chain itself is unchanged and verifies.
    let v: Value = get(&s, &acme, "/v1/audit/verify")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // The OpenAPI document says so too.
    let doc = s.openapi().await;
    assert_eq!(
        doc["components"]["schemas"]["StoredEvent"]["properties"]["details"]["type"], "object",
        "{}",
        doc["components"]["schemas"]["StoredEvent"]
    );
    s.stop().await;
}

#[test]
fn cli_export_shows_details_as_objects() {
    use crate::cli::{run, stockade};
    let dir = tempfile::tempdir().unwrap();
    let out = run(stockade(dir.path()).args(["tenant", "create", "--slug", "acme", "--name", "X"]));
    assert!(out.status.success());
    let out = run(stockade(dir.path()).args(["audit", "export", "--tenant", "acme"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = ndjson(&String::from_utf8(out.stdout).unwrap());
    check_lines(&lines, GENESIS_HASH.to_owned());
    assert_eq!(lines[0]["details"]["slug"], "acme", "{}", lines[0]);
    assert_eq!(lines[1]["details"], json!({"after": 0}), "{}", lines[1]);
}

crate::both_servers!(details_are_objects_on_every_surface);
