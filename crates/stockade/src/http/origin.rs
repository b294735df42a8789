//! Cross-site refusal for the endpoints a cookie alone authorises (issue #17
//! item 14). A browser attaches the `__Host-stockade_refresh` cookie to any
//! request to our host that its SameSite=Lax rule lets through — including
//! requests from sibling origins of the same site (another subdomain) — so
//! such an endpoint must check who sent the request. The [`SameOrigin`]
//! extractor does, from the two headers only a browser sets and no page can
//! forge (`Origin`, `Sec-Fetch-Site` are forbidden header names):
//!
//! | request | verdict |
//! |---|---|
//! | neither header | allowed: not a browser (curl, a mobile app, a server), which holds the cookie anyway |
//! | `Sec-Fetch-Site: cross-site` | refused, whatever `Origin` says |
//! | `Sec-Fetch-Site` other than `same-origin`, `same-site`, `cross-site`, `none`, or sent twice | refused (malformed) |
//! | `Origin` sent twice, `null`, unparsable, or not in canonical form (upper case, userinfo, a path, a default port spelled out, a trailing dot that names another host) | refused |
//! | `Origin` not the deployment's own (`STOCKADE_PUBLIC_URL`), nor `<tenant slug>.<STOCKADE_TENANT_DOMAIN>` with the public URL's scheme and port | refused |
//! | `Sec-Fetch-Site: same-site` without `Origin` | refused: browsers send `Origin` on every POST, and a sibling cannot be judged without it |
//! | otherwise (an allowed `Origin`; `same-origin` or `none` without `Origin`) | allowed |
//!
//! A refusal is 403 `auth.cross_site_refused` before the handler runs, so it
//! changes nothing (the refresh token is neither rotated nor revoked, and no
//! cookie is set or cleared).

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};

use super::auth_state::AuthState;
use super::error::ApiError;
use crate::config::Config;

/// The stable code of the refusal.
pub const CROSS_SITE_REFUSED: &str = "auth.cross_site_refused";

const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Admits a request only from the deployment's own origins (see the module
/// documentation); 403 `auth.cross_site_refused` otherwise.
#[derive(Debug, Clone, Copy)]
pub struct SameOrigin;

impl<S> FromRequestParts<S> for SameOrigin
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let origins = Origins::of(&AuthState::from_ref(state).config);
        match judge(&parts.headers, &origins) {
            Ok(()) => Ok(Self),
            Err(refusal) => {
                tracing::warn!(reason = refusal.as_str(), path = %parts.uri.path(),
                    "cross-site request refused");
                Err(ApiError::new(StatusCode::FORBIDDEN, CROSS_SITE_REFUSED)
                    .with_detail("this endpoint answers only the deployment's own pages"))
            }
        }
    }
}

/// Why a request was refused (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    CrossSite,
    MalformedFetchSite,
    MalformedOrigin,
    ForeignOrigin,
    SameSiteWithoutOrigin,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrossSite => "cross_site",
            Self::MalformedFetchSite => "malformed_sec_fetch_site",
            Self::MalformedOrigin => "malformed_origin",
            Self::ForeignOrigin => "foreign_origin",
            Self::SameSiteWithoutOrigin => "same_site_without_origin",
        }
    }
}

/// The deployment's own origins.
#[derive(Debug, Clone)]
pub struct Origins {
    /// The public URL's origin, serialised (`https://app.example.com`).
    public: Option<String>,
    /// Tenant subdomains: `<scheme>://<slug>.<domain>[:port]`.
    tenants: Option<TenantOrigins>,
}

#[derive(Debug, Clone)]
struct TenantOrigins {
    scheme: String,
    port: Option<u16>,
    /// `.example.com`, lower case.
    suffix: String,
}

impl Origins {
    pub fn of(config: &Config) -> Self {
        let public = url::Url::parse(&config.base_url()).ok();
        let serialised = public
            .as_ref()
            .map(|u| u.origin())
            .filter(url::Origin::is_tuple)
            .map(|o| o.ascii_serialization());
        let tenants = match (&public, &config.tenant_domain) {
            (Some(url), Some(domain)) => Some(TenantOrigins {
                scheme: url.scheme().to_owned(),
                port: url.port_or_known_default(),
                suffix: format!(".{}", domain.to_ascii_lowercase()),
            }),
            _ => None,
        };
        Self {
            public: serialised,
            tenants,
        }
    }

    /// Whether `raw`, an `Origin` header value, is exactly one of ours.
    pub fn admits(&self, raw: &str) -> bool {
        let Ok(url) = url::Url::parse(raw) else {
            return false;
        };
        let origin = url.origin();
        // Only the canonical serialisation a browser sends: anything else
        // (case, userinfo, path, default port, `null`) is not an origin.
        if !origin.is_tuple() || origin.ascii_serialization() != raw {
            return false;
        }
        if self.public.as_deref() == Some(raw) {
            return true;
        }
        let Some(t) = &self.tenants else {
            return false;
        };
        let Some(url::Host::Domain(host)) = url.host() else {
            return false;
        };
        url.scheme() == t.scheme
            && url.port_or_known_default() == t.port
            && host
                .strip_suffix(t.suffix.as_str())
                .is_some_and(|label| crate::tenancy::Slug::parse(label).is_ok())
    }
}

