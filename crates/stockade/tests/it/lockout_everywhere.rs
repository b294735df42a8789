//! SPEC §2.3, as the attacker: every proof of the password counts toward the
//! account lockout. Someone holding a stolen bearer token guesses the
//! password at step-up (`POST /v1/auth/reauth`, which unlocks account
//! deletion, settings, webhooks) and at password change
//! (`POST /v1/auth/password`), spreading the guesses over many addresses.
//! Ten wrong passwords, on any mix of sign-in, step-up and password change,
//! lock the account; a locked account proves nothing on any of them (not
//! even with the right password, and without hashing); after the lock the
//! right password works and clears the count. On SQLite and PostgreSQL.
//!
//! The per-address limit (10 attempts per 15 minutes) is kept out of the way
//! the way the attacker would: every request comes from its own address,
//! `X-Forwarded-For` through a trusted proxy (`STOCKADE_TRUSTED_PROXIES`
//! = 127.0.0.1/32). The clock is moved only to end the lock and to make the
//! sign-in's own password proof older than the 5-minute step-up window.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::auth::{Login, PASSWORD, login_from, me, refresh, server, signup};
use crate::testkit::{Backend, TestServer};

const OWNER: &str = "owner@acme.test";
const WRONG: &str = "Wrong-Guess-Passw0rd-1";
const NEW_PASSWORD: &str = "Another-Strong-Passw0rd-9";

/// The attacker: the victim's bearer token, and a fresh client address for
/// every request.
struct Attacker<'a> {
    s: &'a TestServer,
    access: String,
    next_ip: u32,
}

impl<'a> Attacker<'a> {
    fn new(s: &'a TestServer, login: &Login) -> Self {
        Self {
            s,
            access: login.access.clone(),
            next_ip: 0,
        }
    }

    fn address(&mut self) -> String {
        self.next_ip += 1;
        format!("198.51.{}.{}", self.next_ip / 200, 1 + self.next_ip % 200)
    }

    async fn send(&mut self, method: Method, path: &str, body: Value, bearer: bool) -> Answer {
        let ip = self.address();
        let mut req = self
            .s
            .client
            .request(method, self.s.url(path))
            .header("x-forwarded-for", ip)
            .json(&body);
        if bearer {
            req = req.bearer_auth(&self.access);
        }
        let before = self.s.state.hasher.operations();
        let res = req.send().await.unwrap();
        let hashes = self.s.state.hasher.operations() - before;
        let status = res.status();
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            code: body["code"].as_str().unwrap_or_default().to_owned(),
            retry_after,
            hashes,
            body,
        }
    }

    async fn reauth(&mut self, password: &str) -> Answer {
        let body = json!({"password": password});
        self.send(Method::POST, "/v1/auth/reauth", body, true).await
    }

    async fn change_password(&mut self, current: &str) -> Answer {
        let body = json!({"current_password": current, "new_password": NEW_PASSWORD});
        self.send(Method::POST, "/v1/auth/password", body, true)
            .await
    }

    async fn sign_in(&mut self, password: &str) -> Answer {
        let body = json!({"email": OWNER, "password": password});
        self.send(Method::POST, "/v1/auth/login", body, false).await
    }
}

struct Answer {
    status: StatusCode,
    code: String,
    retry_after: Option<String>,
    /// Password hashes computed while the request ran.
    hashes: u64,
    body: Value,
}

impl Answer {
    /// A counted wrong password: 400 `auth.wrong_password` (401 at sign-in).
    fn wrong(&self, what: &str) {
        let want = match self.status {
            StatusCode::UNAUTHORIZED => "auth.invalid_credentials",
            _ => "auth.wrong_password",
        };
        assert!(
            matches!(
                self.status,
                StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
            ) && self.code == want,
            "{what}: {} {}",
            self.status,
            self.body
        );
    }

    /// Refused because the account is locked, before any hashing, with the
    /// seconds left (sign-in's answer).
    fn locked(&self, what: &str, retry_after: &str) {
        assert_eq!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{what}: {}",
            self.body
        );
        assert_eq!(self.code, "auth.account_locked", "{what}");
        assert_eq!(self.retry_after.as_deref(), Some(retry_after), "{what}");
        assert_eq!(self.hashes, 0, "{what}: refused before any hashing");
    }
}

