//! Issue #17 item 14, as the attacker: `POST /v1/auth/refresh` is
//! authorised by the `__Host-stockade_refresh` cookie alone, which a browser
//! attaches to requests other sites' pages make (sibling subdomains of the
//! same site get past SameSite=Lax). Every cross-site shape of `Origin` /
//! `Sec-Fetch-Site` is refused with 403 `auth.cross_site_refused` and
//! changes nothing: the token is neither rotated nor revoked, no cookie is
//! set or cleared. The deployment's own pages, its tenant subdomains and
//! non-browser clients are served. On SQLite and PostgreSQL.

use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::auth::{Login, me, server, set_cookie, signup};
use crate::testkit::{Backend, TestServer};

const PUBLIC: &str = "https://app.example.test";
const ENV: &[(&str, &str)] = &[
    ("STOCKADE_PUBLIC_URL", PUBLIC),
    ("STOCKADE_TENANT_DOMAIN", "tenants.example.test"),
];

type Headers = &'static [(&'static str, &'static [u8])];

/// What an attacker's page (or a confused browser) can make a victim's
/// browser send.
const HOSTILE: &[(&str, Headers)] = &[
    ("cross-site fetch", &[("sec-fetch-site", b"cross-site")]),
    (
        "cross-site fetch claiming our origin",
        &[
            ("sec-fetch-site", b"cross-site"),
            ("origin", PUBLIC.as_bytes()),
        ],
    ),
    ("opaque origin", &[("origin", b"null")]),
    ("other scheme", &[("origin", b"http://app.example.test")]),
    (
        "other port",
        &[("origin", b"https://app.example.test:8443")],
    ),
    (
        "look-alike suffix",
        &[("origin", b"https://app.example.test.evil.test")],
    ),
    (
        "look-alike prefix",
        &[("origin", b"https://evilapp.example.test")],
    ),
    (
        "look-alike dash",
        &[("origin", b"https://app-example.test")],
    ),
    ("upper case", &[("origin", b"https://APP.EXAMPLE.TEST")]),
    ("trailing dot", &[("origin", b"https://app.example.test.")]),
    ("userinfo", &[("origin", b"https://user@app.example.test")]),
    ("path", &[("origin", b"https://app.example.test/")]),
    (
        "default port spelled out",
        &[("origin", b"https://app.example.test:443")],
    ),
    (
        "two origins, ours first",
        &[
            ("origin", PUBLIC.as_bytes()),
            ("origin", b"https://evil.test"),
        ],
    ),
    (
        "two origins, both ours",
        &[("origin", PUBLIC.as_bytes()), ("origin", PUBLIC.as_bytes())],
    ),
    (
        "origin list in one header",
        &[("origin", b"https://app.example.test https://evil.test")],
    ),
    ("not utf-8", &[("origin", b"https://app.example.test\xff")]),
    (
        "tenant look-alike",
        &[("origin", b"https://acme.tenants.example.test.evil.test")],
    ),
    (
        "tenant two labels deep",
        &[("origin", b"https://x.acme.tenants.example.test")],
    ),
    (
        "tenant over http",
        &[("origin", b"http://acme.tenants.example.test")],
    ),
    (
        "same-site without origin",
        &[("sec-fetch-site", b"same-site")],
    ),
    (
        "same-site sibling that is not ours",
        &[
            ("sec-fetch-site", b"same-site"),
            ("origin", b"https://blog.example.test"),
        ],
    ),
    ("unknown fetch-site", &[("sec-fetch-site", b"bogus")]),
    (
        "fetch-site in upper case",
        &[("sec-fetch-site", b"Cross-Site")],
    ),
    (
        "two fetch-sites",
        &[
            ("sec-fetch-site", b"same-origin"),
            ("sec-fetch-site", b"cross-site"),
        ],
    ),
];

