//! Tail protection of the audit log (SPEC §2.7, #6 item 4): the chain head is
//! signed with a server key, so deleting the newest events and rewriting the
//! head to match them is caught by verify, on SQLite and PostgreSQL.

use serde_json::Value;
use stockade::audit;
use stockade::ids::TenantId;

use crate::audit::{append, events_of, get, sample, tenant_id};
use crate::auth::{server, signup};
use crate::testkit::{Backend, TestServer, raw_execute};

/// Deletes the newest three events of `tenant` and rewrites its head to the
/// new tail's seq and hash, as the database owner would. Returns the old
/// head seq.
async fn cut_tail_and_rewrite_head(s: &TestServer, tenant: TenantId) -> i64 {
    let head = audit::verify_tenant(&s.db, tenant).await.unwrap().head_seq;
    let keep = head - 3;
    let id = tenant.as_uuid();
    let deleted = raw_execute(
        &s.db,
        &format!("DELETE FROM audit_events WHERE tenant_id = $1 AND seq > {keep}"),
        id,
    )
    .await;
    assert_eq!(deleted, 3);
    let rewritten = raw_execute(
        &s.db,
        &format!(
            "UPDATE audit_heads SET seq = {keep}, hash = (SELECT hash FROM audit_events \
             WHERE tenant_id = $1 AND seq = {keep}) WHERE tenant_id = $1"
        ),
        id,
    )
    .await;
    assert_eq!(rewritten, 1);
    head
}

async fn a_rewritten_head_fails_on_its_signature(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let _b = signup(&s, "beta", "owner@beta.test").await;
    let ta = tenant_id(&s, "acme").await;
    append(&s, ta, sample()).await;
    append(&s, TenantId::PLATFORM, sample()).await;
    // Untouched chains verify, the platform's included.
    let r: Value = get(&s, &a, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(r["ok"], true, "{r}");
    for r in audit::verify_all(&s.db).await.unwrap() {
        assert!(r.ok, "{r:?}");
    }

    let head = cut_tail_and_rewrite_head(&s, ta).await;
    let r: Value = get(&s, &a, "/v1/audit/verify").await.json().await.unwrap();
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["head_seq"], head - 3, "{r}");
    assert_eq!(r["first_bad_seq"], head - 2, "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("head signature"),
        "{r}"
    );
    // Another append does not launder the break: the head stays unsigned.
    append(&s, ta, sample()).await;
    let again = audit::verify_tenant(&s.db, ta).await.unwrap();
    assert!(!again.ok, "{again:?}");
    assert_eq!(
        again.reason.as_deref(),
        Some("the chain head signature is missing")
    );
    // The other tenant's chain is untouched.
    let tb = tenant_id(&s, "beta").await;
    assert!(audit::verify_tenant(&s.db, tb).await.unwrap().ok);

    // The platform chain is protected the same way.
    cut_tail_and_rewrite_head(&s, TenantId::PLATFORM).await;
    let p = audit::verify_tenant(&s.db, TenantId::PLATFORM)
        .await
        .unwrap();
    assert!(!p.ok, "{p:?}");
    assert!(p.reason.unwrap().contains("head signature"));
    s.stop().await;
}

async fn legacy_heads_are_signed_once_at_upgrade(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let ta = tenant_id(&s, "acme").await;
    append(&s, ta, sample()).await;
    assert!(events_of(&s.db, ta, "audit.heads.signed").await.is_empty());
    // A head as written before migration 0017: no signature.
    let strip = "UPDATE audit_heads SET sig = NULL WHERE tenant_id = $1";
    raw_execute(&s.db, strip, ta.as_uuid()).await;
    let r = audit::verify_tenant(&s.db, ta).await.unwrap();
    assert_eq!(
        r.reason.as_deref(),
        Some("the chain head signature is missing")
    );
    // The one-time signing already ran at startup: installing the key again
    // signs nothing, so stripping a signature later cannot be laundered.
    let master = s.state.master();
    audit::install_head_key(&s.db, &master, s.clock.as_ref())
        .await
        .unwrap();
    assert!(!audit::verify_tenant(&s.db, ta).await.unwrap().ok);
    // As on the first start after the upgrade: the marker is not set yet.
    let reset = "UPDATE audit_head_signing SET done = 0 WHERE id = 1 OR $1 IS NULL";
    raw_execute(&s.db, reset, ta.as_uuid()).await;
    let before = audit::verify_tenant(&s.db, ta).await.unwrap();
    audit::install_head_key(&s.db, &master, s.clock.as_ref())
        .await
        .unwrap();
    let r = audit::verify_tenant(&s.db, ta).await.unwrap();
    assert!(r.ok, "{r:?}");
    // The signing is visible in the chain it signed, to the tenant: a re-run
    // by someone who stripped signatures and reset the marker cannot hide.
    let signed = events_of(&s.db, ta, "audit.heads.signed").await;
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0].seq, r.head_seq, "the newest event");
    assert_eq!(signed[0].actor_type, "system");
    let details: Value = serde_json::from_str(&signed[0].details).unwrap();
    assert_eq!(
        details,
        serde_json::json!({"reason": "unsigned_head", "head_seq": before.head_seq,
            "head_hash": before.head_hash})
    );
    let page: Value = get(&s, &a, "/v1/audit/events?action=audit.heads.signed")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 1, "{page}");
    // Chains whose heads were signed already get no event.
    assert!(
        events_of(&s.db, TenantId::PLATFORM, "audit.heads.signed")
            .await
            .is_empty()
    );
    // Done once: another start signs nothing and appends nothing.
    audit::install_head_key(&s.db, &master, s.clock.as_ref())
        .await
        .unwrap();
    assert_eq!(events_of(&s.db, ta, "audit.heads.signed").await.len(), 1);
    s.stop().await;
}

crate::both_servers!(
    a_rewritten_head_fails_on_its_signature,
    legacy_heads_are_signed_once_at_upgrade,
);
