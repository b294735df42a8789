//! The lockout notice (issue #19 item 7), on SQLite and PostgreSQL: a
//! lockout queues one `lockout_notice` email saying when, from which
//! address and how to reset — once per lockout, however many attempts
//! follow while locked, and again for the next lockout. Attempts come from
//! their own addresses, as a spread-out attacker's would.

use reqwest::StatusCode;
use serde_json::json;

use crate::auth::{server, signup};
use crate::testkit::{Backend, TestServer};

const OWNER: &str = "owner@acme.test";

async fn wrong(s: &TestServer, n: u32) -> StatusCode {
    s.client
        .post(s.url("/v1/auth/login"))
        .header("x-forwarded-for", format!("203.0.113.{n}"))
        .json(&json!({"email": OWNER, "password": "Wrong-Password-1"}))
        .send()
        .await
        .unwrap()
        .status()
}

async fn notices(s: &TestServer) -> Vec<crate::mailbox::Mail> {
    crate::mailbox::outbox(s)
        .await
        .into_iter()
        .filter(|m| m.kind == "lockout_notice")
        .collect()
}

async fn one_notice_per_lockout(backend: Backend) {
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await else {
        return;
    };
    signup(&s, "acme", OWNER).await;
    for n in 1..=9 {
        assert_eq!(wrong(&s, n).await, StatusCode::UNAUTHORIZED);
    }
    assert!(notices(&s).await.is_empty(), "no notice before the lock");
    // The tenth and eleventh race: one lock, one notice.
    let (a, b) = tokio::join!(wrong(&s, 10), wrong(&s, 11));
    assert!([a, b].contains(&StatusCode::UNAUTHORIZED), "{a} {b}");
    for n in 12..=20 {
        assert_eq!(wrong(&s, n).await, StatusCode::TOO_MANY_REQUESTS);
    }
    let first = notices(&s).await;
    assert_eq!(first.len(), 1, "one notice for one lockout");
    assert_eq!(first[0].to, OWNER);
    let body = &first[0].body;
    assert!(body.contains("203.0.113.1"), "{body}");
    assert!(body.contains("password-reset"), "{body}");
    assert!(body.contains("locked at 20"), "{body}");
    // The lock ends; ten more wrong passwords lock it again: a second notice.
    s.clock.advance(chrono::Duration::minutes(31));
    let mut locked = false;
    for n in 30..=60 {
        if wrong(&s, n).await == StatusCode::TOO_MANY_REQUESTS {
            locked = true;
            break;
        }
    }
    assert!(locked);
    assert_eq!(notices(&s).await.len(), 2, "a new lockout, a new notice");
    s.stop().await;
}

crate::both_servers!(one_notice_per_lockout);