async fn victim(backend: Backend) -> Option<(TestServer, Login)> {
    let s = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await?;
    let login = signup(&s, "acme", OWNER).await;
    Some((s, login))
}

/// The events of the victim's tenant, oldest first, as the owner reads them.
async fn events(s: &TestServer, access: &str, action: &str) -> Vec<Value> {
    let (status, page) = crate::roles::call(
        s,
        Method::GET,
        &format!("/v1/audit/events?order=asc&limit=500&action={action}"),
        access,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["events"].as_array().unwrap().clone()
}

/// When the session last proved the password (`/v1/me`).
async fn proved_at(s: &TestServer, access: &str) -> Value {
    let m: Value = me(s, access).await.json().await.unwrap();
    m["authenticated_at"].clone()
}

/// Ten wrong step-up passwords with a stolen token, each from its own
/// address, lock the account exactly as ten wrong sign-ins do.
async fn ten_wrong_step_up_passwords_lock_the_account(backend: Backend) {
    let Some((s, login)) = victim(backend).await else {
        return;
    };
    let mut attacker = Attacker::new(&s, &login);
    for n in 1..=10 {
        attacker.reauth(WRONG).await.wrong(&format!("guess {n}"));
    }
    // The owner, with the right password, is locked out like after ten
    // failed sign-ins; so is the attacker's next guess, right or wrong.
    attacker.sign_in(PASSWORD).await.locked("sign-in", "900");
    attacker.reauth(PASSWORD).await.locked("step-up", "900");
    attacker.reauth(WRONG).await.locked("11th guess", "900");
    // The lock is audited as sign-in's is: after the tenth failure.
    let actions = crate::auth::audit_actions(&s, "acme").await;
    let tail: Vec<&str> = actions
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "auth.step_up.failed",
            "auth.account.locked",
            "auth.login.failed",
            "auth.step_up.failed",
            "auth.step_up.failed",
        ],
        "{actions:?}"
    );
    s.clock.advance(chrono::Duration::minutes(15));
    let owner = login_from(crate::auth::login(&s, OWNER, PASSWORD, None).await).await;
    let reauths = events(&s, &owner.access, "auth.step_up.failed").await;
    let outcomes: Vec<(&str, &str)> = reauths
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["details"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    let mut want = vec![("failure", "wrong_password"); 10];
    want.extend([("denied", "account_locked"), ("denied", "account_locked")]);
    assert_eq!(outcomes, want);
    let locked = events(&s, &owner.access, "auth.account.locked").await;
    assert_eq!(locked.len(), 1, "{locked:?}");
    assert_eq!(locked[0]["target_type"], "user", "{}", locked[0]);
    assert_eq!(
        locked[0]["personal_details"]["email"], OWNER,
        "{}",
        locked[0]
    );
    // With the address of the guess that locked it.
    assert_eq!(locked[0]["ip"], reauths[9]["ip"], "{}", locked[0]);
    assert!(reauths[9]["ip"].as_str().unwrap().starts_with("198.51."));
    s.stop().await;
}

