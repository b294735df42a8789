//! The plain-HTTP redirector (`STOCKADE_HTTP_REDIRECT_LISTEN`, SPEC §2.14,
//! issue #20 item 2): a second listener that answers every request with
//! `308 Permanent Redirect` to the same path and query on
//! `STOCKADE_PUBLIC_URL`, and serves the ACME HTTP-01 challenge files
//! (`GET /.well-known/acme-challenge/<token>` from
//! `STOCKADE_ACME_CHALLENGE_DIR`), nothing else.
//!
//! No open redirect: the scheme, host and port of `Location` are always the
//! configured public URL's ([`Target`]); the request's `Host`, an
//! absolute-form target (`GET http://evil.example/ HTTP/1.1`) or an
//! authority-form one (`CONNECT evil.example:443`) are never read — only
//! the request's path and query, appended after the public URL's own path,
//! with anything outside RFC 3986's path and query characters
//! percent-encoded. So `//evil.example/x` or `/\evil.example` stay paths on
//! our host; and the result is parsed back and must have the public URL's
//! origin, or `Location` is the public URL itself.
//!
//! The challenge directory is the webroot certbot writes to (`certbot
//! --webroot -w <dir>`): a token is read from
//! `<dir>/.well-known/acme-challenge/<token>`. Tokens are base64url
//! (`[A-Za-z0-9_-]`, at most [`MAX_TOKEN_LEN`]), so no `.`, `/` or `%` can
//! reach the file system; the file must be a regular file (not a symlink,
//! not a directory) of at most [`MAX_CHALLENGE_BYTES`], answered as
//! `text/plain`; anything else 404.
//! Both kinds of answer go through the standard layer stack (security
//! headers, problem+json errors, request ids, timeouts).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tokio::io::AsyncReadExt;
use url::Url;

use super::ApiError;
use super::layers::{self, Limits};

pub const ACME_PREFIX: &str = "/.well-known/acme-challenge/";
/// The longest ACME token served (Let's Encrypt's are 43 characters).
pub const MAX_TOKEN_LEN: usize = 128;
/// The largest challenge file served (a key authorization is under 100 bytes).
pub const MAX_CHALLENGE_BYTES: u64 = 4096;
/// The redirector reads no body: a request carrying one is bounded by this.
const BODY_LIMIT: usize = 16 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes kept as they are in a redirected path: RFC 3986 `pchar` and `/`,
/// and `%` (an already encoded octet stays encoded once). Everything else,
/// `\`, `?`, `#`, spaces, quotes and non-ASCII included, is encoded.
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');
/// The query keeps `?` and `/` too (RFC 3986 `query`).
const QUERY: &AsciiSet = &PATH.remove(b'?');

/// Where redirects go: the public URL's origin and path, nothing from the
/// request but its path and query.
#[derive(Debug, Clone)]
pub struct Target {
    /// `scheme://host[:port]` and the public URL's path without its
    /// trailing `/`.
    base: String,
    origin: url::Origin,
}

impl Target {
    pub fn new(public: &Url) -> Self {
        let origin = public.origin();
        let base = format!(
            "{}{}",
            origin.ascii_serialization(),
            public.path().trim_end_matches('/')
        );
        Self { base, origin }
    }

    /// The public URL with `uri`'s path and query; the public URL itself if
    /// the result would leave its origin.
    pub fn location(&self, uri: &Uri) -> String {
        let path = match uri.path() {
            p if p.starts_with('/') => p,
            // Authority-form (`CONNECT host:port`) and asterisk-form (`*`).
            _ => "/",
        };
        let mut location = format!("{}{}", self.base, utf8_percent_encode(path, PATH));
        if let Some(query) = uri.query() {
            location.push('?');
            location.extend(utf8_percent_encode(query, QUERY));
        }
        match Url::parse(&location) {
            Ok(url) if url.origin() == self.origin => location,
            _ => format!("{}/", self.base),
        }
    }

