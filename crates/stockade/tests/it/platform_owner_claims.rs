//! Issue #17 item 2, as the attacker: an email listed in
//! `STOCKADE_PLATFORM_OWNERS` cannot be claimed by signing up or accepting
//! an invitation with it (in any spelling); it makes its account an owner
//! only once the address is verified. `stockade platform add-owner` grants
//! by id or email, audited, on SQLite and PostgreSQL; production refuses
//! email entries while verification emails cannot be delivered.

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use stockade::ids::TenantId;

use crate::auth::{PASSWORD, login_ok, server, signup};
use crate::cli::{run, stockade};
use crate::mailbox::{login_fresh, outbox, post_fresh};
use crate::testkit::{Backend, TestServer};

const OWNERS: &str = "root@platform.test,ops@platform.test";
const MALLORY_PASSWORD: &str = "Mallory-Passw0rd-31";

async fn platform_status(s: &TestServer, access: &str) -> StatusCode {
    s.client
        .get(s.url("/v1/platform/tenants"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

async fn platform_events(s: &TestServer) -> Vec<(String, Option<String>)> {
    let mut tx = s.db.tenant_read(TenantId::PLATFORM).await.unwrap();
    tx.fetch_all(
        "SELECT action, target_id FROM audit_events WHERE tenant_id = $1 \
         AND action LIKE 'platform.owner.%' ORDER BY seq",
        vec![],
    )
    .await
    .unwrap()
}

async fn a_listed_email_is_not_claimed_by_signup_or_invitation(backend: Backend) {
    let env = [
        ("STOCKADE_PLATFORM_OWNERS", OWNERS),
        ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let Some(s) = server(backend, &env).await else {
        return;
    };
    // Sign-up with the listed address, in other spellings: no tokens, and
    // the link goes to the listed mailbox, which the attacker does not read.
    for (slug, email) in [
        ("grab-1", "ROOT@Platform.test"),
        ("grab-2", "ｒｏｏｔ@platform.test"),
    ] {
        let res = post_fresh(
            &s,
            "/v1/auth/signup",
            &json!({"tenant_name": "Grab", "tenant_slug": slug, "email": email,
                "password": MALLORY_PASSWORD, "name": "Mallory"}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::ACCEPTED, "{email}");
        assert!(res.headers().get("set-cookie").is_none());
        assert!(
            res.json::<Value>()
                .await
                .unwrap()
                .get("access_token")
                .is_none()
        );
        let res = login_fresh(&s, email, MALLORY_PASSWORD).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{email}");
    }
    let mail = outbox(&s).await;
    assert!(
        mail.iter()
            .all(|m| m.to.to_lowercase() == "root@platform.test")
    );

    // Invitation: Mallory owns a tenant, invites the listed address and
    // accepts as a new user with the token she saw. No tokens either.
    let mallory = signup(&s, "mallory-co", "mallory@evil.test").await;
    let token =
        crate::members::invite_ok(&s, &mallory.access, "Root@Platform.test", "viewer").await;
    let res = post_fresh(
        &s,
        "/v1/invitations/accept",
        &json!({"token": token, "name": "Mallory", "password": MALLORY_PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert!(res.headers().get("set-cookie").is_none());
    assert!(
        res.json::<Value>()
            .await
            .unwrap()
            .get("access_token")
            .is_none()
    );
    assert_eq!(
        login_fresh(&s, "root@platform.test", MALLORY_PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // An account with a listed address that was never verified (imported
    // by an operator) signs in, but is no platform owner.
    let tenant = stockade::tenancy::find_by_slug(&s.db, "mallory-co")
        .await
        .unwrap()
        .unwrap();
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let csv = format!("email,name,password_hash\nOPS@platform.test,Ops,{hash}\n");
    let rows = stockade::identity::import::parse_import(csv.as_bytes(), 10).unwrap();
    stockade::identity::import_store::import_users(
        &s.db,
        s.clock.as_ref(),
        &tenant,
        rows,
        "f.csv",
        |_| {},
    )
    .await
    .unwrap();
    let ops = login_ok(&s, "ops@platform.test").await;
    assert_eq!(
        platform_status(&s, &ops.access).await,
        StatusCode::FORBIDDEN
    );

    // The owner of the mailbox cannot complete Mallory's requests by
    // clicking the links: they need the password Mallory chose.
    let links: Vec<_> = outbox(&s)
        .await
        .into_iter()
        .filter(|m| m.kind == "verification" && m.to.to_lowercase() == "root@platform.test")
        .collect();
    assert_eq!(links.len(), 3);
    for m in &links {
        let token = crate::mailbox::link_token(&m.body, "/verify-email").unwrap();
        let res = crate::mailbox::verify_email(&s, &token, PASSWORD).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{}", m.to);
        assert_eq!(
            res.json::<Value>().await.unwrap()["code"],
            "auth.wrong_password"
        );
    }
    assert_eq!(
        login_fresh(&s, "root@platform.test", MALLORY_PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // The real owner signs up and verifies: a platform owner from then on.
    let root = signup(&s, "root-ops", "root@platform.test").await;
    // (With a second factor, as every platform owner must.)
    crate::mfa::owner_factor(&s, &root.access).await;
    assert_eq!(platform_status(&s, &root.access).await, StatusCode::OK);
    assert_eq!(
        platform_status(&s, &mallory.access).await,
        StatusCode::FORBIDDEN
    );
}

fn cli(s: &TestServer, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = stockade(dir.path());
    cmd.args(args)
        .env("STOCKADE_DATA_DIR", &s.state.config.data_dir);
    if let Some(url) = &s.state.config.database_url {
        cmd.env("STOCKADE_DATABASE_URL", url.value.expose_secret());
    }
    run(&mut cmd)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn platform_add_owner_grants_and_is_audited(backend: Backend) {
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let pat = signup(&s, "acme", "pat@acme.test").await;
    let me: Value = crate::auth::me(&s, &pat.access).await.json().await.unwrap();
    let pat_id = me["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        platform_status(&s, &pat.access).await,
        StatusCode::FORBIDDEN
    );
    // A second factor alone makes nobody an owner.
    crate::mfa::owner_factor(&s, &pat.access).await;
    assert_eq!(
        platform_status(&s, &pat.access).await,
        StatusCode::FORBIDDEN
    );

    // Granted by email, in any spelling of the account's address.
    let out = cli(
        &s,
        &["platform", "add-owner", "--email", "ＰＡＴ@acme.test"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!(
        "user {pat_id} (pat@acme.test) is now a platform owner"
    )));
    assert_eq!(platform_status(&s, &pat.access).await, StatusCode::OK);
    // Again: nothing changes, nothing more is audited.
    let out = cli(&s, &["platform", "add-owner", "--user-id", &pat_id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("nothing changed"));
    let out = cli(&s, &["platform", "list-owners"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&format!("granted {pat_id} pat@acme.test")));
    assert_eq!(
        platform_events(&s).await,
        [("platform.owner.granted".to_owned(), Some(pat_id.clone()))]
    );

    // Withdrawn by id: refused again at once.
    let out = cli(&s, &["platform", "remove-owner", "--user-id", &pat_id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        platform_status(&s, &pat.access).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        platform_events(&s).await,
        [
            ("platform.owner.granted".to_owned(), Some(pat_id.clone())),
            ("platform.owner.revoked".to_owned(), Some(pat_id.clone()))
        ]
    );
    let reports = stockade::audit::verify_all(&s.db).await.unwrap();
    assert!(reports.iter().all(|r| r.ok));

    // Bad input: one `error:` line, a non-zero exit, nothing granted.
    for (args, code) in [
        (vec!["--user-id", "not-a-uuid"], 1),
        (vec!["--user-id", "0190f3a8-0000-7000-8000-000000000000"], 1),
        (vec!["--email", "nobody@acme.test"], 1),
        (vec!["--email", "p\u{430}t@acme.test"], 1),
        (vec!["--email", "not an address"], 1),
        (vec![], 2),
        (vec!["--user-id", &pat_id, "--email", "pat@acme.test"], 2),
    ] {
        let mut all = vec!["platform", "add-owner"];
        all.extend(args.iter().copied());
        let out = cli(&s, &all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error:") || code == 2, "{args:?}: {err}");
    }
    assert_eq!(platform_events(&s).await.len(), 2);
    assert_eq!(
        platform_status(&s, &pat.access).await,
        StatusCode::FORBIDDEN
    );
}

crate::both_servers!(
    a_listed_email_is_not_claimed_by_signup_or_invitation,
    platform_add_owner_grants_and_is_audited,
);

#[test]
fn production_refuses_email_platform_owners_while_verification_cannot_be_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        ("STOCKADE_PROFILE", "production"),
        ("STOCKADE_PUBLIC_URL", "https://app.example.test"),
        ("STOCKADE_MASTER_KEY", "x"),
        ("STOCKADE_SIGNING_KEY_FILE", "/k.pem"),
        ("STOCKADE_TRUSTED_PROXIES", "none"),
    ];
    let with = |owners: &str| {
        let mut env = base.to_vec();
        env.push(("STOCKADE_PLATFORM_OWNERS", owners));
        crate::testkit::test_config(dir.path(), &env).production_problems()
    };
    let problems = with("0190f3a8-0000-7000-8000-000000000000,root@platform.test");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("STOCKADE_PLATFORM_OWNERS lists an email address"));
    assert!(problems[0].contains("issue #21"));
    assert!(with("0190f3a8-0000-7000-8000-000000000000").is_empty());
    // Outside production an email is accepted; a refused spelling is not.
    let dev = |owners: &str| {
        let mut env = std::collections::BTreeMap::new();
        env.insert(
            "STOCKADE_DATA_DIR".to_owned(),
            dir.path().display().to_string(),
        );
        env.insert("STOCKADE_PLATFORM_OWNERS".to_owned(), owners.to_owned());
        stockade::config::Config::load(None, &env)
    };
    assert!(dev("root@platform.test").is_ok());
    assert!(dev("r\u{430}ot@platform.test").is_err());
}
