//! The listeners as an operator starts them (issue #20 items 1 and 2): the
//! `stockade` binary with a certificate, a bad pair, the redirector, and the
//! production refusal of plain HTTP off loopback.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustls::version::TLS13;

use crate::cli::{production_env, run, stderr_lines, stdout_of, stockade, stop};
use crate::tls_kit::{self, Pki, connect, exchange, get};

/// `stockade serve` with `env`; the first stdout line (the ready line).
fn serve(dir: &Path, env: &[(&str, &str)], log: &Path) -> (crate::cli::Started, String) {
    let mut cmd = stockade(dir);
    cmd.arg("serve")
        .env("STOCKADE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(120)).unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (crate::cli::Started { child, url }, line)
}

fn addr_after(line: &str, prefix: &str) -> std::net::SocketAddr {
    let start = line
        .find(prefix)
        .unwrap_or_else(|| panic!("{prefix} not in {line}"))
        + prefix.len();
    let rest = &line[start..];
    let end = rest.find([' ', ')', ';']).unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_speaks_https_with_the_configured_pair_and_rereads_it_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let first = pki.issue("first");
    let files = tls_kit::write_pair(dir.path(), &first);
    let log = dir.path().join("serve.log");
    let cert = files.cert_file.display().to_string();
    let key = files.key_file.display().to_string();
    let env = [
        ("STOCKADE_TLS_CERT_FILE", cert.as_str()),
        ("STOCKADE_TLS_KEY_FILE", key.as_str()),
        ("STOCKADE_PUBLIC_URL", "https://localhost"),
        ("STOCKADE_HTTP_REDIRECT_LISTEN", "127.0.0.1:0"),
        ("RUST_LOG", "info"),
    ];
    let (started, line) = serve(dir.path(), &env, &log);
    assert!(started.url.starts_with("https://127.0.0.1:"), "{line}");
    let addr = addr_after(&line, "https://");
    let mut tls = connect(addr, pki.client(&[&TLS13], &[])).await.unwrap();
    let answer = exchange(&mut tls, &get("/healthz")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    // The redirector it announced answers 308 to the public URL.
    let redirect = addr_after(&line, "HTTP redirector on http://");
    let mut tcp = tokio::net::TcpStream::connect(redirect).await.unwrap();
    let answer = exchange(
        &mut tcp,
        b"GET /v1/me?a=1 HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(answer.status, 308);
    assert_eq!(
        answer.header("location"),
        Some("https://localhost/v1/me?a=1")
    );
    // Renewed files and SIGHUP: re-read, new connections get the new one.
    let second = pki.issue("second");
    tls_kit::write_pair(dir.path(), &second);
    let pid = started.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut served = Vec::new();
    for _ in 0..100 {
        let fresh = connect(addr, pki.client(&[&TLS13], &[])).await.unwrap();
        served = fresh.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        if served == second.leaf.to_vec() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, second.leaf.to_vec());
    // The old connection still answers; the process survived the signal.
    assert_eq!(exchange(&mut tls, &get("/healthz")).await.status, 200);
    let status = stop(started);
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("SIGHUP: re-reading the TLS certificate files"),
        "{log}"
    );
    assert!(log.contains("TLS certificate reloaded"), "{log}");
}

#[test]
fn a_bad_pair_stops_serve_and_config_check_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let files = tls_kit::write_pair(dir.path(), &pki.issue("a"));
    tls_kit::replace(&files.key_file, pki.issue("b").key_pem.as_bytes());
    for args in [&["serve"][..], &["config", "check"][..]] {
        let out = run(stockade(dir.path())
            .args(args)
            .env("STOCKADE_LISTEN", "127.0.0.1:0")
            .env("STOCKADE_TLS_CERT_FILE", &files.cert_file)
            .env("STOCKADE_TLS_KEY_FILE", &files.key_file));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert!(
            lines[0].contains("does not hold the key of the certificate"),
            "{lines:?}"
        );
    }
    // Half a pair is a configuration error too.
    let out = run(stockade(dir.path())
        .args(["config", "check"])
        .env("STOCKADE_TLS_CERT_FILE", &files.cert_file));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_lines(&out)[0].contains("is set without STOCKADE_TLS_KEY_FILE"));
}

#[test]
fn config_check_says_whether_tls_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let files = tls_kit::write_pair(dir.path(), &pki.issue("a"));
    let out = run(stockade(dir.path())
        .args(["config", "check"])
        .env("STOCKADE_TLS_CERT_FILE", &files.cert_file)
        .env("STOCKADE_TLS_KEY_FILE", &files.key_file)
        .env("STOCKADE_PUBLIC_URL", "https://app.example.test")
        .env("STOCKADE_HTTP_REDIRECT_LISTEN", "0.0.0.0:80"));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    let stdout = stdout_of(&out);
    assert!(stdout.contains("tls: on (TLS 1.3 and 1.2;"), "{stdout}");
    assert!(
        stdout.contains("http redirector: 0.0.0.0:80 answers 308 to https://app.example.test"),
        "{stdout}"
    );
    let out = run(stockade(dir.path()).args(["config", "check"]));
    assert!(stdout_of(&out).contains("tls: off (plain HTTP)"));
}

/// Production refuses plain HTTP off loopback (one line, exit 2) before it
/// binds anything, unless told a TLS proxy is in front (whose address must
/// then be trusted).
#[test]
fn production_refuses_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let env = production_env(dir.path());
    for args in [&["serve"][..], &["config", "check"][..]] {
        let out = run(stockade(dir.path())
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("STOCKADE_LISTEN", "0.0.0.0:0"));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let lines = stderr_lines(&out);
        assert_eq!(
            lines,
            [
                "error: STOCKADE_LISTEN=0.0.0.0:0 is plain HTTP off loopback: production serves HTTPS itself (STOCKADE_TLS_CERT_FILE and STOCKADE_TLS_KEY_FILE), or says STOCKADE_BEHIND_TLS_PROXY=true when a proxy in front terminates TLS"
            ],
            "{args:?}"
        );
    }
    let out = run(stockade(dir.path())
        .args(["config", "check"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("STOCKADE_LISTEN", "0.0.0.0:0")
        .env("STOCKADE_BEHIND_TLS_PROXY", "true")
        .env("STOCKADE_TRUSTED_PROXIES", "10.0.0.0/8"));
    assert!(out.status.success(), "{:?}", stderr_lines(&out));
    assert!(stdout_of(&out).contains("tls: off (plain HTTP; a TLS proxy in front"));
}
