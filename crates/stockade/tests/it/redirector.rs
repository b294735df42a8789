//! The plain-HTTP redirector and the TLS-proxy scheme rule (issue #20
//! items 1 and 2), attacked with what an open-redirect hunter sends: hostile
//! `Host` headers, absolute-form and authority-form targets, `//host`
//! paths, backslashes, encoded CR/LF; and the ACME challenge directory with
//! traversal, symlinks and oversized files.

use stockade::http::listener::ServeOptions;
use stockade::http::redirector;
use tokio::net::TcpStream;

use crate::testkit::TestServer;
use crate::tls_kit::{Answer, Served, exchange};

const PUBLIC: &str = "https://app.example.test";
const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

async fn redirector_on(acme: Option<&std::path::Path>) -> Served {
    let public = url::Url::parse(PUBLIC).unwrap();
    let router = redirector::router(&public, acme.map(|p| p.to_path_buf()));
    Served::start(router, ServeOptions::default()).await
}

async fn raw(served: &Served, request: &str) -> Answer {
    let mut tcp = TcpStream::connect(served.addr).await.unwrap();
    exchange(&mut tcp, request.as_bytes()).await
}

/// The `Location` of a 308, checked to be on the public host.
fn location(answer: &Answer) -> String {
    assert_eq!(answer.status, 308, "{}", answer.head);
    let location = answer.header("location").unwrap().to_owned();
    let url = url::Url::parse(&location).unwrap();
    assert_eq!(url.scheme(), "https", "{location}");
    assert_eq!(url.host_str(), Some("app.example.test"), "{location}");
    assert_eq!(url.port(), None, "{location}");
    assert!(
        !location.contains('\\') && !location.contains('\r'),
        "{location}"
    );
    location
}

