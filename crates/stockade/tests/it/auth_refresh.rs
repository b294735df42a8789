//! Refresh-token rotation (SPEC §2.2), on SQLite and PostgreSQL: each
//! refresh rotates, a reused token revokes its session, concurrent refreshes
//! have exactly one winner (or siblings inside the grace window), a stale or
//! revoked read cannot rotate, SQLite's group commit behaves like separate
//! transactions, and a refresh leaves the session cache alone. It proves the
//! rotation only; session lifetime and revocation are `auth_sessions.rs`.

use reqwest::StatusCode;
use stockade::clock::Clock;

use crate::auth::{
    Login, audit_actions, b64json, login_from, login_ok, me, refresh, server, set_cookie, signup,
};
use crate::testkit::{Backend, TestServer};

async fn refresh_rotates_and_reuse_revokes_the_session(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let first = signup(&s, "acme", "owner@acme.test").await;
    let res = refresh(&s, &first.refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = login_from(res).await;
    assert_ne!(second.refresh, first.refresh);
    assert_eq!(me(&s, &second.access).await.status(), StatusCode::OK);
    // The old token is dead, and presenting it kills the session.
    let res = refresh(&s, &first.refresh).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&res).unwrap().contains("Max-Age=0"));
    assert_eq!(
        refresh(&s, &second.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&s, &second.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&s, &first.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        audit_actions(&s, "acme")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
    // Garbage cookies are a plain 401.
    for bad in [
        "",
        "x",
        "00000000000000000000000000000000.AAAA",
        &"a".repeat(5000),
    ] {
        assert_eq!(refresh(&s, bad).await.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        s.client
            .post(s.url("/v1/auth/refresh"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn concurrent_refreshes_exactly_one_wins(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let client = s.client.clone();
        let url = s.url("/v1/auth/refresh");
        let cookie = format!("__Host-stockade_refresh={}", l.refresh);
        tasks.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            match res.status() {
                StatusCode::OK => Some(login_from(res).await),
                _ => None,
            }
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(l) = t.await.unwrap() {
            winners.push(l);
        }
    }
    assert_eq!(winners.len(), 1);
    // The losers presented a used token: the session is revoked, the
    // winner's new token with it, and the reuse is in the audit log.
    assert_eq!(
        refresh(&s, &winners[0].refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&s, &winners[0].access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        audit_actions(&s, "acme")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
}

/// Under a grace window, concurrent presentations of one token (tabs racing
/// after a wake-up) all succeed: one rotation, the others siblings, and the
/// session stays live.
async fn concurrent_refreshes_inside_the_grace_window_get_siblings(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_REFRESH_REUSE_GRACE", "10")]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let client = s.client.clone();
        let url = s.url("/v1/auth/refresh");
        let cookie = format!("__Host-stockade_refresh={}", l.refresh);
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }));
    }
    let mut tokens = std::collections::BTreeSet::new();
    for t in tasks {
        let res = t.await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        tokens.insert(login_from(res).await.refresh);
    }
    assert_eq!(tokens.len(), 6, "six distinct tokens");
    for t in &tokens {
        assert_eq!(refresh(&s, t).await.status(), StatusCode::OK);
    }
    assert!(
        !audit_actions(&s, "acme")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
}

/// The presented token and its session, with what a direct call of the
/// store needs.
async fn sighting_parts(
    s: &TestServer,
    l: &Login,
) -> (stockade::sessions::RefreshToken, uuid::Uuid, uuid::Uuid) {
    let token = stockade::sessions::RefreshToken::parse(&l.refresh).unwrap();
    let tenant = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let sid: uuid::Uuid = b64json(l.access.split('.').nth(1).unwrap())["sid"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (token, tenant.id.0, sid)
}

/// On PostgreSQL the read of `rotate` can be stale by the time it writes
/// (read committed: concurrent transactions run). A read taken before
/// another request rotated the same token must not rotate it a second time:
/// the conditional claim catches it as a reuse. (Simulated on both backends
/// with the read in its own transaction.)
async fn a_stale_sighting_cannot_rotate_a_token_twice(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let (token, tenant, _) = sighting_parts(&s, &l).await;
    let ctx = stockade::audit::RequestContext::default();
    let policy = s.state.session_policy;
    let clock = s.clock.as_ref();
    let tenant = stockade::ids::TenantId(tenant);
    let stale = {
        let mut read = s.db.tenant_read(tenant).await.unwrap();
        stockade::sessions::look_up(&mut read, &token, clock.now())
            .await
            .unwrap()
    };
    // Another request rotates the same token between the read and the write.
    let winner = stockade::sessions::rotate(&s.db, clock, &token, &policy, &ctx)
        .await
        .unwrap();
    let tx = s.db.tenant_tx(tenant).await.unwrap();
    let late = stockade::sessions::rotate_seen(tx, clock, &token, stale, &policy, &ctx).await;
    assert!(
        matches!(late, Err(stockade::sessions::RefreshError::Reused)),
        "{late:?}"
    );
    assert_eq!(
        refresh(&s, &winner.token.encode()).await.status(),
        StatusCode::UNAUTHORIZED,
        "the session was revoked"
    );
    assert!(
        audit_actions(&s, "acme")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
}

/// Refreshes that arrive together share one transaction on SQLite (group
/// commit, `sessions::rotation_batch`) and still behave like separate
/// transactions in arrival order: two tenants, a token presented twice in
/// the batch (the second is a reuse that revokes that session, new token
/// included), an unknown token; the others rotate. PostgreSQL takes the
/// direct path with the same outcomes (which of the two presentations wins
/// is then up to the database).
async fn group_committed_rotations_behave_like_separate_transactions(backend: Backend) {
    use stockade::sessions::{RefreshError, RefreshToken};
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let a = signup(&s, "acme", "owner@acme.test").await;
    let b = signup(&s, "beta", "owner@beta.test").await;
    let a2 = login_ok(&s, "owner@acme.test").await;
    let (_, acme, _) = sighting_parts(&s, &a).await;
    let unknown = format!("{}.{}", acme.simple(), "A".repeat(43));
    assert!(
        RefreshToken::parse(&unknown).is_some(),
        "well formed, never issued"
    );
    let state = &s.state;
    let before = state.refresh_rotations.batches();
    let rotate = |t: &str| {
        state.refresh_rotations.rotate(
            RefreshToken::parse(t).unwrap(),
            stockade::audit::RequestContext::default(),
        )
    };
    // Polled together: all five queue before the writer task runs.
    let (first_a, b_new, second_a, a2_new, unknown) = tokio::join!(
        rotate(&a.refresh),
        rotate(&b.refresh),
        rotate(&a.refresh),
        rotate(&a2.refresh),
        rotate(&unknown)
    );
    // SQLite runs the batch in arrival order: the first presentation rotates.
    // PostgreSQL runs the five as concurrent transactions: either one may
    // win, and the other is then the reuse.
    let first_a = match (first_a, second_a) {
        (Ok(won), Err(RefreshError::Reused)) => won,
        (Err(RefreshError::Reused), Ok(won)) if backend == Backend::Postgres => won,
        other => panic!("one presentation rotates, the other is a reuse: {other:?}"),
    };
    assert!(matches!(unknown, Err(RefreshError::Invalid)), "{unknown:?}");
    if backend == Backend::Sqlite {
        assert_eq!(state.refresh_rotations.batches() - before, 1, "one commit");
        assert!(state.refresh_rotations.rotations() >= 5);
    }
    // Committed, and each unit as its own transaction would have left it.
    assert_eq!(
        refresh(&s, &first_a.token.encode()).await.status(),
        StatusCode::UNAUTHORIZED,
        "the reuse revoked the session, the new token with it"
    );
    assert_eq!(me(&s, &a.access).await.status(), StatusCode::UNAUTHORIZED);
    for other in [
        b_new.expect("beta rotates"),
        a2_new.expect("a second session rotates"),
    ] {
        assert_eq!(
            refresh(&s, &other.token.encode()).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(me(&s, &a2.access).await.status(), StatusCode::OK);
    let acme_log = audit_actions(&s, "acme").await;
    assert_eq!(
        acme_log
            .iter()
            .filter(|a| *a == "sessions.refresh.reused")
            .count(),
        1
    );
    assert!(
        !audit_actions(&s, "beta")
            .await
            .contains(&"sessions.refresh.reused".to_owned())
    );
}

/// A session revoked between the read and the writes (here without its
/// tokens being deleted, as a sign-out everywhere leaves them) is re-checked
/// on the writer: no rotation, and the token is not even claimed.
async fn a_session_revoked_after_the_sighting_is_not_rotated(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let (token, tenant, sid) = sighting_parts(&s, &l).await;
    let ctx = stockade::audit::RequestContext::default();
    let policy = s.state.session_policy;
    let clock = s.clock.as_ref();
    let tenant = stockade::ids::TenantId(tenant);
    let seen = {
        let mut read = s.db.tenant_read(tenant).await.unwrap();
        stockade::sessions::look_up(&mut read, &token, clock.now())
            .await
            .unwrap()
    };
    let mut tx = s.db.tenant_tx(tenant).await.unwrap();
    tx.execute(
        "UPDATE sessions SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2",
        vec![sid.into(), clock.now().into()],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let tx = s.db.tenant_tx(tenant).await.unwrap();
    let late = stockade::sessions::rotate_seen(tx, clock, &token, seen, &policy, &ctx).await;
    assert!(
        matches!(late, Err(stockade::sessions::RefreshError::Invalid)),
        "{late:?}"
    );
    let mut tx = s.db.tenant_read(tenant).await.unwrap();
    let used: Vec<(Option<chrono::DateTime<chrono::Utc>>,)> = tx
        .fetch_all(
            "SELECT used_at FROM refresh_tokens WHERE tenant_id = $1 AND session_id = $2",
            vec![sid.into()],
        )
        .await
        .unwrap();
    assert_eq!(used.len(), 1, "no successor was issued");
    assert!(used[0].0.is_none(), "the token was not claimed");
}

/// A refresh only stamps the session's last sight, which cannot make a
/// cached session check wrong: it leaves the liveness generation (and so
/// every cached check) alone. A reuse and a sign-out revoke: they bump it.
async fn a_refresh_does_not_empty_the_session_cache(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let first = signup(&s, "acme", "owner@acme.test").await;
    let generation = s.db.liveness_generation();
    let res = refresh(&s, &first.refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let second = login_from(res).await;
    assert_eq!(s.db.liveness_generation(), generation);
    // The stamp is written all the same.
    let (_, tenant, sid) = sighting_parts(&s, &second).await;
    s.clock.advance(chrono::Duration::seconds(30));
    assert_eq!(refresh(&s, &second.refresh).await.status(), StatusCode::OK);
    let mut tx =
        s.db.tenant_read(stockade::ids::TenantId(tenant))
            .await
            .unwrap();
    let seen: Vec<(chrono::DateTime<chrono::Utc>,)> = tx
        .fetch_all(
            "SELECT last_seen_at FROM sessions WHERE tenant_id = $1 AND id = $2",
            vec![sid.into()],
        )
        .await
        .unwrap();
    drop(tx);
    assert_eq!(seen, vec![(s.clock.now(),)]);
    assert_eq!(s.db.liveness_generation(), generation);
    // Reuse revokes: the generation moves.
    assert_eq!(
        refresh(&s, &first.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(s.db.liveness_generation() > generation);
    // So does a sign-out.
    let other = login_ok(&s, "owner@acme.test").await;
    let before = s.db.liveness_generation();
    let res = s
        .client
        .post(s.url("/v1/auth/logout"))
        .bearer_auth(&other.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(s.db.liveness_generation() > before);
}

async fn reuse_grace_window_gives_a_sibling_token(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_REFRESH_REUSE_GRACE", "10")]).await else {
        return;
    };
    let l = signup(&s, "acme", "owner@acme.test").await;
    let a = refresh(&s, &l.refresh).await;
    assert_eq!(a.status(), StatusCode::OK);
    s.clock.advance(chrono::Duration::seconds(5));
    let b = refresh(&s, &l.refresh).await;
    assert_eq!(b.status(), StatusCode::OK, "second tab inside the window");
    let b = login_from(b).await;
    assert_eq!(me(&s, &b.access).await.status(), StatusCode::OK);
    s.clock.advance(chrono::Duration::seconds(6));
    assert_eq!(
        refresh(&s, &l.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&s, &b.access).await.status(),
        StatusCode::UNAUTHORIZED,
        "session revoked"
    );
}

crate::both_servers!(
    refresh_rotates_and_reuse_revokes_the_session,
    concurrent_refreshes_exactly_one_wins,
    concurrent_refreshes_inside_the_grace_window_get_siblings,
    a_stale_sighting_cannot_rotate_a_token_twice,
    group_committed_rotations_behave_like_separate_transactions,
    a_session_revoked_after_the_sighting_is_not_rotated,
    a_refresh_does_not_empty_the_session_cache,
    reuse_grace_window_gives_a_sibling_token,
);