/// The rule (see the module documentation).
pub fn judge(headers: &HeaderMap, origins: &Origins) -> Result<(), Refusal> {
    let fetch_site = single(headers, &SEC_FETCH_SITE).map_err(|()| Refusal::MalformedFetchSite)?;
    let same_site = match fetch_site {
        None | Some("same-origin" | "none") => false,
        Some("same-site") => true,
        Some("cross-site") => return Err(Refusal::CrossSite),
        Some(_) => return Err(Refusal::MalformedFetchSite),
    };
    match single(headers, &header::ORIGIN).map_err(|()| Refusal::MalformedOrigin)? {
        Some(origin) if origins.admits(origin) => Ok(()),
        Some("null") => Err(Refusal::MalformedOrigin),
        Some(_) => Err(Refusal::ForeignOrigin),
        None if same_site => Err(Refusal::SameSiteWithoutOrigin),
        None => Ok(()),
    }
}

/// The header's one value; `Err` when it is sent several times or is not
/// visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    first.to_str().map(Some).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn origins(public: &str, tenant_domain: Option<&str>) -> Origins {
        let mut env = std::collections::BTreeMap::new();
        env.insert("STOCKADE_PUBLIC_URL".to_owned(), public.to_owned());
        if let Some(d) = tenant_domain {
            env.insert("STOCKADE_TENANT_DOMAIN".to_owned(), d.to_owned());
        }
        Origins::of(&Config::load(None, &env).unwrap())
    }

    /// Header name and raw value pairs, in order.
    type Pairs<'a> = &'a [(&'a str, &'a [u8])];

    fn headers(pairs: Pairs<'_>) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_our_canonical_origins_are_admitted() {
        let o = origins(
            "https://app.example.test/base/",
            Some("tenants.example.test"),
        );
        for ok in [
            "https://app.example.test",
            "https://acme.tenants.example.test",
            "https://a-1.tenants.example.test",
        ] {
            assert!(o.admits(ok), "{ok}");
        }
        for bad in [
            "null",
            "",
            "app.example.test",
            "http://app.example.test",
            "https://app.example.test:8443",
            "https://app.example.test:443",
            "https://app.example.test/",
            "https://APP.example.test",
            "https://app.example.test.",
            "https://user@app.example.test",
            "https://app.example.test.evil.test",
            "https://evilapp.example.test",
            "https://app-example.test",
            "https://tenants.example.test",
            "https://.tenants.example.test",
            "https://a.b.tenants.example.test",
            "https://acme.tenants.example.test.",
            "https://acme.tenants.example.test.evil.test",
            "http://acme.tenants.example.test",
            "https://www.tenants.example.test",
            "https://app.example.test, https://evil.test",
            "https://app.example.test https://evil.test",
            "file:///etc/passwd",
            "https://[::1]",
        ] {
            assert!(!o.admits(bad), "{bad}");
        }
        // Without a tenant domain, subdomains are foreign.
        let plain = origins("https://app.example.test", None);
        assert!(!plain.admits("https://acme.tenants.example.test"));
        assert!(plain.admits("https://app.example.test"));
    }

    #[test]
    fn the_rule_for_each_header_shape() {
        let o = origins("https://app.example.test", Some("tenants.example.test"));
        let ours: &[u8] = b"https://app.example.test";
        let tenant: &[u8] = b"https://acme.tenants.example.test";
        let allowed: &[Pairs<'_>] = &[
            &[],
            &[("origin", ours)],
            &[("origin", tenant)],
            &[("sec-fetch-site", b"same-origin")],
            &[("sec-fetch-site", b"none")],
            &[("sec-fetch-site", b"same-origin"), ("origin", ours)],
            &[("sec-fetch-site", b"same-site"), ("origin", tenant)],
        ];
        for pairs in allowed {
            assert_eq!(judge(&headers(pairs), &o), Ok(()), "{pairs:?}");
        }
        let refused: &[(Pairs<'_>, Refusal)] = &[
            (&[("sec-fetch-site", b"cross-site")], Refusal::CrossSite),
            (
                &[("sec-fetch-site", b"cross-site"), ("origin", ours)],
                Refusal::CrossSite,
            ),
            (
                &[("sec-fetch-site", b"Cross-Site")],
                Refusal::MalformedFetchSite,
            ),
            (&[("sec-fetch-site", b"")], Refusal::MalformedFetchSite),
            (
                &[
                    ("sec-fetch-site", b"same-origin"),
                    ("sec-fetch-site", b"same-origin"),
                ],
                Refusal::MalformedFetchSite,
            ),
            (
                &[("sec-fetch-site", b"same-site")],
                Refusal::SameSiteWithoutOrigin,
            ),
            (
                &[
                    ("sec-fetch-site", b"same-site"),
                    ("origin", b"https://evil.example.test"),
                ],
                Refusal::ForeignOrigin,
            ),
            (&[("origin", b"null")], Refusal::MalformedOrigin),
            (&[("origin", b"https://evil.test")], Refusal::ForeignOrigin),
            (
                &[("origin", ours), ("origin", ours)],
                Refusal::MalformedOrigin,
            ),
            (
                &[("origin", ours), ("origin", b"https://evil.test")],
                Refusal::MalformedOrigin,
            ),
            (
                &[("origin", b"https://app.example.test\xff")],
                Refusal::MalformedOrigin,
            ),
            (
                &[
                    ("sec-fetch-site", b"same-origin"),
                    ("origin", b"https://evil.test"),
                ],
                Refusal::ForeignOrigin,
            ),
        ];
        for (pairs, why) in refused {
            assert_eq!(judge(&headers(pairs), &o), Err(*why), "{pairs:?}");
        }
    }
}
