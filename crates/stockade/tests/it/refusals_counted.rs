//! Issue #17 item 13, as the attacker who hopes the log undercounts: every
//! refused attempt is counted. Refused authorization (missing permission,
//! escalation, another tenant's id) writes sampled `<area>.access.denied`
//! events in the caller's own tenant; an IP-limited or allowlist-refused
//! flood is counted in full, with its time span, including what was held when
//! the attack stopped; `logout-all` is recorded in every tenant it signed
//! out of. On SQLite and PostgreSQL, with the clock moved.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stockade::audit::sampler::{self, Sampled, Sampler};
use stockade::audit::{Actor, NewEvent, Outcome, StoredEvent};
use stockade::clock::Clock;
use stockade::ids::TenantId;

use crate::audit::{events_of, tenant_id};
use crate::auth::{PASSWORD, login, server, signup};
use crate::forwarded_for::{PROXIED, XFF, set_allowlist};
use crate::members::{accept_bearer, invite_ok};
use crate::records::{created_id, user_id};
use crate::roles::{call, member, member_with_id};
use crate::testkit::Backend;

fn details_of(e: &StoredEvent) -> Value {
    serde_json::from_str(&e.details).unwrap()
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

/// The `count`s of events, each with its span.
fn tallies(events: &[StoredEvent]) -> Vec<(u64, DateTime<Utc>, DateTime<Utc>)> {
    events
        .iter()
        .map(|e| {
            let d = details_of(e);
            (
                d["count"].as_u64().unwrap_or(0),
                at(&d["first_at"]),
                at(&d["last_at"]),
            )
        })
        .collect()
}

/// A viewer hammering an endpoint it may not use: one event a minute, the
/// refusals between them counted in the next one, the rest by the flush.
async fn a_flood_of_forbidden_calls_is_one_event_a_minute_with_its_count(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let (viewer, viewer_id) = member_with_id(&s, "acme", "viewer@acme.test", "viewer").await;
    let acme = tenant_id(&s, "acme").await;
    let t0 = s.clock.now();
    let mut calls = 0;
    let mut hammer = async |n: usize| {
        for _ in 0..n {
            let (status, _) = call(&s, Method::GET, "/v1/audit/events", &viewer.access, None).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            calls += 1;
        }
    };
    hammer(50).await;
    let denied = events_of(&s.db, acme, "audit.access.denied").await;
    assert_eq!(denied.len(), 1, "one event for the first minute");
    let first = &denied[0];
    assert_eq!(first.actor_id.as_deref(), Some(viewer_id.as_str()));
    let d = details_of(first);
    assert_eq!(d["reason"], "missing_permission");
    assert_eq!(d["route"], "/v1/audit/events");
    assert_eq!(d["method"], "GET");
    assert_eq!(d["permission"], "audit:read");
    assert_eq!(d["count"], 1);
    s.clock.advance(Duration::seconds(61));
    hammer(11).await;
    s.clock.advance(Duration::seconds(61));
    assert_eq!(stockade::app::flush_refusals(&s.state).await, 1);
    let denied = events_of(&s.db, acme, "audit.access.denied").await;
    let t1 = t0 + Duration::seconds(61);
    assert_eq!(
        tallies(&denied),
        [(1, t0, t0), (50, t0, t1), (10, t1, t1)],
        "the second event stands for the 49 held and itself, the flush for the rest"
    );
    assert_eq!(tallies(&denied).iter().map(|t| t.0).sum::<u64>(), calls);
    // Nothing more to write.
    s.clock.advance(Duration::minutes(5));
    assert_eq!(stockade::app::flush_refusals(&s.state).await, 0);
}

/// A probe of another tenant's record id is recorded in the prober's own
/// tenant, as a miss; the other tenant's log never hears of it. Refused
/// escalations are recorded too.
async fn a_cross_tenant_probe_is_recorded_in_the_probers_tenant_only(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "beta", "owner@beta.test").await;
    let b_record = created_id(&s, &b.access, "orders", json!({"data": {}, "key": "B-1"})).await;
    let a_id = user_id(&s, &a.access).await;
    let path = format!("/v1/collections/orders/records/{b_record}");
    for _ in 0..5 {
        let (status, _) = call(&s, Method::GET, &path, &a.access, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (acme, beta) = (tenant_id(&s, "acme").await, tenant_id(&s, "beta").await);
    let probes = events_of(&s.db, acme, "records.access.denied").await;
    assert_eq!(probes.len(), 1);
    assert_eq!(probes[0].actor_id.as_deref(), Some(a_id.as_str()));
    let d = details_of(&probes[0]);
    assert_eq!(d["reason"], "not_found");
    assert_eq!(d["route"], "/v1/collections/{collection}/records/{id}");
    assert!(
        !probes[0].details.contains(&b_record),
        "the probed id is not logged"
    );
    let mut read = s.db.tenant_read(beta).await.unwrap();
    let beta_events: Vec<StoredEvent> = read
        .fetch_all("SELECT * FROM audit_events WHERE tenant_id = $1", vec![])
        .await
        .unwrap();
    drop(read);
    assert!(
        beta_events
            .iter()
            .all(|e| !e.action.ends_with(".access.denied")
                && e.actor_id.as_deref() != Some(a_id.as_str()))
    );
    // An admin may not make a viewer an owner: refused and recorded.
    let admin = member(&s, "acme", "admin@acme.test", "admin").await;
    let (_, viewer_id) = member_with_id(&s, "acme", "viewer@acme.test", "viewer").await;
    let body = json!({"role": "owner"});
    let member_path = format!("/v1/members/{viewer_id}");
    let (status, _) = call(&s, Method::PATCH, &member_path, &admin.access, Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let escalations = events_of(&s.db, acme, "tenancy.access.denied").await;
    assert_eq!(escalations.len(), 1);
    let d = details_of(&escalations[0]);
    assert_eq!(
        (d["reason"].as_str(), d["code"].as_str()),
        (Some("escalation"), Some("rbac.escalation"))
    );
    assert_eq!(d["route"], "/v1/members/{user_id}");
}

/// A client over the sign-in limit: every refusal is in some event's count,
/// with the first and last refusal's times, even the ones held when the
/// attack stopped.
async fn ip_rate_limited_refusals_are_all_counted_with_their_span(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    for i in 0..10 {
        let res = login(&s, &format!("u{i}@x.test"), "Wrong-Password-1", None).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let t0 = s.clock.now();
    // Refused until the next slot 90 s later: 18 attempts, 5 s apart.
    for i in 0..18 {
        let res = login(&s, &format!("v{i}@x.test"), "Wrong-Password-1", None).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "attempt {i}");
        s.clock.advance(Duration::seconds(5));
    }
    s.clock.advance(Duration::minutes(2));
    stockade::app::flush_refusals(&s.state).await;
    let limited = events_of(&s.db, TenantId::PLATFORM, "auth.ip.rate_limited").await;
    let tallies = tallies(&limited);
    assert_eq!(tallies.iter().map(|t| t.0).sum::<u64>(), 18, "{tallies:?}");
    assert_eq!(tallies.first().map(|t| t.1), Some(t0));
    assert_eq!(
        tallies.iter().map(|t| t.2).max(),
        Some(t0 + Duration::seconds(85))
    );
    assert!(tallies.len() <= 3, "sampled: {tallies:?}");
    assert_eq!(details_of(&limited[0])["client"], "127.0.0.1");
    assert!(limited.iter().all(|e| e.ip.as_deref() == Some("127.0.0.1")));
}

/// Refusals by a tenant's allowlist are counted the same way.
async fn allowlist_refusals_are_all_counted(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    set_allowlist(&s, &owner, "203.0.113.5", json!(["203.0.113.0/24"])).await;
    for _ in 0..5 {
        let res = s
            .client
            .get(s.url("/v1/me"))
            .bearer_auth(&owner.access)
            .header(XFF, "198.51.100.66")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let acme = tenant_id(&s, "acme").await;
    assert_eq!(events_of(&s.db, acme, "tenancy.ip.denied").await.len(), 1);
    s.clock.advance(Duration::minutes(5));
    stockade::app::flush_refusals(&s.state).await;
    let denied = events_of(&s.db, acme, "tenancy.ip.denied").await;
    let counts: Vec<u64> = tallies(&denied).iter().map(|t| t.0).collect();
    assert_eq!(counts, [1, 4]);
}

/// Signing out everywhere is recorded in every tenant whose sessions ended.
async fn logout_all_is_written_in_every_tenant_it_signed_out_of(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let partner = signup(&s, "beta", "partner@beta.test").await;
    let token = invite_ok(&s, &acme.access, "partner@beta.test", "viewer").await;
    assert_eq!(
        accept_bearer(&s, &partner.access, &token).await.status(),
        StatusCode::OK
    );
    for _ in 0..2 {
        let res = login(&s, "partner@beta.test", PASSWORD, Some("acme")).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = s
        .client
        .post(s.url("/v1/auth/logout-all"))
        .bearer_auth(&partner.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for (slug, revoked) in [("acme", 2), ("beta", 1)] {
        let tenant = tenant_id(&s, slug).await;
        let events = events_of(&s.db, tenant, "auth.session.logged_out_all").await;
        assert_eq!(events.len(), 1, "{slug}");
        let d = details_of(&events[0]);
        assert_eq!(d["sessions_revoked"], revoked, "{slug}");
        assert_eq!(d["sessions_revoked_everywhere"], 3, "{slug}");
    }
}

/// A sampled refusal the platform's operators must see as well is written
/// to the tenant's chain and to the platform chain, in one transaction, the
/// flushed remainder included.
async fn a_sampled_refusal_can_be_written_to_both_chains(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    signup(&s, "acme", "owner@acme.test").await;
    let acme = tenant_id(&s, "acme").await;
    let sampler: Sampler<u8> = Sampler::new(Duration::minutes(1));
    let make = || {
        let event = NewEvent::new(Actor::System, "tests.refusal.denied")
            .outcome(Outcome::Denied)
            .details(json!({ "operation": "example" }));
        Sampled::new(acme, event).with_platform_copy()
    };
    for _ in 0..3 {
        sampler::record(&s.state, &sampler, 1, make).await;
    }
    s.clock.advance(Duration::seconds(61));
    assert_eq!(sampler::flush(&s.state, &sampler).await, 1);
    for (chain, copy) in [(acme, false), (TenantId::PLATFORM, true)] {
        let events = events_of(&s.db, chain, "tests.refusal.denied").await;
        let counts: Vec<u64> = tallies(&events).iter().map(|t| t.0).collect();
        assert_eq!(counts, [1, 2], "{chain}");
        for e in &events {
            let d = details_of(e);
            assert_eq!(d["operation"], "example");
            assert_eq!(d.get("tenant_id").is_some(), copy, "{d}");
        }
    }
    assert!(
        stockade::audit::verify_tenant(&s.db, TenantId::PLATFORM)
            .await
            .unwrap()
            .ok
    );
}

crate::both_servers!(
    a_sampled_refusal_can_be_written_to_both_chains,
    a_flood_of_forbidden_calls_is_one_event_a_minute_with_its_count,
    a_cross_tenant_probe_is_recorded_in_the_probers_tenant_only,
    ip_rate_limited_refusals_are_all_counted_with_their_span,
    allowlist_refusals_are_all_counted,
    logout_all_is_written_in_every_tenant_it_signed_out_of,
);