/// Wrong passwords at sign-in, step-up and password change are one count:
/// three plus three plus four lock the account, and the lock then holds on
/// all three routes.
async fn failures_add_up_across_sign_in_step_up_and_password_change(backend: Backend) {
    let Some((s, login)) = victim(backend).await else {
        return;
    };
    let mut attacker = Attacker::new(&s, &login);
    for n in 0..3 {
        attacker.sign_in(WRONG).await.wrong(&format!("sign-in {n}"));
        attacker.reauth(WRONG).await.wrong(&format!("step-up {n}"));
        attacker
            .change_password(WRONG)
            .await
            .wrong(&format!("password change {n}"));
    }
    // The tenth failure, at password change, locks the account.
    attacker.change_password(WRONG).await.wrong("tenth");
    attacker.sign_in(PASSWORD).await.locked("sign-in", "900");
    attacker.reauth(PASSWORD).await.locked("step-up", "900");
    let change = attacker.change_password(PASSWORD).await;
    change.locked("password change with the right password", "900");
    // The password was not changed: after the lock the old one signs in.
    s.clock.advance(chrono::Duration::minutes(15));
    let res = crate::auth::login(&s, OWNER, NEW_PASSWORD, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let owner = login_from(crate::auth::login(&s, OWNER, PASSWORD, None).await).await;
    // Each password-change refusal is audited with its reason; the lock once.
    let changes = events(&s, &owner.access, "auth.password.change_failed").await;
    let reasons: Vec<(&str, &str)> = changes
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["details"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    let mut want = vec![("failure", "wrong_password"); 4];
    want.push(("denied", "account_locked"));
    assert_eq!(reasons, want);
    assert_eq!(
        events(&s, &owner.access, "auth.account.locked").await.len(),
        1
    );
    s.stop().await;
}

/// A locked account grants no step-up, even to the right password: the
/// proof is refused before hashing, the session stays unproven, and what
/// step-up guards stays shut.
async fn a_locked_account_grants_no_step_up_even_with_the_right_password(backend: Backend) {
    let Some((s, login)) = victim(backend).await else {
        return;
    };
    let mut attacker = Attacker::new(&s, &login);
    // Locked through sign-in this time.
    for n in 1..=10 {
        attacker.sign_in(WRONG).await.wrong(&format!("sign-in {n}"));
    }
    // Six minutes on, the sign-up's own proof is too old for step-up.
    s.clock.advance(chrono::Duration::minutes(6));
    let before = proved_at(&s, &login.access).await;
    attacker.reauth(PASSWORD).await.locked("step-up", "540");
    assert_eq!(
        proved_at(&s, &login.access).await,
        before,
        "no proof recorded"
    );
    let res = attacker
        .send(Method::DELETE, "/v1/me", Value::Null, true)
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
    assert_eq!(res.code, "auth.step_up_required");
    assert_eq!(me(&s, &login.access).await.status(), StatusCode::OK);
    let res = attacker
        .send(
            Method::PATCH,
            "/v1/tenant/settings",
            json!({"session_idle_secs": 3600}),
            true,
        )
        .await;
    assert_eq!(res.code, "auth.step_up_required", "{}", res.body);
    s.stop().await;
}

/// When the lock ends, the right password proves the session again and
/// clears the count: nine further failures do not lock the account.
async fn after_the_lock_the_right_password_works_and_clears_the_count(backend: Backend) {
    let Some((s, login)) = victim(backend).await else {
        return;
    };
    let mut attacker = Attacker::new(&s, &login);
    for n in 1..=10 {
        attacker.reauth(WRONG).await.wrong(&format!("guess {n}"));
    }
    attacker.reauth(PASSWORD).await.locked("step-up", "900");
    s.clock.advance(chrono::Duration::minutes(15));
    // The access token has expired meanwhile; the owner's session refreshes.
    let res = refresh(&s, &login.refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    let owner = login_from(res).await;
    let mut user = Attacker::new(&s, &owner);
    for n in 1..=9 {
        user.reauth(WRONG)
            .await
            .wrong(&format!("after the lock {n}"));
    }
    let before = proved_at(&s, &owner.access).await;
    let res = user.reauth(PASSWORD).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    assert_ne!(
        proved_at(&s, &owner.access).await,
        before,
        "step-up granted"
    );
    // The success cleared the nine: nine more do not lock.
    for n in 1..=9 {
        user.change_password(WRONG)
            .await
            .wrong(&format!("change {n}"));
    }
    let res = user.sign_in(PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    // A password change with the right password clears them as well.
    for n in 1..=9 {
        user.reauth(WRONG).await.wrong(&format!("again {n}"));
    }
    let res = user.change_password(PASSWORD).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.body);
    let failures: Option<(i64,)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_optional(
                "SELECT CAST(failures AS BIGINT) FROM login_throttle WHERE email_key = $1",
                vec![OWNER.into()],
            )
            .await
            .unwrap();
    assert_eq!(failures, Some((0,)));
    s.stop().await;
}

crate::both_servers!(
    ten_wrong_step_up_passwords_lock_the_account,
    failures_add_up_across_sign_in_step_up_and_password_change,
    a_locked_account_grants_no_step_up_even_with_the_right_password,
    after_the_lock_the_right_password_works_and_clears_the_count,
);
