//! Issue #17 item 15: proxy misconfiguration is loud. Behind a proxy that
//! `STOCKADE_TRUSTED_PROXIES` does not list, every client shares the proxy's
//! address; the server now warns in its log (once per peer per hour), shows
//! it in `/readyz` (without addresses), and production will not start until
//! the setting is said (`none` meaning no proxy).

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stockade::clock::Clock;

use crate::audit_webhook_more::{capture_logs, captured};
use crate::auth::server;
use crate::cli::{production_env, run, stderr_lines, stockade};
use crate::forwarded_for::{PROXIED, XFF};
use crate::testkit::{Backend, TestServer};

const WARNING: &str = "X-Forwarded-For from a peer not in STOCKADE_TRUSTED_PROXIES";

async fn ready(s: &TestServer) -> Value {
    let res = s.client.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn forwarded(s: &TestServer, path: &str) {
    let res = s
        .client
        .post(s.url(path))
        .header(XFF, "198.51.100.7")
        .json(&json!({"email": "x@y.test", "password": "Wrong-Password-1"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error() || res.status().is_success());
}

/// A proxy nobody listed: every request it forwards is counted, the log
/// names it once an hour, `/readyz` shows the count and never an address.
async fn an_unlisted_proxy_is_warned_about_once_an_hour_and_shown_in_readyz(backend: Backend) {
    capture_logs();
    let Some(s) = server(backend, &[]).await else {
        return;
    };
    let before = ready(&s).await;
    assert_eq!(before["proxy"]["trusted_proxies"], "unset");
    assert!(
        before["proxy"]
            .get("forwarded_for_from_untrusted_peers")
            .is_none()
    );
    for path in [
        "/v1/auth/login",
        "/v1/auth/login",
        "/healthz",
        "/no/such/route",
    ] {
        forwarded(&s, path).await;
    }
    // Requests without the header are not counted.
    ready(&s).await;
    let after = ready(&s).await;
    let seen = &after["proxy"]["forwarded_for_from_untrusted_peers"];
    assert_eq!(seen["count"], 4, "{after}");
    assert_eq!(seen["last_seen_at"], json!(s.clock.now()));
    let text = after.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("198.51.100.7"),
        "{text}"
    );
    let logs = captured();
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains(WARNING)).collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains("127.0.0.1"),
        "{warnings:?}"
    );
    // An hour later, the same peer is named again.
    capture_logs();
    s.clock.advance(Duration::minutes(61));
    forwarded(&s, "/v1/auth/login").await;
    forwarded(&s, "/v1/auth/login").await;
    let logs = captured();
    assert_eq!(
        logs.lines().filter(|l| l.contains(WARNING)).count(),
        1,
        "{logs}"
    );
}

/// A listed proxy, or `none` said out loud, is not a misconfiguration.
async fn a_listed_proxy_is_quiet_and_none_is_reported_as_such(backend: Backend) {
    capture_logs();
    let Some(s) = server(backend, PROXIED).await else {
        return;
    };
    forwarded(&s, "/v1/auth/login").await;
    let r = ready(&s).await;
    assert_eq!(r["proxy"]["trusted_proxies"], "configured");
    assert!(
        r["proxy"]
            .get("forwarded_for_from_untrusted_peers")
            .is_none()
    );
    assert!(
        !r.to_string().contains("127.0.0.1/32"),
        "the ranges are not shown"
    );
    drop(s);
    let Some(s) = server(backend, &[("STOCKADE_TRUSTED_PROXIES", "none")]).await else {
        return;
    };
    assert_eq!(ready(&s).await["proxy"]["trusted_proxies"], "none");
    forwarded(&s, "/v1/auth/login").await;
    let r = ready(&s).await;
    assert_eq!(r["proxy"]["forwarded_for_from_untrusted_peers"]["count"], 1);
    let logs = captured();
    assert_eq!(
        logs.lines().filter(|l| l.contains(WARNING)).count(),
        1,
        "{logs}"
    );
}

/// `config check` and `serve` in production refuse an unset (or empty)
/// `STOCKADE_TRUSTED_PROXIES` with one line; `none` and CIDRs pass; a
/// malformed value is refused.
#[test]
fn production_needs_trusted_proxies_said() {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = production_env(dir.path())
        .into_iter()
        .filter(|(k, _)| k != "STOCKADE_TRUSTED_PROXIES")
        .collect();
    let with = |cmd: &str, proxies: Option<&str>| {
        let mut c = stockade(dir.path());
        c.args(cmd.split(' ')).envs(env.iter().map(|(k, v)| (k, v)));
        if let Some(p) = proxies {
            c.env("STOCKADE_TRUSTED_PROXIES", p);
        }
        run(&mut c)
    };
    for cmd in ["config check", "serve"] {
        let out = with(cmd, None);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{cmd}: {lines:?}");
        assert!(
            lines[0].starts_with("error: STOCKADE_TRUSTED_PROXIES is not set"),
            "{lines:?}"
        );
    }
    for ok in ["none", "10.0.0.0/8, 2001:db8::/32"] {
        let out = with("config check", Some(ok));
        assert!(out.status.success(), "{ok}: {:?}", stderr_lines(&out));
    }
    for bad in ["", "none, 10.0.0.0/8", "proxy.example.com"] {
        let out = with("config check", Some(bad));
        assert!(!out.status.success(), "{bad}");
        let lines = stderr_lines(&out);
        assert!(
            lines.iter().any(|l| l.contains("STOCKADE_TRUSTED_PROXIES")),
            "{lines:?}"
        );
    }
}

crate::both_servers!(
    an_unlisted_proxy_is_warned_about_once_an_hour_and_shown_in_readyz,
    a_listed_proxy_is_quiet_and_none_is_reported_as_such,
);
