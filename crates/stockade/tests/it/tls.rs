//! The TLS listener as a scanner and a client see it (issue #20 items 1, 3
//! and 9): the real application over the real connection loop, a
//! certificate from a throw-away CA, rustls clients pinned to one version,
//! and hand-written ClientHellos for what rustls clients cannot send.

use std::time::Duration;

use rustls::version::{TLS12, TLS13};
use stockade::http::listener::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::testkit::TestServer;
use crate::tls_kit::{self, Pki, Served, closed_within, connect, exchange, get, hello};

const HSTS: &str = "max-age=31536000; includeSubDomains";

/// The whole application over TLS, beside its plain test server.
async fn app_over_tls(
    pki: &Pki,
    header_read_timeout: Duration,
) -> (TestServer, Served, tempfile::TempDir) {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let files = tls_kit::write_pair(dir.path(), &pki.issue("stockade"));
    let (served, _tls) = Served::tls(
        stockade::app::app(server.state.clone()),
        &files,
        header_read_timeout,
    )
    .await;
    (server, served, dir)
}

/// Sends `record` and reads what comes back until the server closes.
async fn answer_to(addr: std::net::SocketAddr, record: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(record).await.unwrap();
    let mut first = vec![0u8; 7];
    tcp.read_exact(&mut first).await.unwrap();
    first
}

