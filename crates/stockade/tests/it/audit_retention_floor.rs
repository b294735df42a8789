//! Audit retention cannot erase evidence (issue #17 item 10), on SQLite and
//! PostgreSQL: a tenant admin cannot set a retention below the deployment's
//! floor, nor shorten it to purge what was already written; a stored value
//! below the floor is not obeyed; the platform chain keeps its own (longer)
//! retention, and changes of the deployment's values are audited and spare
//! what was written before them; one tampered tenant does not stop the
//! purge of the others, and raises an alert.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::audit::retention::{self, PurgeRun};
use stockade::audit::retention_policy::RetentionPolicy;
use stockade::audit::{self, StoredEvent};
use stockade::clock::Clock;
use stockade::ids::TenantId;

use crate::audit::{append, events_of, sample, tenant_id};
use crate::auth::{Login, login_ok, server, signup};
use crate::testkit::{Backend, TestServer, raw_execute};

async fn patch(s: &TestServer, who: &Login, body: Value) -> (StatusCode, Value) {
    let res = s
        .client
        .patch(s.url("/v1/tenant/settings"))
        .bearer_auth(&who.access)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

async fn purge(s: &TestServer, policy: RetentionPolicy) -> PurgeRun {
    retention::purge_all(&s.db, s.clock.as_ref(), policy)
        .await
        .unwrap()
}

fn default_policy(s: &TestServer) -> RetentionPolicy {
    RetentionPolicy::from_config(&s.state.config)
}

/// The seqs of `tenant`'s chain still stored.
async fn seqs(s: &TestServer, tenant: TenantId) -> Vec<i64> {
    let mut tx = s.db.tenant_read(tenant).await.unwrap();
    let rows: Vec<(i64,)> = tx
        .fetch_all(
            "SELECT seq FROM audit_events WHERE tenant_id = $1 ORDER BY seq",
            vec![],
        )
        .await
        .unwrap();
    rows.into_iter().map(|r| r.0).collect()
}

fn details(e: &StoredEvent) -> Value {
    serde_json::from_str(&e.details).unwrap()
}

async fn an_admin_cannot_shorten_retention_to_erase_recent_events(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let ta = tenant_id(&s, "acme").await;
    // Below the floor (90 days by default): refused, nothing changes.
    for days in [1, 30, 89] {
        let (status, body) = patch(&s, &a, json!({"audit_retention_days": days})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{days}: {body}");
        assert_eq!(body["code"], "tenancy.retention_below_floor", "{body}");
        assert_eq!(body["errors"]["audit_retention_days"]["min"], 90, "{body}");
    }
    assert!(
        events_of(&s.db, ta, "tenancy.settings.updated")
            .await
            .is_empty()
    );
    // The admin keeps a year; evidence is written; a day later the admin
    // shortens to the floor, hoping to purge it.
    let (status, body) = patch(&s, &a, json!({"audit_retention_days": 365})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    append(&s, ta, sample()).await;
    let evidence = *seqs(&s, ta).await.last().unwrap();
    s.clock.advance(chrono::Duration::days(1));
    let a = login_ok(&s, "owner@acme.test").await;
    let changed_at = s.clock.now();
    let (status, body) = patch(&s, &a, json!({"audit_retention_days": 90})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let updates = events_of(&s.db, ta, "tenancy.settings.updated").await;
    let hold = &details(updates.last().unwrap())["audit_retention_hold"];
    assert_eq!(hold["days"], 365, "{hold}");
    let until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(hold["until"].clone()).unwrap();
    assert_eq!(until, changed_at + chrono::Duration::days(365));

    // 100 days on the evidence is 101 days old: past 90 days, but it was
    // written under 365, and the purge keeps it.
    s.clock.advance(chrono::Duration::days(100));
    let run = purge(&s, default_policy(&s)).await;
    assert!(run.skipped.is_empty(), "{run:?}");
    assert!(run.purged.iter().all(|r| r.tenant_id != ta), "{run:?}");
    assert_eq!(
        seqs(&s, ta).await[..evidence as usize],
        (1..=evidence).collect::<Vec<_>>()
    );

    // When the hold ends (365 days after the change), 90 days apply.
    s.clock.advance(chrono::Duration::days(266));
    let run = purge(&s, default_policy(&s)).await;
    let r = run.purged.iter().find(|r| r.tenant_id == ta).unwrap();
    assert!(r.up_to_seq >= evidence, "{r:?}");
    let purged = events_of(&s.db, ta, "audit.events.purged").await;
    assert_eq!(details(&purged[0])["retention_days"], 90);
    assert!(audit::verify_tenant(&s.db, ta).await.unwrap().ok);

    // A value stored below the floor (as an older version allowed) is not
    // obeyed: two-day-old events stay.
    raw_execute(
        &s.db,
        "UPDATE tenant_settings SET audit_retention_days = 1 WHERE tenant_id = $1",
        ta.as_uuid(),
    )
    .await;
    append(&s, ta, sample()).await;
    let before = seqs(&s, ta).await;
    s.clock.advance(chrono::Duration::days(2));
    let run = purge(&s, default_policy(&s)).await;
    assert!(run.purged.iter().all(|r| r.tenant_id != ta), "{run:?}");
    assert_eq!(seqs(&s, ta).await, before);
    s.stop().await;
}

async fn a_tampered_tenant_does_not_stop_the_purge_of_others(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    // Tenants are purged in id (creation) order: the broken one comes first.
    for slug in ["first", "second", "third"] {
        signup(&s, slug, &format!("owner@{slug}.test")).await;
    }
    let ids = [
        tenant_id(&s, "first").await,
        tenant_id(&s, "second").await,
        tenant_id(&s, "third").await,
    ];
    for t in ids {
        append(&s, t, sample()).await;
    }
    // Someone with database access cuts the first tenant's head signature.
    raw_execute(
        &s.db,
        "UPDATE audit_heads SET sig = NULL WHERE tenant_id = $1",
        ids[0].as_uuid(),
    )
    .await;
    let broken = seqs(&s, ids[0]).await;
    s.clock.advance(chrono::Duration::days(100));
    let run = purge(&s, default_policy(&s)).await;
    // The broken chain is skipped and kept; the others are purged.
    assert_eq!(run.skipped.len(), 1, "{run:?}");
    assert_eq!(run.skipped[0].tenant_id, ids[0]);
    assert_eq!(run.skipped[0].reason, "head_broken");
    assert_eq!(seqs(&s, ids[0]).await, broken);
    for t in &ids[1..] {
        assert!(run.purged.iter().any(|r| r.tenant_id == *t), "{run:?}");
        assert!(audit::verify_tenant(&s.db, *t).await.unwrap().ok);
    }
    // The alert is in the platform chain, which still verifies.
    let alerts = events_of(&s.db, TenantId::PLATFORM, "audit.purge.skipped").await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].target_id, Some(ids[0].to_string()));
    assert_eq!(alerts[0].outcome, "failure");
    assert_eq!(details(&alerts[0]), json!({"reason": "head_broken"}));
    assert!(
        audit::verify_tenant(&s.db, TenantId::PLATFORM)
            .await
            .unwrap()
            .ok
    );
    s.stop().await;
}

async fn the_platform_chain_and_the_deployment_floor_keep_their_promises(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let ta = tenant_id(&s, "acme").await;
    append(&s, TenantId::PLATFORM, sample()).await;
    // A tenant's value stored below the floor: only the floor protects it.
    raw_execute(
        &s.db,
        "UPDATE tenant_settings SET audit_retention_days = 1 WHERE tenant_id = $1",
        ta.as_uuid(),
    )
    .await;
    let platform_before = seqs(&s, TenantId::PLATFORM).await;
    let tenant_before = seqs(&s, ta).await;
    // 100 days on: the platform chain keeps a year (365 by default).
    s.clock.advance(chrono::Duration::days(100));
    let yearly = RetentionPolicy {
        min_days: 120,
        platform_days: 365,
    };
    let run = purge(&s, yearly).await;
    assert!(run.purged.is_empty(), "{run:?}");
    let platform_now = seqs(&s, TenantId::PLATFORM).await;
    assert_eq!(platform_now[..platform_before.len()], platform_before[..]);
    assert_eq!(seqs(&s, ta).await, tenant_before);
    // The configuration in force was recorded in the platform chain.
    let changes = events_of(&s.db, TenantId::PLATFORM, "audit.retention.changed").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(
        details(&changes[0])["min_days"],
        json!({"old": null, "new": 120})
    );
    // The operator lowers both: audited, and what exists keeps the old values.
    let lowered = RetentionPolicy {
        min_days: 30,
        platform_days: 60,
    };
    let run = purge(&s, lowered).await;
    assert!(run.purged.is_empty(), "{run:?}");
    let changes = events_of(&s.db, TenantId::PLATFORM, "audit.retention.changed").await;
    assert_eq!(changes.len(), 2);
    let d = details(&changes[1]);
    assert_eq!(d["min_days"], json!({"old": 120, "new": 30}), "{d}");
    assert_eq!(d["platform_days"], json!({"old": 365, "new": 60}), "{d}");
    assert_eq!(d["floor_hold"]["days"], 120, "{d}");
    assert_eq!(d["platform_hold"]["days"], 365, "{d}");
    // The same values again: nothing more to record.
    purge(&s, lowered).await;
    assert_eq!(
        events_of(&s.db, TenantId::PLATFORM, "audit.retention.changed")
            .await
            .len(),
        2
    );
    // 121 days after the lowering the floor's hold has ended: the tenant's
    // events (221 days old) go; the platform's are held 365 days.
    s.clock.advance(chrono::Duration::days(121));
    let run = purge(&s, lowered).await;
    assert!(run.purged.iter().any(|r| r.tenant_id == ta), "{run:?}");
    assert!(
        run.purged.iter().all(|r| r.tenant_id != TenantId::PLATFORM),
        "{run:?}"
    );
    // A year after the lowering, 60 days apply to the platform chain.
    s.clock.advance(chrono::Duration::days(245));
    let run = purge(&s, lowered).await;
    assert!(
        run.purged.iter().any(|r| r.tenant_id == TenantId::PLATFORM),
        "{run:?}"
    );
    assert!(
        audit::verify_tenant(&s.db, TenantId::PLATFORM)
            .await
            .unwrap()
            .ok
    );
    s.stop().await;
}

#[test]
fn cli_purge_skips_a_broken_chain_and_exits_1() {
    use crate::cli::{run, stockade};
    let dir = tempfile::tempdir().unwrap();
    for slug in ["acme", "beta"] {
        let out =
            run(stockade(dir.path()).args(["tenant", "create", "--slug", slug, "--name", "X"]));
        assert!(out.status.success());
    }
    let db = dir.path().join("stockade-data/stockade.db");
    let sql = |statement: &str| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(statement)
                .fetch_all(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
            rows
        })
    };
    sql("UPDATE audit_heads SET sig = NULL WHERE tenant_id = \
         (SELECT id FROM tenants WHERE slug = 'acme') RETURNING 'x'");
    let out = run(stockade(dir.path()).args(["audit", "purge"]));
    assert_eq!(out.status.code(), Some(1));
    let errors: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("skipped"), "{errors:?}");
    // The run went on past it and raised the alert in the platform chain.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "nothing older than the retention"
    );
    let alerts = sql("SELECT action FROM audit_events WHERE action = 'audit.purge.skipped'");
    assert_eq!(alerts.len(), 1);
}

crate::both_servers!(
    an_admin_cannot_shorten_retention_to_erase_recent_events,
    a_tampered_tenant_does_not_stop_the_purge_of_others,
    the_platform_chain_and_the_deployment_floor_keep_their_promises,
);
