//! Secrets the running binary must never write down: a plaintext password
//! reaches neither the data directory nor the logs, and in production a
//! queued email is logged without its secret link. Its fixtures for running
//! the binary come from `cli.rs`; it defines none other files use.

use crate::cli::{contains, files_under, production_env, sqlite_conn, start_capturing, stop};

#[tokio::test]
async fn plaintext_password_never_stored_or_logged() {
    const PASSWORD: &str = "Zq-Unique-Passw0rd-8841";
    const WRONG: &str = "Zq-Wrong-Passw0rd-8841";
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (started, stdout) = start_capturing(dir.path(), &[("RUST_LOG", "debug")], &log);
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", started.url))
            .json(&body)
            .send()
    };
    let mut bodies = Vec::new();
    let res = post(
        "/v1/auth/signup",
        serde_json::json!({"tenant_name": "Secret Co", "tenant_slug": "secret-co",
            "email": "owner@secret.test", "password": PASSWORD, "name": "Pat Owner"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status().as_u16(), 202);
    bodies.push(res.bytes().await.unwrap());
    let data = dir.path().join("stockade-data");
    let token = crate::mailbox::token_in_data_dir(&data, &[], "owner@secret.test").await;
    for (path, body, status) in [
        (
            "/v1/auth/verify-email",
            serde_json::json!({ "token": token, "password": PASSWORD }),
            201,
        ),
        (
            "/v1/auth/login",
            serde_json::json!({"email": "owner@secret.test", "password": PASSWORD}),
            200,
        ),
        (
            "/v1/auth/login",
            serde_json::json!({"email": "owner@secret.test", "password": WRONG}),
            401,
        ),
        (
            "/v1/auth/password-reset/request",
            serde_json::json!({"email": "owner@secret.test"}),
            202,
        ),
    ] {
        let res = post(path, body).await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{path}");
        bodies.push(res.bytes().await.unwrap());
    }
    // While running (the WAL still holds the recent writes) and after a stop.
    let mut scanned = Vec::new();
    for file in files_under(&data) {
        scanned.push((file.clone(), std::fs::read(&file).unwrap()));
    }
    assert!(stop(started).success());
    let stdout = stdout.join().unwrap();
    for file in files_under(&data) {
        scanned.push((file.clone(), std::fs::read(&file).unwrap()));
    }
    assert!(
        scanned.iter().any(|(f, _)| f.ends_with("stockade.db-wal")),
        "{:?}",
        scanned.iter().map(|(f, _)| f).collect::<Vec<_>>()
    );
    let logged = std::fs::read(&log).unwrap();
    // The capture is real: debug logging of these very requests.
    let text = String::from_utf8_lossy(&logged);
    assert!(
        text.contains("DEBUG") && text.contains("/v1/auth/login"),
        "{text}"
    );
    for secret in [PASSWORD, WRONG] {
        assert!(
            !contains(&logged, secret),
            "{secret} in the server's stderr"
        );
        assert!(!stdout.contains(secret), "{secret} in the server's stdout");
        for body in &bodies {
            assert!(!contains(body, secret), "{secret} in a response");
        }
        for (file, bytes) in &scanned {
            assert!(!contains(bytes, secret), "{secret} in {}", file.display());
        }
    }
}

fn env_value<'a>(env: &[(&'a str, &'a str)], name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| *v)
        .unwrap()
}

#[tokio::test]
async fn production_logs_queued_email_without_its_secret_link() {
    let dir = tempfile::tempdir().unwrap();
    let env = production_env(dir.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let log = dir.path().join("server.log");
    let (started, reader) = start_capturing(dir.path(), &env, &log);
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{}/v1/auth/signup", started.url))
        .json(
            &serde_json::json!({"tenant_name": "Acme", "tenant_slug": "acme",
            "email": "owner@acme.test", "password": "Correct-Horse-Battery-42", "name": "Pat"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let master = [(
        "STOCKADE_MASTER_KEY_FILE",
        env_value(&env, "STOCKADE_MASTER_KEY_FILE"),
    )];
    let token = crate::mailbox::token_in_data_dir(
        &dir.path().join("stockade-data"),
        &master,
        "owner@acme.test",
    )
    .await;
    let res = client
        .post(format!("{}/v1/auth/verify-email", started.url))
        .json(&serde_json::json!({ "token": token, "password": "Correct-Horse-Battery-42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = client
        .post(format!("{}/v1/auth/password-reset/request", started.url))
        .json(&serde_json::json!({"email": "owner@acme.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(stop(started).success());
    let stdout = reader.join().unwrap();
    // The token, as the mail sender will see it: unsealed from the outbox.
    let mut conn = sqlite_conn(dir.path()).await;
    let (id, sealed): (uuid::Uuid, Vec<u8>) =
        sqlx::query_as("SELECT id, sealed_body FROM email_outbox WHERE kind = 'password_reset'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let body = stockade::crypto::seal::open(&[42u8; 32], &stockade::email::outbox_aad(id), &sealed)
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text = body["body"].as_str().unwrap();
    assert!(text.contains("https://app.example.test/reset-password#token="));
    let token = text
        .split("#token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("email queued"),
        "the debug line was written"
    );
    assert!(!logged.contains(token), "the reset token reached the log");
    assert!(!stdout.contains(token));
    // Nowhere on disk in clear either.
    for file in files_under(&dir.path().join("stockade-data")) {
        assert!(
            !contains(&std::fs::read(&file).unwrap(), token),
            "{}",
            file.display()
        );
    }
}