    /// `308` to [`Self::location`].
    pub fn redirect(&self, uri: &Uri) -> Response {
        let location = HeaderValue::from_str(&self.location(uri))
            .or_else(|_| HeaderValue::from_str(&format!("{}/", self.base)));
        match location {
            Ok(location) => (
                StatusCode::PERMANENT_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response(),
            Err(_) => ApiError::internal("the public URL is not a header value").into_response(),
        }
    }
}

#[derive(Clone)]
struct Redirector {
    target: Arc<Target>,
    acme_dir: Option<Arc<PathBuf>>,
}

/// The redirector's whole application, behind the standard layers.
pub fn router(public: &Url, acme_dir: Option<PathBuf>) -> Router {
    let state = Redirector {
        target: Arc::new(Target::new(public)),
        acme_dir: acme_dir.map(Arc::new),
    };
    let router = Router::new().fallback(answer).with_state(state);
    layers::apply(
        router,
        Limits {
            body_limit: BODY_LIMIT,
            request_timeout: REQUEST_TIMEOUT,
            drain_limit: BODY_LIMIT,
        },
    )
}

async fn answer(State(r): State<Redirector>, method: Method, uri: Uri) -> Response {
    if let (Some(dir), Some(token)) = (&r.acme_dir, uri.path().strip_prefix(ACME_PREFIX))
        && (method == Method::GET || method == Method::HEAD)
    {
        return match challenge(dir, token).await {
            Some(body) => {
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
            }
            None => ApiError::not_found().into_response(),
        };
    }
    r.target.redirect(&uri)
}

/// A token is base64url, so it names a file directly inside the directory.
pub fn valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The content of `<webroot>/.well-known/acme-challenge/<token>`, if it is
/// a regular file of at most [`MAX_CHALLENGE_BYTES`].
async fn challenge(dir: &Path, token: &str) -> Option<Vec<u8>> {
    if !valid_token(token) {
        return None;
    }
    let path = dir.join(ACME_PREFIX.trim_matches('/')).join(token);
    let meta = tokio::fs::symlink_metadata(&path).await.ok()?;
    if !meta.file_type().is_file() || meta.len() > MAX_CHALLENGE_BYTES {
        return None;
    }
    let file = tokio::fs::File::open(&path).await.ok()?;
    let mut body = Vec::new();
    file.take(MAX_CHALLENGE_BYTES + 1)
        .read_to_end(&mut body)
        .await
        .ok()?;
    (body.len() as u64 <= MAX_CHALLENGE_BYTES).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new(&Url::parse("https://app.example.com/").unwrap())
    }

    fn loc(t: &Target, target: &str) -> String {
        t.location(&target.parse::<Uri>().unwrap())
    }

    #[test]
    fn the_host_is_always_the_public_urls() {
        let t = target();
        for (request, expected) in [
            ("/", "https://app.example.com/"),
            (
                "/v1/me?x=1&y=%2F",
                "https://app.example.com/v1/me?x=1&y=%2F",
            ),
            ("http://evil.example/x?q", "https://app.example.com/x?q"),
            ("https://evil.example", "https://app.example.com/"),
            ("evil.example:443", "https://app.example.com/"),
            ("*", "https://app.example.com/"),
            (
                "//evil.example/x",
                "https://app.example.com//evil.example/x",
            ),
            (
                "/%0d%0aSet-Cookie:x",
                "https://app.example.com/%0d%0aSet-Cookie:x",
            ),
            ("/a?b=/c?d", "https://app.example.com/a?b=/c?d"),
        ] {
            let got = loc(&t, request);
            assert_eq!(got, expected, "{request}");
            let url = Url::parse(&got).unwrap();
            assert_eq!(url.host_str(), Some("app.example.com"), "{request}");
        }
        // Bytes a `Uri` may hold but a redirect must not carry raw.
        let odd = "/a\"b{c}|d^e`f".parse::<Uri>();
        if let Ok(uri) = odd {
            assert_eq!(
                t.location(&uri),
                "https://app.example.com/a%22b%7Bc%7D%7Cd%5Ee%60f"
            );
        }
    }

    #[test]
    fn a_public_path_prefix_is_kept() {
        let t = Target::new(&Url::parse("https://example.com:8443/auth/").unwrap());
        assert_eq!(loc(&t, "/v1/me?a"), "https://example.com:8443/auth/v1/me?a");
        assert_eq!(
            loc(&t, "//evil.example"),
            "https://example.com:8443/auth//evil.example"
        );
    }

    #[test]
    fn tokens_are_base64url_only() {
        assert!(valid_token("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"));
        for bad in [
            "",
            "..",
            "a/b",
            "a.b",
            "%2e%2e",
            "a\\b",
            "a b",
            &"a".repeat(129),
        ] {
            assert!(!valid_token(bad), "{bad:?}");
        }
    }
}