#[tokio::test]
async fn every_request_is_redirected_to_the_public_host() {
    let served = redirector_on(None).await;
    for (target, host, expected) in [
        (
            "/v1/me?x=1&y=2",
            "localhost",
            "https://app.example.test/v1/me?x=1&y=2",
        ),
        // The Host header is never read.
        ("/login", "evil.example", "https://app.example.test/login"),
        (
            "/login",
            "app.example.test.evil.example",
            "https://app.example.test/login",
        ),
        (
            "/login",
            "app.example.test@evil.example",
            "https://app.example.test/login",
        ),
        // Absolute-form: only its path and query are kept.
        (
            "http://evil.example/steal?x=1",
            "evil.example",
            "https://app.example.test/steal?x=1",
        ),
        (
            "https://evil.example",
            "evil.example",
            "https://app.example.test/",
        ),
        // A path that a browser would read as a host stays a path.
        (
            "//evil.example/x",
            "localhost",
            "https://app.example.test//evil.example/x",
        ),
        (
            "///evil.example",
            "localhost",
            "https://app.example.test///evil.example",
        ),
        // Encoded CR/LF stays encoded: no header can be injected.
        (
            "/%0d%0aSet-Cookie:%20a=b",
            "localhost",
            "https://app.example.test/%0d%0aSet-Cookie:%20a=b",
        ),
        (
            "/a?next=https://evil.example",
            "localhost",
            "https://app.example.test/a?next=https://evil.example",
        ),
    ] {
        let answer = raw(
            &served,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Host: evil.example\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(location(&answer), expected, "{target} Host: {host}");
        assert!(answer.header("set-cookie").is_none());
        // Security headers on the redirect too.
        assert_eq!(
            answer.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains")
        );
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    }
    // Backslashes: refused by the parser (400) or percent-encoded; never a
    // Location a browser could read as another host.
    for target in ["/\\evil.example/x", "/\\\\evil.example"] {
        let answer = raw(
            &served,
            &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        match answer.status {
            308 => assert!(location(&answer).contains("%5C"), "{target}"),
            status => assert_eq!(status, 400, "{target}"),
        }
    }
    // Authority-form (CONNECT) and other methods: the public URL, same path.
    let answer = raw(
        &served,
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    )
    .await;
    assert_eq!(location(&answer), "https://app.example.test/");
    let answer = raw(
        &served,
        "POST /v1/auth/login?a=b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(
        location(&answer),
        "https://app.example.test/v1/auth/login?a=b"
    );
    // A real client following nothing sees the same.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = client
        .get(format!("http://{}/v1/tenants?page=2", served.addr))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(
        res.headers()["location"],
        "https://app.example.test/v1/tenants?page=2"
    );
}

#[tokio::test]
async fn acme_challenges_are_served_and_nothing_else_is() {
    // The webroot, as certbot's `--webroot -w` fills it.
    let root = tempfile::tempdir().unwrap();
    let webroot = root.path().join("www");
    let acme = webroot.join(".well-known/acme-challenge");
    std::fs::create_dir_all(&acme).unwrap();
    std::fs::write(webroot.join("index"), "webroot file").unwrap();
    std::fs::write(acme.join(TOKEN), format!("{TOKEN}.thumbprint")).unwrap();
    std::fs::write(root.path().join("secret"), "outside").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret"), acme.join("linked")).unwrap();
    std::fs::create_dir(acme.join("adir")).unwrap();
    std::fs::write(acme.join("big"), vec![b'a'; 4097]).unwrap();
    let served = redirector_on(Some(&webroot)).await;
    let answer = raw(
        &served,
        &format!("GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, format!("{TOKEN}.thumbprint").as_bytes());
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    for target in [
        "/.well-known/acme-challenge/../secret",
        "/.well-known/acme-challenge/..%2fsecret",
        "/.well-known/acme-challenge/%2e%2e%2fsecret",
        "/.well-known/acme-challenge/linked",
        "/.well-known/acme-challenge/adir",
        "/.well-known/acme-challenge/big",
        "/.well-known/acme-challenge/missing",
        "/.well-known/acme-challenge/",
        "/.well-known/acme-challenge/a.b",
        "/.well-known/acme-challenge/a/b",
        "/.well-known/acme-challenge/..%2f..%2findex",
        "/.well-known/acme-challenge/../../index",
    ] {
        let answer = raw(
            &served,
            &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await;
        assert_eq!(answer.status, 404, "{target}");
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
        let body = String::from_utf8_lossy(&answer.body);
        assert!(
            !body.contains("outside") && !body.contains("webroot file"),
            "{target}"
        );
    }
    // Only GET and HEAD read challenges; anything else is redirected.
    let answer = raw(
        &served,
        &format!("POST /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    assert_eq!(
        location(&answer),
        format!("https://app.example.test/.well-known/acme-challenge/{TOKEN}")
    );
    // Without a challenge directory, the path is redirected like any other.
    let plain = redirector_on(None).await;
    let answer = raw(
        &plain,
        &format!("GET /.well-known/acme-challenge/{TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert_eq!(
        location(&answer),
        format!("https://app.example.test/.well-known/acme-challenge/{TOKEN}")
    );
}

/// Behind a TLS proxy: what the trusted proxy says came over `http` is
/// redirected; `https`, or the header from anyone else, is served.
#[tokio::test]
async fn forwarded_proto_is_believed_only_from_trusted_proxies() {
    let trusted = TestServer::start_with(
        &[
            ("STOCKADE_BEHIND_TLS_PROXY", "true"),
            ("STOCKADE_PUBLIC_URL", PUBLIC),
            ("STOCKADE_TRUSTED_PROXIES", "127.0.0.1"),
        ],
        true,
    )
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let send = |s: &TestServer, proto: Option<&'static str>| {
        let mut req = client
            .get(s.url("/healthz?probe=1"))
            .header("host", "evil.example");
        if let Some(p) = proto {
            req = req.header("x-forwarded-proto", p);
        }
        req.send()
    };
    for proto in ["http", "HTTP", "https, http", " http "] {
        let res = send(&trusted, Some(proto)).await.unwrap();
        assert_eq!(res.status(), 308, "{proto}");
        assert_eq!(
            res.headers()["location"],
            "https://app.example.test/healthz?probe=1"
        );
        assert_eq!(
            res.headers()["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
    }
    for proto in [Some("https"), None] {
        let res = send(&trusted, proto).await.unwrap();
        assert_eq!(res.status(), 200, "{proto:?}");
    }
    let untrusted = TestServer::start_with(
        &[
            ("STOCKADE_BEHIND_TLS_PROXY", "true"),
            ("STOCKADE_PUBLIC_URL", PUBLIC),
            ("STOCKADE_TRUSTED_PROXIES", "10.0.0.0/8"),
        ],
        true,
    )
    .await;
    let res = send(&untrusted, Some("http")).await.unwrap();
    assert_eq!(res.status(), 200);
    // Without the setting the header means nothing, even from a trusted peer.
    let off = TestServer::start_with(&[("STOCKADE_TRUSTED_PROXIES", "127.0.0.1")], true).await;
    let res = send(&off, Some("http")).await.unwrap();
    assert_eq!(res.status(), 200);
}
