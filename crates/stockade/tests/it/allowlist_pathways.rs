//! Issue #17 item 14 (the allowlist part), as the attacker: the tenant IP
//! allowlist applies on every pathway into a tenant, not only to requests
//! carrying a bearer token. Sign-in, refresh, tenant switch, sign-in-link
//! redemption, a new account's invitation acceptance and the verification
//! link that creates and signs it in are refused from outside the list (403
//! `tenancy.ip_not_allowed`), issue, rotate, send and use up nothing, and are
//! audited (`tenancy.ip.denied` naming the pathway). API
//! keys: `tests/it/apikeys.rs::expiry_suspension_and_allowlist_apply_on_the_next_request`.
//! On SQLite and PostgreSQL, behind a trusted proxy (127.0.0.1).

use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::http::Problem;

use crate::auth::{Login, PASSWORD, server, set_cookie, signup};
use crate::forwarded_for::{PROXIED, XFF, events, login_via, set_allowlist};
use crate::members::{accept_bearer, invite_ok};
use crate::testkit::{Backend, TestServer};

/// The allowlist of `acme` in these tests, and an address inside it.
const LIST: &str = "203.0.113.0/24";
const INSIDE: &str = "203.0.113.9";

/// Asserts a refusal by the allowlist that issued nothing.
async fn assert_refused(res: reqwest::Response, what: &str) {
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "{what}");
    assert!(set_cookie(&res).is_none(), "{what}: no cookie");
    assert_eq!(
        res.json::<Problem>().await.unwrap().code,
        "tenancy.ip_not_allowed",
        "{what}"
    );
}

