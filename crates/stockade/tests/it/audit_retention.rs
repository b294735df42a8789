//! Audit retention (SPEC §2.7, #6 item 5): events older than the tenant's
//! `audit_retention_days` are purged behind a signed checkpoint, so the rest
//! of the chain still verifies; the purge is itself audited; a rewritten
//! checkpoint fails verification. On SQLite and PostgreSQL. (The floor, the
//! holds a shortening leaves and skipped chains: `audit_retention_floor.rs`.)

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::audit::retention_policy::RetentionPolicy;
use stockade::audit::{self, retention};

use crate::audit::{append, get, sample, tenant_id};
use crate::auth::{login_ok, server, signup};
use crate::testkit::{Backend, raw_execute};

async fn old_events_are_purged_behind_a_checkpoint(backend: Backend) {
    // A deployment whose floor allows 30 days.
    let Some(s) = server(backend, &[("STOCKADE_AUDIT_RETENTION_MIN_DAYS", "30")]).await else {
        return;
    };
    let policy = RetentionPolicy::from_config(&s.state.config);
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "beta", "owner@beta.test").await;
    for (who, days) in [(&a, 30), (&b, 365)] {
        let res = s
            .client
            .patch(s.url("/v1/tenant/settings"))
            .bearer_auth(&who.access)
            .json(&json!({ "audit_retention_days": days }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let (ta, tb) = (tenant_id(&s, "acme").await, tenant_id(&s, "beta").await);
    append(&s, ta, sample()).await;
    let old_head = audit::verify_tenant(&s.db, ta).await.unwrap().head_seq;

    // 91 days later (the 90 days they were written under, held when acme
    // went down to 30, are over): two fresh events; everything before is
    // past 30 days.
    s.clock.advance(chrono::Duration::days(91));
    append(&s, ta, sample().into_iter().take(2).collect()).await;
    let r = retention::purge_one(&s.db, s.clock.as_ref(), policy, ta)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.from_seq, r.up_to_seq), (1, old_head));
    assert_eq!(r.count, u64::try_from(old_head).unwrap());
    // Beta keeps 365 days: nothing of it is old enough.
    assert_eq!(
        retention::purge_one(&s.db, s.clock.as_ref(), policy, tb)
            .await
            .unwrap(),
        None
    );
    // Nothing left to purge for acme either.
    assert!(
        retention::purge_all(&s.db, s.clock.as_ref(), policy)
            .await
            .unwrap()
            .purged
            .iter()
            .all(|r| r.tenant_id != ta)
    );

    // Old events are gone, new ones and the purge event remain. (The
    // access token expired with the 91 days: sign in again, one more event.)
    let a = login_ok(&s, "owner@acme.test").await;
    let body: Value = get(&s, &a, "/v1/audit/events?order=asc&limit=500")
        .await
        .json()
        .await
        .unwrap();
    let events = body["events"].as_array().unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (old_head + 1..=old_head + 4).collect::<Vec<_>>());
    let purged = &events[2];
    assert_eq!(purged["action"], "audit.events.purged");
    let details = &purged["details"];
    assert_eq!(details["count"], old_head, "{details}");
    assert_eq!(details["from_seq"], 1, "{details}");
    assert_eq!(details["up_to_seq"], old_head, "{details}");
    assert_eq!(details["retention_days"], 30, "{details}");

    // The remaining chain verifies from the checkpoint.
    let v: Value = get(&s, &a, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["events_checked"], 4, "{v}");
    assert_eq!(v["head_seq"], old_head + 4, "{v}");
    for r in audit::verify_all(&s.db).await.unwrap() {
        assert!(r.ok, "{r:?}");
    }

    // Moving the checkpoint over one more (deleted) event fails verify.
    let next = old_head + 1;
    raw_execute(
        &s.db,
        &format!(
            "UPDATE audit_heads SET base_seq = {next}, base_hash = (SELECT hash FROM \
             audit_events WHERE tenant_id = $1 AND seq = {next}) WHERE tenant_id = $1"
        ),
        ta.as_uuid(),
    )
    .await;
    let n = raw_execute(
        &s.db,
        &format!("DELETE FROM audit_events WHERE tenant_id = $1 AND seq = {next}"),
        ta.as_uuid(),
    )
    .await;
    assert_eq!(n, 1);
    let v: Value = get(&s, &a, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("head signature"),
        "{v}"
    );
    // A purge refuses a chain whose head signature does not hold.
    s.clock.advance(chrono::Duration::days(31));
    assert!(matches!(
        retention::purge_one(&s.db, s.clock.as_ref(), policy, ta).await,
        Err(audit::AuditError::HeadBroken(_))
    ));
    s.stop().await;
}

async fn the_server_role_purges_only_behind_a_checkpoint(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let ta = tenant_id(&s, "acme").await;
    append(&s, ta, sample()).await;
    let Some(pool) = s.db.postgres_app_pool() else {
        return; // SQLite: the gate is covered by audit::events_are_append_only_for_the_server
    };
    // Without a checkpoint at seq 3, audit_purge refuses.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT set_config('stockade.tenant_id', $1, true)")
        .bind(ta.as_uuid().to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let r = sqlx::query("SELECT audit_purge($1, 3)")
        .bind(ta.as_uuid())
        .execute(&mut *tx)
        .await;
    assert!(r.is_err());
    drop(tx);
    assert!(audit::verify_tenant(&s.db, ta).await.unwrap().ok);
    s.stop().await;
}

#[test]
fn cli_purge_runs_and_names_unknown_tenants() {
    use crate::cli::{run, stockade};
    let dir = tempfile::tempdir().unwrap();
    let out = run(stockade(dir.path()).args(["tenant", "create", "--slug", "acme", "--name", "X"]));
    assert!(out.status.success());
    let out = run(stockade(dir.path()).args(["audit", "purge"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "nothing older than the retention"
    );
    let out = run(stockade(dir.path()).args(["audit", "purge", "--tenant", "acme"]));
    assert!(out.status.success());
    let out = run(stockade(dir.path()).args(["audit", "purge", "--tenant", "nope"]));
    assert_eq!(out.status.code(), Some(1));
    let out = run(stockade(dir.path()).args(["audit", "verify"]));
    assert!(out.status.success());
}

crate::both_servers!(
    old_events_are_purged_behind_a_checkpoint,
    the_server_role_purges_only_behind_a_checkpoint,
);