/// What the deployment's own pages, tenant subdomains and non-browser
/// clients send.
const ALLOWED: &[(&str, Headers)] = &[
    ("no browser headers", &[]),
    ("our origin", &[("origin", PUBLIC.as_bytes())]),
    (
        "same-origin fetch",
        &[
            ("sec-fetch-site", b"same-origin"),
            ("origin", PUBLIC.as_bytes()),
        ],
    ),
    (
        "a tenant subdomain",
        &[
            ("sec-fetch-site", b"same-site"),
            ("origin", b"https://acme.tenants.example.test"),
        ],
    ),
    ("user-initiated", &[("sec-fetch-site", b"none")]),
];

async fn refresh_with(s: &TestServer, cookie: &str, headers: Headers) -> reqwest::Response {
    let mut req = s
        .client
        .post(s.url("/v1/auth/refresh"))
        .header("cookie", format!("__Host-stockade_refresh={cookie}"));
    for (name, value) in headers {
        req = req.header(
            HeaderName::from_static(name),
            HeaderValue::from_bytes(value).unwrap(),
        );
    }
    req.send().await.unwrap()
}

/// `(used_at is null, revoked_at is null)` of every refresh token and
/// session of tenant `acme`.
async fn token_state(s: &TestServer) -> (Vec<bool>, Vec<bool>) {
    let acme = stockade::tenancy::find_by_slug(&s.db, "acme")
        .await
        .unwrap()
        .unwrap()
        .id;
    let mut tx = s.db.tenant_read(acme).await.unwrap();
    let tokens: Vec<(Option<chrono::DateTime<chrono::Utc>>,)> = tx
        .fetch_all(
            "SELECT used_at FROM refresh_tokens WHERE tenant_id = $1",
            vec![],
        )
        .await
        .unwrap();
    let sessions: Vec<(Option<chrono::DateTime<chrono::Utc>>,)> = tx
        .fetch_all(
            "SELECT revoked_at FROM sessions WHERE tenant_id = $1",
            vec![],
        )
        .await
        .unwrap();
    (
        tokens.iter().map(|t| t.0.is_none()).collect(),
        sessions.iter().map(|t| t.0.is_none()).collect(),
    )
}

async fn cross_site_refreshes_are_refused_and_change_nothing(backend: Backend) {
    let Some(s) = server(backend, ENV).await else {
        return;
    };
    let Login { access, refresh } = signup(&s, "acme", "pat@acme.test").await;
    let before = token_state(&s).await;
    assert_eq!(before, (vec![true], vec![true]));
    for (shape, headers) in HOSTILE {
        let res = refresh_with(&s, &refresh, headers).await;
        let status = res.status();
        let cookie = set_cookie(&res);
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{shape}: {body}");
        assert_eq!(body["code"], "auth.cross_site_refused", "{shape}");
        assert_eq!(content_type, "application/problem+json", "{shape}");
        assert!(cookie.is_none(), "{shape}: no cookie set or cleared");
    }
    // Nothing rotated, nothing revoked: the token is still the live one.
    assert_eq!(token_state(&s).await, before);
    assert_eq!(me(&s, &access).await.status(), StatusCode::OK);
    let res = refresh_with(&s, &refresh, &[]).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the refused token still refreshes"
    );
}

async fn own_pages_and_non_browser_clients_refresh(backend: Backend) {
    let Some(s) = server(backend, ENV).await else {
        return;
    };
    let mut cookie = signup(&s, "acme", "pat@acme.test").await.refresh;
    for (shape, headers) in ALLOWED {
        let res = refresh_with(&s, &cookie, headers).await;
        assert_eq!(res.status(), StatusCode::OK, "{shape}");
        let set = set_cookie(&res).expect("a rotated cookie");
        let value = set.split(';').next().unwrap();
        cookie = value
            .trim_start_matches("__Host-stockade_refresh=")
            .to_owned();
    }
    let (tokens, sessions) = token_state(&s).await;
    assert_eq!(tokens.len(), ALLOWED.len() + 1, "one rotation each");
    assert_eq!(sessions, vec![true]);
}

crate::both_servers!(
    cross_site_refreshes_are_refused_and_change_nothing,
    own_pages_and_non_browser_clients_refresh,
);
