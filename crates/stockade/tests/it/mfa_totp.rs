//! TOTP and recovery codes (SPEC §2.4, issue #19 items 1, 2, 4, 7, 9) on
//! SQLite and PostgreSQL, as an attacker with the password would try them:
//! a code replayed inside its window (moved clock), an earlier code, two
//! requests racing with one code or one `mfa_token`, a token from another
//! address or after 5 minutes, wrong codes to exhaust the lockout, look-
//! alike and oversized codes; and what is stored (a sealed secret, keyed
//! recovery-code hashes).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::{PASSWORD, login, login_from, server, signup};
use crate::mfa::{amr, code_now, complete, enrol_totp, finish, mfa_token, next_code, post, start};
use crate::testkit::{Backend, TestServer};

const OWNER: &str = "owner@acme.test";

async fn enrolled(backend: Backend) -> Option<(TestServer, crate::mfa::Totp)> {
    let s = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32")]).await?;
    let owner = signup(&s, "acme", OWNER).await;
    let totp = enrol_totp(&s, &owner.access).await;
    Some((s, totp))
}

async fn problem(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    (status, body["code"].as_str().unwrap_or("").to_owned())
}

async fn enrolment_then_sign_in_with_both_factors(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let owner = signup(&s, "acme", OWNER).await;
    let (status, setup) = post(&s, &owner.access, "/v1/auth/mfa/totp/setup", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{setup}");
    assert!(
        setup["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert!(
        setup["qr_code"]
            .as_str()
            .unwrap()
            .starts_with("data:image/svg+xml;base64,")
    );
    // Not a factor until confirmed: sign-in still needs only the password.
    assert!(
        login(&s, OWNER, PASSWORD, None)
            .await
            .headers()
            .get("set-cookie")
            .is_some()
    );
    let secret =
        stockade_core::mfa::totp::decode_base32(setup["secret"].as_str().unwrap()).unwrap();
    let now = u64::try_from(stockade::clock::Clock::now(s.clock.as_ref()).timestamp()).unwrap();
    let wrong = if stockade_core::mfa::totp::code_at(&secret, now).unwrap() == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, body) = post(
        &s,
        &owner.access,
        "/v1/auth/mfa/totp/confirm",
        json!({"code": wrong}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("auth.mfa_invalid_code"))
    );
    let code = stockade_core::mfa::totp::code_at(&secret, now).unwrap();
    let (status, done) = post(
        &s,
        &owner.access,
        "/v1/auth/mfa/totp/confirm",
        json!({"code": code}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let codes = done["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    // Now the password alone issues no session, no cookie, no token.
    let res = login(&s, OWNER, PASSWORD, None).await;
    let token = mfa_token(res).await;
    let totp = crate::mfa::Totp {
        secret: secret.to_vec(),
        base32: String::new(),
        recovery: vec![],
    };
    let res = complete(
        &s,
        json!({"mfa_token": token, "totp": next_code(&s, &totp)}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let signed_in = login_from(res).await;
    assert_eq!(amr(&signed_in.access), ["pwd", "otp", "mfa"]);
    // The refreshed token keeps saying how the session was signed in.
    let refreshed = login_from(crate::auth::refresh(&s, &signed_in.refresh).await).await;
    assert_eq!(amr(&refreshed.access), ["pwd", "otp", "mfa"]);
    let me: Value = crate::auth::me(&s, &refreshed.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["mfa_enabled"].as_bool(), me["amr"].clone()),
        (Some(true), json!(["pwd", "otp", "mfa"]))
    );
    let actions = crate::auth::audit_actions(&s, "acme").await;
    for a in [
        "auth.mfa.totp.enabled",
        "auth.mfa.recovery_codes.regenerated",
        "auth.mfa.challenged",
        "auth.mfa.succeeded",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} missing: {actions:?}");
    }
    // Described.
    let doc = s.openapi().await;
    for path in [
        "/v1/auth/mfa",
        "/v1/auth/mfa/totp/setup",
        "/v1/auth/mfa/totp/confirm",
        "/v1/auth/mfa/recovery-codes",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    s.stop().await;
}

async fn a_code_is_accepted_once_even_inside_its_window(backend: Backend) {
    let Some((s, totp)) = enrolled(backend).await else {
        return;
    };
    let (ip, token) = start(&s, OWNER).await;
    let code = next_code(&s, &totp);
    let res = finish(&s, &ip, json!({"mfa_token": token, "totp": code})).await;
    assert_eq!(res.status(), StatusCode::OK);
    // Replayed 10 s later (same step), then 30 s later (still within the
    // ±1 step window): refused both times, with a fresh token each time.
    for later in [10, 30] {
        s.clock.advance(chrono::Duration::seconds(later));
        let (ip, token) = start(&s, OWNER).await;
        let res = finish(&s, &ip, json!({"mfa_token": token, "totp": code})).await;
        let (status, code_) = problem(res).await;
        assert_eq!(
            (status, code_.as_str()),
            (StatusCode::BAD_REQUEST, "auth.mfa_invalid_code"),
            "+{later}s"
        );
    }
    // An earlier code, still inside the skew, after a later one was used.
    let (ip, token) = start(&s, OWNER).await;
    let now = u64::try_from(stockade::clock::Clock::now(s.clock.as_ref()).timestamp()).unwrap();
    let earlier = stockade_core::mfa::totp::code_at(&totp.secret, now - 60).unwrap();
    let (status, _) =
        problem(finish(&s, &ip, json!({"mfa_token": token, "totp": earlier})).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Two requests racing with one fresh code: exactly one wins.
    let code = next_code(&s, &totp);
    let (ip1, t1) = start(&s, OWNER).await;
    let (ip2, t2) = start(&s, OWNER).await;
    let (a, b) = tokio::join!(
        finish(&s, &ip1, json!({"mfa_token": t1, "totp": code})),
        finish(&s, &ip2, json!({"mfa_token": t2, "totp": code}))
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
    // Two requests racing with one token and one code: one session.
    let code = next_code(&s, &totp);
    let (ip, token) = start(&s, OWNER).await;
    let body = json!({"mfa_token": token, "totp": code});
    let (a, b) = tokio::join!(finish(&s, &ip, body.clone()), finish(&s, &ip, body.clone()));
    let ok = [a.status(), b.status()]
        .iter()
        .filter(|st| **st == StatusCode::OK)
        .count();
    assert_eq!(ok, 1);
    s.stop().await;
}

async fn the_mfa_token_is_single_use_bound_and_short_lived(backend: Backend) {
    let Some((s, totp)) = enrolled(backend).await else {
        return;
    };
    let from = |ip: &'static str, body: Value| {
        s.client
            .post(s.url("/v1/auth/mfa"))
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
    };
    let login_from_ip = |ip: &'static str| {
        s.client
            .post(s.url("/v1/auth/login"))
            .header("x-forwarded-for", ip)
            .json(&json!({"email": OWNER, "password": PASSWORD}))
            .send()
    };
    // Another address, with the right code: refused, and the token still works from its own.
    let token = mfa_token(login_from_ip("198.51.100.7").await.unwrap()).await;
    let code = next_code(&s, &totp);
    let res = from("203.0.113.9", json!({"mfa_token": token, "totp": code}))
        .await
        .unwrap();
    assert_eq!(
        problem(res).await,
        (StatusCode::UNAUTHORIZED, "auth.mfa_token_invalid".into())
    );
    let res = from("198.51.100.7", json!({"mfa_token": token, "totp": code}))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Spent: a second use, with a new right code, is refused.
    let res = from(
        "198.51.100.7",
        json!({"mfa_token": token, "totp": next_code(&s, &totp)}),
    )
    .await
    .unwrap();
    assert_eq!(
        problem(res).await,
        (StatusCode::UNAUTHORIZED, "auth.mfa_token_invalid".into())
    );
    // Five minutes: just inside works, just after does not.
    let token = mfa_token(login_from_ip("198.51.100.7").await.unwrap()).await;
    s.clock.advance(chrono::Duration::seconds(301));
    let res = from(
        "198.51.100.7",
        json!({"mfa_token": token, "totp": code_now(&s, &totp)}),
    )
    .await
    .unwrap();
    assert_eq!(
        problem(res).await,
        (StatusCode::UNAUTHORIZED, "auth.mfa_token_invalid".into())
    );
    // Opening a new step deletes the expired ones (the spent first one
    // included, now expired): only the new one is left.
    let token = mfa_token(login_from_ip("198.51.100.7").await.unwrap()).await;
    let left: Vec<(i64,)> =
        s.db.global_read()
            .await
            .unwrap()
            .fetch_all("SELECT COUNT(*) FROM mfa_challenges", vec![])
            .await
            .unwrap();
    assert_eq!(left[0].0, 1, "expired steps linger");
    // Forged, truncated and oversized tokens; none, both, or unknown factors.
    for (body, want) in [
        (
            json!({"mfa_token": "A".repeat(43), "totp": "123456"}),
            (StatusCode::UNAUTHORIZED, "auth.mfa_token_invalid"),
        ),
        (
            json!({"mfa_token": &token[..42], "totp": "123456"}),
            (StatusCode::UNAUTHORIZED, "auth.mfa_token_invalid"),
        ),
        (
            json!({"mfa_token": "x".repeat(100_000), "totp": "123456"}),
            (StatusCode::UNAUTHORIZED, "auth.mfa_token_invalid"),
        ),
        (
            json!({"mfa_token": token}),
            (StatusCode::BAD_REQUEST, "auth.mfa_factor_required"),
        ),
        (
            json!({"mfa_token": token, "totp": "123456", "recovery_code": "ABCD-EFGH-JKMN"}),
            (StatusCode::BAD_REQUEST, "auth.mfa_factor_required"),
        ),
    ] {
        let res = from("198.51.100.7", body.clone()).await.unwrap();
        let got = problem(res).await;
        assert_eq!(
            (got.0, got.1.as_str()),
            want,
            "{}",
            &body.to_string()[..body.to_string().len().min(120)]
        );
    }
    let res = from("198.51.100.7", json!({"mfa_token": token, "sms": "123456"}))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    // None of that spent the token.
    let res = from(
        "198.51.100.7",
        json!({"mfa_token": token, "totp": next_code(&s, &totp)}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

async fn malformed_codes_are_refused_without_counting(backend: Backend) {
    let Some((s, totp)) = enrolled(backend).await else {
        return;
    };
    let (ip, token) = start(&s, OWNER).await;
    let long = "1".repeat(10_000);
    for bad in [
        "12345",
        "abcdef",
        "１２３４５６",
        "123\u{200b}456",
        long.as_str(),
    ] {
        let (status, code) =
            problem(finish(&s, &ip, json!({"mfa_token": token, "totp": bad})).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "auth.mfa_code_malformed"),
            "{bad:?}"
        );
    }
    for bad in ["ABCD-EFGH", "ＡＢＣＤ-ＥＦＧＨ-ＪＫＭＮ", long.as_str()] {
        let (status, code) =
            problem(finish(&s, &ip, json!({"mfa_token": token, "recovery_code": bad})).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::BAD_REQUEST, "auth.mfa_code_malformed"),
            "{bad:?}"
        );
    }
    // Eight malformed codes counted nothing: no lockout, and the token works.
    let res = finish(
        &s,
        &ip,
        json!({"mfa_token": token, "totp": next_code(&s, &totp)}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let actions = crate::auth::audit_actions(&s, "acme").await;
    assert!(
        !actions.iter().any(|a| a == "auth.mfa.failed"),
        "{actions:?}"
    );
    s.stop().await;
}

/// With the password known, ten wrong codes — across fresh sign-ins, each
/// token burned after five — lock the account as ten wrong passwords do;
/// the right password then gets 429, and one lockout notice is queued.
async fn wrong_codes_lock_the_account_and_notify_once(backend: Backend) {
    let Some((s, totp)) = enrolled(backend).await else {
        return;
    };
    let wrong = |s: &TestServer| {
        let right = code_now(s, &totp);
        if right == "000000" {
            "999999".to_owned()
        } else {
            "000000".to_owned()
        }
    };
    let mut wrongs = 0;
    while wrongs < 10 {
        let (ip, token) = start(&s, OWNER).await;
        for n in 0..5 {
            let res = finish(&s, &ip, json!({"mfa_token": token, "totp": wrong(&s)})).await;
            if wrongs == 10 {
                assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
                break;
            }
            assert_eq!(
                problem(res).await.1,
                "auth.mfa_invalid_code",
                "wrong code {n}"
            );
            wrongs += 1;
        }
        // The sixth try on a token: burned after five.
        if wrongs < 10 {
            let res = finish(
                &s,
                &ip,
                json!({"mfa_token": token, "totp": next_code(&s, &totp)}),
            )
            .await;
            assert_eq!(problem(res).await.1, "auth.mfa_token_invalid");
        }
    }
    let res = crate::mailbox::login_fresh(&s, OWNER, PASSWORD).await;
    assert_eq!(
        problem(res).await,
        (StatusCode::TOO_MANY_REQUESTS, "auth.account_locked".into())
    );
    let notices: Vec<_> = crate::mailbox::outbox(&s)
        .await
        .into_iter()
        .filter(|m| m.kind == "lockout_notice")
        .collect();
    assert_eq!(notices.len(), 1, "one notice per lockout");
    assert_eq!(notices[0].to, OWNER);
    assert!(
        notices[0].body.contains("192.0.2.") && notices[0].body.contains("password-reset"),
        "{}",
        notices[0].body
    );
    let actions = crate::auth::audit_actions(&s, "acme").await;
    assert_eq!(
        actions.iter().filter(|a| *a == "auth.mfa.failed").count(),
        10
    );
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.account.locked")
            .count(),
        1
    );
    s.stop().await;
}

async fn recovery_codes_work_once_and_are_replaced_with_a_step_up(backend: Backend) {
    let Some((s, totp)) = enrolled(backend).await else {
        return;
    };
    let first = totp.recovery[0].clone();
    let (ip, token) = start(&s, OWNER).await;
    // Typed in lower case without hyphens: the same code.
    let typed = first.to_lowercase().replace('-', "");
    let res = finish(&s, &ip, json!({"mfa_token": token, "recovery_code": typed})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let session = login_from(res).await;
    let mails = crate::mailbox::outbox(&s).await;
    assert!(mails.iter().any(|m| m.kind == "recovery_code_used" && m.body.contains("9 recovery codes are left")));
    let (ip, token) = start(&s, OWNER).await;
    let res = finish(&s, &ip, json!({"mfa_token": token, "recovery_code": first})).await;
    let (status, code) = problem(res).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "auth.mfa_invalid_code")
    );
    // Regenerating needs a fresh step-up.
    s.clock.advance(chrono::Duration::minutes(6));
    let (status, body) = post(
        &s,
        &session.access,
        "/v1/auth/mfa/recovery-codes",
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("auth.step_up_required"))
    );
    crate::mfa::step_up_totp(&s, &session.access, &totp).await;
    let (status, body) = post(
        &s,
        &session.access,
        "/v1/auth/mfa/recovery-codes",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fresh: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    let (ip, token) = start(&s, OWNER).await;
    let old_unused = totp.recovery[1].clone();
    let res = finish(
        &s,
        &ip,
        json!({"mfa_token": token, "recovery_code": old_unused}),
    )
    .await;
    assert_eq!(problem(res).await.1, "auth.mfa_invalid_code");
    let res = finish(
        &s,
        &ip,
        json!({"mfa_token": token, "recovery_code": fresh[0]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let actions = crate::auth::audit_actions(&s, "acme").await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "auth.mfa.recovery_codes.used")
            .count(),
        2
    );
    s.stop().await;
}

/// The secret is stored sealed: the raw bytes and the base32 the user saw
/// appear nowhere in the database; the recovery codes neither.
async fn the_secret_and_the_codes_are_never_stored_in_clear(backend: Backend) {
    let Some((s, totp)) = enrolled(backend).await else {
        return;
    };
    let needles: Vec<Vec<u8>> = [
        totp.secret.clone(),
        hex::encode(&totp.secret).into_bytes(),
        totp.base32.clone().into_bytes(),
    ]
    .into_iter()
    .chain(
        totp.recovery
            .iter()
            .flat_map(|c| [c.clone().into_bytes(), c.replace('-', "").into_bytes()]),
    )
    .collect();
    let dump = crate::testkit::raw_database_bytes(&s).await;
    for needle in &needles {
        assert!(
            !dump.windows(needle.len()).any(|w| w == needle.as_slice()),
            "found in the database"
        );
    }
    s.stop().await;
}

async fn removing_the_totp_needs_a_step_up(backend: Backend) {
    let Some((s, totp)) = enrolled(backend).await else {
        return;
    };
    let session = crate::mfa::login_mfa(&s, OWNER, &totp).await;
    s.clock.advance(chrono::Duration::minutes(6));
    let del = |access: &str| {
        s.client
            .delete(s.url("/v1/auth/mfa/totp"))
            .bearer_auth(access.to_owned())
            .send()
    };
    let res = del(&session.access).await.unwrap();
    assert_eq!(
        problem(res).await,
        (StatusCode::FORBIDDEN, "auth.step_up_required".into())
    );
    let token = mfa_token(login(&s, OWNER, PASSWORD, None).await).await;
    assert!(!token.is_empty(), "still enrolled");
    crate::mfa::step_up_totp(&s, &session.access, &totp).await;
    assert_eq!(
        del(&session.access).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    // No factor left: the password signs in again, and the recovery codes went with it.
    let res = login(&s, OWNER, PASSWORD, None).await;
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    let actions = crate::auth::audit_actions(&s, "acme").await;
    assert!(actions.iter().any(|a| a == "auth.mfa.totp.disabled"));
    s.stop().await;
}

/// `stockade keys rotate` re-seals TOTP secrets under the new master
/// version; the old version retires and the app's codes still work.
async fn master_rotation_rewraps_totp_secrets(backend: Backend) {
    use base64::Engine;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let encoded = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::fs::write(&key, format!("{encoded}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let file = key.display().to_string();
    let Some(s) = server(backend, &[("STOCKADE_MASTER_KEY_FILE", file.as_str())]).await else {
        return;
    };
    let owner = signup(&s, "acme", OWNER).await;
    let totp = enrol_totp(&s, &owner.access).await;
    let usage = stockade::crypto::rotation::master_usage(&s.db)
        .await
        .unwrap();
    assert_eq!(usage[&1].totp_secrets, 1);
    let cli = stockade::crypto::keys::MasterKey::parse(
        &std::fs::read_to_string(&key).unwrap(),
        Some(key.clone()),
    )
    .unwrap();
    let done = stockade::crypto::rotation::rotate_master(&s.db, &cli, s.clock.as_ref())
        .await
        .unwrap();
    assert_eq!((done.version, done.rewrapped.totp_secrets), (2, 1));
    stockade::crypto::rotation::retire_master(&s.db, &cli, s.clock.as_ref(), 1)
        .await
        .unwrap();
    let session = crate::mfa::login_mfa(&s, OWNER, &totp).await;
    assert_eq!(amr(&session.access), ["pwd", "otp", "mfa"]);
    s.stop().await;
}

/// The second step is limited per client address like sign-in: ten tries
/// in 15 minutes (the sign-in that opened the step is one), then 429
/// before any code is looked at, while another address is still served.
async fn the_second_step_is_rate_limited_per_address(backend: Backend) {
    let Some((s, totp)) = enrolled(backend).await else {
        return;
    };
    let (ip, token) = start(&s, OWNER).await;
    for n in 1..=9 {
        let res = finish(&s, &ip, json!({"mfa_token": token, "totp": "12345"})).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "try {n}");
    }
    let res = finish(
        &s,
        &ip,
        json!({"mfa_token": token, "totp": next_code(&s, &totp)}),
    )
    .await;
    let (status, code) = problem(res).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "auth.rate_limited")
    );
    // The refused request spent nothing: the token still works once the
    // address may try again (90 s per try), and meanwhile another address
    // signs in.
    let (ip2, token2) = start(&s, OWNER).await;
    let res = finish(
        &s,
        &ip2,
        json!({"mfa_token": token2, "totp": next_code(&s, &totp)}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    s.clock.advance(chrono::Duration::seconds(91));
    let res = finish(
        &s,
        &ip,
        json!({"mfa_token": token, "totp": next_code(&s, &totp)}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    s.stop().await;
}

crate::both_servers!(
    the_second_step_is_rate_limited_per_address,
    master_rotation_rewraps_totp_secrets,
    enrolment_then_sign_in_with_both_factors,
    a_code_is_accepted_once_even_inside_its_window,
    the_mfa_token_is_single_use_bound_and_short_lived,
    malformed_codes_are_refused_without_counting,
    wrong_codes_lock_the_account_and_notify_once,
    recovery_codes_work_once_and_are_replaced_with_a_step_up,
    the_secret_and_the_codes_are_never_stored_in_clear,
    removing_the_totp_needs_a_step_up,
);