#[tokio::test]
async fn tls_13_and_12_succeed_with_forward_secret_aead_and_hsts() {
    let pki = Pki::new();
    let (_server, served, _dir) = app_over_tls(&pki, Duration::from_secs(10)).await;
    for (version, expected) in [
        (&TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let mut tls = connect(served.addr, pki.client(&[version], &[b"http/1.1"]))
            .await
            .unwrap();
        let (_, conn) = tls.get_ref();
        assert_eq!(conn.protocol_version(), Some(expected));
        let suite = format!("{:?}", conn.negotiated_cipher_suite().unwrap().suite());
        assert!(
            suite.starts_with("TLS13_") || suite.starts_with("TLS_ECDHE_"),
            "{suite}"
        );
        assert!(
            suite.contains("GCM") || suite.contains("CHACHA20_POLY1305"),
            "{suite}"
        );
        let answer = exchange(&mut tls, &get("/healthz")).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("strict-transport-security"), Some(HSTS));
    }
    // A client offering both gets TLS 1.3.
    let tls = connect(served.addr, pki.client(&[&TLS12, &TLS13], &[]))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn_and_serves_the_api() {
    let pki = Pki::new();
    let (_server, served, _dir) = app_over_tls(&pki, Duration::from_secs(10)).await;
    let tls = connect(served.addr, pki.client(&[&TLS13], &[b"h2", b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let tls = connect(served.addr, pki.client(&[&TLS12], &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    // A real HTTP client: HTTP/2 over TLS, the API's answers and headers.
    let client = pki.reqwest(served.addr);
    let base = format!("https://localhost:{}", served.addr.port());
    let res = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["strict-transport-security"], HSTS);
    let res = client
        .get(format!("{base}/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["strict-transport-security"], HSTS);
    // An ALPN protocol we do not speak is refused in the handshake.
    assert!(
        connect(served.addr, pki.client(&[&TLS13], &[b"spdy/3"]))
            .await
            .is_err()
    );
}

/// The control first: the hand-written hello is a valid TLS 1.2 hello the
/// server answers with a ServerHello. Then the same hello speaking TLS 1.0
/// or 1.1, or offering only non-forward-secret or CBC suites, gets a fatal
/// alert and no ServerHello.
#[tokio::test]
async fn old_versions_and_weak_suites_are_refused_in_the_handshake() {
    let pki = Pki::new();
    let (_server, served, _dir) = app_over_tls(&pki, Duration::from_secs(10)).await;
    let accepted = answer_to(
        served.addr,
        &hello::client_hello(hello::TLS12, &[hello::ECDHE_ECDSA_AES128_GCM]),
    )
    .await;
    assert_eq!(accepted[0], hello::HANDSHAKE, "{accepted:?}");
    assert_eq!(accepted[5], 2, "a ServerHello: {accepted:?}");
    for (version, suites, alert) in [
        (
            hello::TLS10,
            &[hello::ECDHE_ECDSA_AES128_CBC, hello::RSA_AES128_CBC][..],
            hello::PROTOCOL_VERSION,
        ),
        (
            hello::TLS11,
            &[hello::ECDHE_ECDSA_AES128_CBC, hello::RSA_AES128_CBC][..],
            hello::PROTOCOL_VERSION,
        ),
        // TLS 1.1 even when the client also knows a suite we would take.
        (
            hello::TLS11,
            &[hello::ECDHE_ECDSA_AES128_GCM][..],
            hello::PROTOCOL_VERSION,
        ),
        (
            hello::TLS12,
            &[hello::RSA_AES128_GCM][..],
            hello::HANDSHAKE_FAILURE,
        ),
        (
            hello::TLS12,
            &[hello::RSA_AES128_CBC, hello::ECDHE_ECDSA_AES128_CBC][..],
            hello::HANDSHAKE_FAILURE,
        ),
    ] {
        let answer = answer_to(served.addr, &hello::client_hello(version, suites)).await;
        assert_eq!(
            answer[0],
            hello::ALERT,
            "{version:#x} {suites:x?}: {answer:?}"
        );
        assert_eq!(&answer[3..5], &[0, 2], "{answer:?}");
        assert_eq!(answer[5], 2, "fatal: {answer:?}");
        assert_eq!(answer[6], alert, "{version:#x} {suites:x?}");
    }
    // And the server still answers proper clients.
    let mut tls = connect(served.addr, pki.client(&[&TLS13], &[]))
        .await
        .unwrap();
    assert_eq!(exchange(&mut tls, &get("/healthz")).await.status, 200);
}

/// Random bytes, a truncated hello and plain HTTP sent to the TLS port:
/// each connection is closed, and the server keeps serving.
#[tokio::test]
async fn malformed_handshakes_close_only_their_connection() {
    let pki = Pki::new();
    let (_server, served, _dir) = app_over_tls(&pki, Duration::from_secs(10)).await;
    let mut junk = vec![0u8; 2048];
    getrandom::fill(&mut junk).unwrap();
    junk[0] = 0x16; // looks like a handshake record, then nonsense
    let truncated = hello::client_hello(hello::TLS12, &[hello::ECDHE_ECDSA_AES128_GCM]);
    let mut wrong_length = truncated.clone();
    wrong_length[3] = 0xff; // a record longer than any TLS allows
    for bytes in [
        junk,
        wrong_length,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        vec![0u8; 64],
    ] {
        let mut tcp = TcpStream::connect(served.addr).await.unwrap();
        tcp.write_all(&bytes).await.unwrap();
        let sent = closed_within(&mut tcp, Duration::from_secs(10))
            .await
            .unwrap();
        // Nothing but (at most) an alert record comes back.
        assert!(sent.is_empty() || sent[0] == hello::ALERT, "{sent:?}");
    }
    // Proper clients are still served.
    let mut tls = connect(served.addr, pki.client(&[&TLS12], &[]))
        .await
        .unwrap();
    assert_eq!(exchange(&mut tls, &get("/healthz")).await.status, 200);
}

/// A connection that never finishes its handshake (silent, or half a
/// hello) is closed after the header read timeout: 1 s here, and the
/// bound allows 10 s of noise.
#[tokio::test]
async fn silent_and_half_open_handshakes_time_out() {
    let pki = Pki::new();
    let (_server, served, _dir) = app_over_tls(&pki, Duration::from_secs(1)).await;
    let hello = hello::client_hello(hello::TLS12, &[hello::ECDHE_ECDSA_AES128_GCM]);
    for sent in [&[][..], &hello[..hello.len() / 2]] {
        let mut tcp = TcpStream::connect(served.addr).await.unwrap();
        tcp.write_all(sent).await.unwrap();
        let seen = closed_within(&mut tcp, Duration::from_secs(10)).await;
        assert_eq!(seen, Ok(Vec::new()), "{} bytes sent", sent.len());
    }
}

/// The plain listener and the TLS one are the same loop: without TLS the
/// same port speaks HTTP, with it nothing but TLS.
#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let pki = Pki::new();
    let (_server, served, _dir) = app_over_tls(&pki, Duration::from_secs(10)).await;
    let res = reqwest::get(format!("http://{}/healthz", served.addr)).await;
    assert!(res.is_err(), "{res:?}");
    let plain = Served::start(
        axum::Router::new().route("/x", axum::routing::get(|| async { "x" })),
        ServeOptions::default(),
    )
    .await;
    let res = reqwest::get(format!("http://{}/x", plain.addr))
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "x");
}

/// The trust page (`/trust.json`) says how HTTPS is provided, from the
/// configuration the server runs with.
#[tokio::test]
async fn the_trust_page_reports_the_transport_it_runs_with() {
    let transport = |s: TestServer| async move {
        let p: serde_json::Value = s
            .client
            .get(s.url("/trust.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        p["transport"].clone()
    };
    let plain = transport(TestServer::start().await).await;
    assert_eq!(plain["https"], "none");
    assert_eq!(plain["https_enforced"], false);
    assert_eq!(plain["tls_versions"], serde_json::json!([]));
    let built_in = transport(
        TestServer::start_with(
            &[
                ("STOCKADE_TLS_CERT_FILE", "/etc/stockade/cert.pem"),
                ("STOCKADE_TLS_KEY_FILE", "/etc/stockade/key.pem"),
                ("STOCKADE_PUBLIC_URL", "https://app.example.test"),
                ("STOCKADE_HTTP_REDIRECT_LISTEN", "127.0.0.1:0"),
            ],
            true,
        )
        .await,
    )
    .await;
    assert_eq!(built_in["https"], "built-in");
    assert_eq!(built_in["https_enforced"], true);
    assert_eq!(
        built_in["tls_versions"],
        serde_json::json!(["TLS 1.3", "TLS 1.2"])
    );
    assert_eq!(built_in["tls_forward_secrecy_only"], true);
    assert_eq!(built_in["http_redirector"], true);
    assert_eq!(built_in["hsts"], HSTS);
    let proxied = transport(
        TestServer::start_with(
            &[
                ("STOCKADE_BEHIND_TLS_PROXY", "true"),
                ("STOCKADE_PUBLIC_URL", "https://app.example.test"),
                ("STOCKADE_TRUSTED_PROXIES", "10.0.0.0/8"),
            ],
            true,
        )
        .await,
    )
    .await;
    assert_eq!(proxied["https"], "proxy");
    assert_eq!(proxied["https_enforced"], true);
    assert_eq!(proxied["http_redirector"], false);
    // The certificate's paths are internal: not on the page.
    assert!(!built_in.to_string().contains("/etc/stockade"));
}