/// `details.pathway` of the tenant's `tenancy.ip.denied` events.
async fn refused_pathways(s: &TestServer, owner: &Login) -> Vec<String> {
    events(s, owner, "tenancy.ip.denied", INSIDE)
        .await
        .iter()
        .map(|e| {
            details(e)["pathway"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// An event's `details` (a JSON object, or a string of one).
pub fn details(event: &Value) -> Value {
    match &event["details"] {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        other => other.clone(),
    }
}

async fn sessions_of_tenant(s: &TestServer, slug: &str) -> i64 {
    let tenant = crate::audit::tenant_id(s, slug).await;
    let mut tx = s.db.tenant_read(tenant).await.unwrap();
    let (n,): (i64,) = tx
        .fetch_optional(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM sessions WHERE tenant_id = $1",
            vec![],
        )
        .await
        .unwrap()
        .unwrap();
    n
}

fn cookie_of(res: &reqwest::Response) -> String {
    let set = set_cookie(res).expect("a refresh cookie");
    set.split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-stockade_refresh=")
        .to_owned()
}

async fn refresh_via(s: &TestServer, cookie: &str, xff: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", format!("__Host-stockade_refresh={cookie}"))
        .header(XFF, xff)
        .send()
        .await
        .unwrap()
}

/// The right password from outside the allowlist (or from an unknown
/// client) gets no token, no cookie and no session.
async fn sign_in_from_outside_the_allowlist_gets_no_tokens(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    set_allowlist(&s, &owner, INSIDE, json!([LIST])).await;
    let before = sessions_of_tenant(&s, "acme").await;
    for xff in ["198.51.100.1", "junk", "203.0.113.9, unknown"] {
        let res = login_via(&s, xff.as_bytes(), "owner@acme.test", PASSWORD).await;
        assert_refused(res, xff).await;
    }
    assert_eq!(sessions_of_tenant(&s, "acme").await, before, "no session");
    let res = login_via(&s, INSIDE.as_bytes(), "owner@acme.test", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        refused_pathways(&s, &owner)
            .await
            .contains(&"login".to_owned())
    );
}

/// A stolen refresh cookie presented from outside is refused and rotates
/// nothing; a rotated one replayed from outside still revokes the session.
async fn refresh_from_outside_is_refused_and_rotates_nothing(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    set_allowlist(&s, &owner, INSIDE, json!([LIST])).await;
    let res = login_via(&s, INSIDE.as_bytes(), "owner@acme.test", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = cookie_of(&res);
    for xff in ["198.51.100.2", "bogus"] {
        assert_refused(refresh_via(&s, &cookie, xff).await, xff).await;
    }
    // Nothing was rotated: the cookie still works from inside, once.
    let res = refresh_via(&s, &cookie, INSIDE).await;
    assert_eq!(res.status(), StatusCode::OK);
    let next = cookie_of(&res);
    // The rotated cookie replayed from outside is a reuse: the session ends.
    let res = refresh_via(&s, &cookie, "198.51.100.2").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = refresh_via(&s, &next, INSIDE).await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the session was revoked"
    );
    assert!(
        refused_pathways(&s, &owner)
            .await
            .contains(&"refresh".to_owned())
    );
}

/// A member of two tenants, signed in to one that admits everyone, cannot
/// switch into one whose allowlist refuses their address.
async fn switching_into_a_tenant_that_refuses_the_address(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let acme = signup(&s, "acme", "owner@acme.test").await;
    let partner = signup(&s, "beta", "partner@beta.test").await;
    let token = invite_ok(&s, &acme.access, "partner@beta.test", "viewer").await;
    assert_eq!(
        accept_bearer(&s, &partner.access, &token).await.status(),
        StatusCode::OK
    );
    set_allowlist(&s, &acme, INSIDE, json!([LIST])).await;
    let switch = |xff: &'static str| {
        s.client
            .post(s.url("/v1/auth/switch-tenant"))
            .bearer_auth(&partner.access)
            .header(XFF, xff)
            .json(&json!({"tenant": "acme"}))
            .send()
    };
    let before = sessions_of_tenant(&s, "acme").await;
    assert_refused(switch("198.51.100.3").await.unwrap(), "switch").await;
    assert_eq!(sessions_of_tenant(&s, "acme").await, before, "no session");
    let res = switch(INSIDE).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        refused_pathways(&s, &acme)
            .await
            .contains(&"switch_tenant".to_owned())
    );
}

/// A one-time sign-in link redeemed from outside is refused and not used
/// up: it still works once from inside.
async fn a_sign_in_link_from_outside_is_refused_and_stays_unused(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let root = signup(&s, "root-ops", "root@platform.test").await;
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let id_of = |login: &Login| {
        let access = login.access.clone();
        let s = &s;
        async move {
            let me: Value = s
                .client
                .get(s.url("/v1/me"))
                .bearer_auth(access)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            me["user"]["id"].as_str().unwrap().to_owned()
        }
    };
    let (root_id, owner_id) = (id_of(&root).await, id_of(&owner).await);
    // A platform owner always has a second factor, used in this session.
    let _root_totp = crate::mfa::owner_factor(&s, &root.access).await;
    // The platform owner, by id, on a second instance of the same cluster.
    let platform = TestServer::start_beside(
        &s,
        &[
            ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("STOCKADE_PLATFORM_OWNERS", &root_id),
        ],
    )
    .await;
    // The two instances' clocks agree (the owner's step-up is not in the
    // second one's future).
    {
        use stockade::clock::Clock;
        platform.clock.advance(s.clock.now() - platform.clock.now());
    }
    let res = platform
        .client
        .post(platform.url("/v1/platform/sign-in-links"))
        .bearer_auth(&root.access)
        .json(&json!({"user_id": owner_id, "confirm": true, "reason": "support call"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
    // The link is emailed to the user, never returned to the owner.
    let token = crate::mailbox::sign_in_link(&s, "owner@acme.test").await;
    set_allowlist(&s, &owner, INSIDE, json!([LIST])).await;
    let redeem = |xff: &'static str| {
        s.client
            .post(s.url("/v1/auth/sign-in-link"))
            .header(XFF, xff)
            .json(&json!({"token": token}))
            .send()
    };
    assert_refused(redeem("198.51.100.4").await.unwrap(), "link").await;
    let res = redeem(INSIDE).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the link was not used up");
    let res = redeem(INSIDE).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "single use");
    assert!(
        refused_pathways(&s, &owner)
            .await
            .contains(&"sign_in_link".to_owned())
    );
}

/// `POST /v1/auth/verify-email` through the proxy, which forwards `xff`.
async fn verify_via(s: &TestServer, token: &str, xff: &str) -> reqwest::Response {
    s.client
        .post(s.url("/v1/auth/verify-email"))
        .header(XFF, xff)
        .json(&json!({ "token": token, "password": PASSWORD }))
        .send()
        .await
        .unwrap()
}

/// Verification links queued to `to`.
async fn links_sent_to(s: &TestServer, to: &str) -> usize {
    crate::mailbox::outbox(s)
        .await
        .iter()
        .filter(|m| m.kind == "verification" && m.to == to)
        .count()
}

/// Accepting an invitation as a new account from outside creates nothing:
/// no account, no membership, no session, no verification link; the
/// invitation stays pending. Accepted from inside, the account exists only
/// once its verification link is used: used from outside (or by an unknown
/// client) it is refused, creates nothing and is not used up.
async fn an_invitation_accepted_from_outside_creates_nothing(backend: Backend) {
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    let owner = signup(&s, "acme", "owner@acme.test").await;
    let token = invite_ok(&s, &owner.access, "new@acme.test", "viewer").await;
    set_allowlist(&s, &owner, INSIDE, json!([LIST])).await;
    let accept = |xff: &'static str| {
        s.client
            .post(s.url("/v1/invitations/accept"))
            .header(XFF, xff)
            .json(&json!({"token": token, "name": "New Person", "password": PASSWORD}))
            .send()
    };
    let before = sessions_of_tenant(&s, "acme").await;
    assert_refused(accept("198.51.100.5").await.unwrap(), "invitation").await;
    assert_eq!(sessions_of_tenant(&s, "acme").await, before, "no session");
    assert_eq!(links_sent_to(&s, "new@acme.test").await, 0, "nothing sent");
    let res = login_via(&s, INSIDE.as_bytes(), "new@acme.test", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "no account");
    let res = accept(INSIDE).await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED, "still pending");
    let link = crate::mailbox::verification_token(&s, "new@acme.test").await;
    for xff in ["198.51.100.5", "junk"] {
        assert_refused(verify_via(&s, &link, xff).await, xff).await;
    }
    assert_eq!(sessions_of_tenant(&s, "acme").await, before, "no session");
    let res = login_via(&s, INSIDE.as_bytes(), "new@acme.test", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "no account");
    // The link was not used up: from inside it creates the account.
    let res = verify_via(&s, &link, INSIDE).await;
    assert_eq!(res.status(), StatusCode::CREATED, "{:?}", res.text().await);
    assert_eq!(sessions_of_tenant(&s, "acme").await, before + 1);
    let pathways = refused_pathways(&s, &owner).await;
    assert!(pathways.contains(&"invitation".to_owned()), "{pathways:?}");
    // Every refusal is counted: the acceptance and the two uses of the link.
    s.clock.advance(chrono::Duration::minutes(5));
    stockade::app::flush_refusals(&s.state).await;
    let acme = crate::audit::tenant_id(&s, "acme").await;
    let denied = crate::audit::events_of(&s.db, acme, "tenancy.ip.denied").await;
    let counted: u64 = denied
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.details).unwrap())
        .filter(|d| d["pathway"] == "invitation")
        .map(|d| d["count"].as_u64().unwrap())
        .sum();
    assert_eq!(counted, 3, "{denied:?}");
}

crate::both_servers!(
    sign_in_from_outside_the_allowlist_gets_no_tokens,
    refresh_from_outside_is_refused_and_rotates_nothing,
    switching_into_a_tenant_that_refuses_the_address,
    a_sign_in_link_from_outside_is_refused_and_stays_unused,
    an_invitation_accepted_from_outside_creates_nothing,
);
