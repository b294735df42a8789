//! Single-use links never reach the logs (SPEC §1, issue #17 item 6): the
//! real binary, in the development profile at `RUST_LOG=trace`, through a
//! whole password reset. The link is delivered into a 0600 file in the data
//! directory and nowhere in the server's output.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{contains, files_under, start_capturing, stop};

/// Waits (up to a minute) for the development sender to write a message of
/// `kind`; its path and text.
async fn delivered(sink: &Path, kind: &str) -> (PathBuf, String) {
    for _ in 0..600 {
        if sink.is_dir() {
            for file in files_under(sink) {
                let text = std::fs::read_to_string(&file).unwrap();
                if text.contains(&format!("\nKind: {kind}\n")) {
                    return (file, text);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {kind} message in {}", sink.display());
}

/// The token of the `#token=` link in a delivered message.
fn link_token(text: &str) -> String {
    text.split("#token=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn reset_links_go_to_a_private_file_never_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let (started, stdout) = start_capturing(dir.path(), &[("RUST_LOG", "trace")], &log);
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{}{path}", started.url))
            .json(&body)
            .send()
    };
    let res = post(
        "/v1/auth/signup",
        serde_json::json!({"tenant_name": "Acme", "tenant_slug": "acme",
            "email": "owner@acme.test", "password": "Correct-Horse-Battery-42", "name": "Pat"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 202);
    // Sign-up completes through its verification link, itself delivered
    // into the sink (and, like every link, absent from the log below).
    let data = dir.path().join("stockade-data");
    let sink = data.join("outbox");
    let (_, text) = delivered(&sink, "verification").await;
    let verification = link_token(&text);
    let res = post(
        "/v1/auth/verify-email",
        serde_json::json!({"token": verification, "password": "Correct-Horse-Battery-42"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201);
    let res = post(
        "/v1/auth/password-reset/request",
        serde_json::json!({"email": "owner@acme.test"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 202);

    // The message is in its own file, readable by the owner only.
    let (file, text) = delivered(&sink, "password_reset").await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sink), 0o700);
    assert_eq!(mode(&file), 0o600);
    assert!(text.starts_with("To: owner@acme.test\n"), "{text}");
    let token = link_token(&text);
    assert_eq!(token.len(), 43);

    // It is the real link: it resets the password (a forged one is 400).
    let res = post(
        "/v1/auth/password-reset/confirm",
        serde_json::json!({"token": token, "new_password": "Reset-Strong-Passw0rd-77"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    assert!(stop(started).success());
    let stdout = stdout.join().unwrap();

    // The whole output of the server: the capture is real (trace lines of
    // these very requests, the queued message named by kind and masked
    // recipient), and the token is in none of it.
    let logged = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&logged);
    assert!(
        text.contains("TRACE") && text.contains("/v1/auth/password-reset/confirm"),
        "{text}"
    );
    assert!(text.contains("email queued"), "{text}");
    assert!(text.contains("o***@acme.test"), "{text}");
    assert!(
        !contains(&logged, &token),
        "the reset token reached the log"
    );
    assert!(!stdout.contains(&token), "the reset token reached stdout");
    assert!(
        !contains(&logged, &verification) && !stdout.contains(&verification),
        "the verification token reached the output"
    );
    assert!(!text.contains("#token="), "a reset link reached the log");
    // Marked sent, so a restart does not write it again.
    let mut conn = crate::cli::sqlite_conn(dir.path()).await;
    let (status,): (String,) =
        sqlx::query_as("SELECT status FROM email_outbox WHERE kind = 'password_reset'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(status, "sent");
}
