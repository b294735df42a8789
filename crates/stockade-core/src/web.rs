//! Where a browser may come from and be sent to (SPEC §2.14): the exact web
//! origins of the CORS allowlist, and the redirect allowlist every link or
//! redirect Stockade issues must pass.
//!
//! An origin is written once, canonically (`https://app.example.com`,
//! `http://localhost:3000`): scheme, host, and a port only when it is not
//! the scheme's default. Comparing canonical strings is then exact.
//!
//! A redirect target is refused unless **all** of these hold, checked on the
//! raw text before any parser may "fix" it (the tricks a parser forgives are
//! how open redirects happen):
//! - at most [`MAX_REDIRECT_LEN`] bytes, no control character, no space, no
//!   backslash (`https:\\evil`, `/\evil` are URLs to a browser);
//! - it starts with `https://` (or `http://`, which only a configured
//!   `http` entry can match): so `//evil.example`, `https:evil.example`,
//!   `javascript:` and relative paths are refused;
//! - no userinfo (`https://app.example.com@evil.example`), no fragment (the
//!   link's token travels in our own fragment);
//! - its origin equals an allowed entry's origin, and its (normalised) path
//!   is the entry's path or below it on a segment boundary.

use std::fmt;

use url::Url;

/// The longest redirect target accepted, in bytes.
pub const MAX_REDIRECT_LEN: usize = 2048;

/// A canonical web origin: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebOrigin(String);

impl WebOrigin {
    /// Parses an origin as an operator writes it in configuration. Refuses
    /// `*`, `null`, anything but `http`/`https`, userinfo, a path other
    /// than `/`, a query or a fragment, and a spelling that is not the
    /// canonical one (upper case, a default port spelled out) so that what
    /// is configured is exactly what browsers send in `Origin`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.strip_suffix('/').unwrap_or(text);
        if trimmed.contains('*') || trimmed == "null" {
            return Err("must be an exact origin, never a wildcard or null".to_owned());
        }
        let url = Url::parse(trimmed).map_err(|_| "not a URL".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be http:// or https://".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".to_owned());
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err("an origin has no path, query or fragment".to_owned());
        }
        let canonical = url.origin().ascii_serialization();
        if canonical != trimmed {
            return Err(format!("write it canonically, as {canonical}"));
        }
        Ok(Self(canonical))
    }

    /// The origin of an absolute `http(s)` URL.
    pub fn of(url: &Url) -> Option<Self> {
        match url.origin() {
            origin @ url::Origin::Tuple(..) => Some(Self(origin.ascii_serialization())),
            url::Origin::Opaque(_) => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// Whether the host is a loopback name or address (`localhost`,
    /// `127.0.0.0/8`, `[::1]`).
    pub fn is_loopback(&self) -> bool {
        let Ok(url) = Url::parse(&self.0) else {
            return false;
        };
        match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
    }
}

impl fmt::Display for WebOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One allowed redirect destination: an origin and the path under which
/// targets may lie (`/` for the whole origin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectEntry {
    origin: WebOrigin,
    /// Normalised, starts with `/`.
    path: String,
}

impl RedirectEntry {
    /// Parses an entry as configured: an absolute `http(s)` URL with an
    /// optional path (`https://app.example.com/auth/`), no userinfo, query
    /// or fragment.
    pub fn parse(text: &str) -> Result<Self, String> {
        raw_checks(text)?;
        if text.contains('*') {
            return Err("must be exact, never a wildcard".to_owned());
        }
        let url = Url::parse(text).map_err(|_| "not a URL".to_owned())?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".to_owned());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not carry a query or fragment".to_owned());
        }
        let origin = WebOrigin::of(&url).ok_or_else(|| "not an http(s) URL".to_owned())?;
        Ok(Self {
            origin,
            path: url.path().to_owned(),
        })
    }

    /// The entry's origin.
    pub fn origin(&self) -> &WebOrigin {
        &self.origin
    }

    fn admits(&self, url: &Url) -> bool {
        if WebOrigin::of(url).as_ref() != Some(&self.origin) {
            return false;
        }
        let path = url.path();
        path == self.path
            || (path.starts_with(&self.path)
                && (self.path.ends_with('/') || path[self.path.len()..].starts_with('/')))
    }
}

/// Why a redirect target was refused (for the log; the client sees one
/// code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectRefusal {
    /// Too long, a control character, a space or a backslash.
    Malformed,
    /// Not `https://…` or `http://…` spelled out (scheme-relative,
    /// `https:host`, another scheme, a relative path).
    NotAbsolute,
    /// A user name or password before the host.
    Userinfo,
    /// A `#fragment`.
    Fragment,
    /// Not under any allowed entry.
    NotAllowed,
}

impl RedirectRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::NotAbsolute => "not_absolute",
            Self::Userinfo => "userinfo",
            Self::Fragment => "fragment",
            Self::NotAllowed => "not_allowed",
        }
    }
}

/// The destinations links and redirects may point to: the deployment's
/// public URL and the configured entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedirectAllowlist {
    entries: Vec<RedirectEntry>,
}

impl RedirectAllowlist {
    pub fn new(entries: Vec<RedirectEntry>) -> Self {
        Self { entries }
    }

    pub fn entries(&self) -> &[RedirectEntry] {
        &self.entries
    }

    /// The target, parsed, when it may be used (see the module
    /// documentation for every rule).
    pub fn check(&self, target: &str) -> Result<Url, RedirectRefusal> {
        raw_checks(target).map_err(|_| RedirectRefusal::Malformed)?;
        if !(target.starts_with("https://") || target.starts_with("http://")) {
            return Err(RedirectRefusal::NotAbsolute);
        }
        let url = Url::parse(target).map_err(|_| RedirectRefusal::Malformed)?;
        // Percent-encoded or not, `@` before the host is userinfo.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(RedirectRefusal::Userinfo);
        }
        if url.fragment().is_some() {
            return Err(RedirectRefusal::Fragment);
        }
        if self.entries.iter().any(|e| e.admits(&url)) {
            Ok(url)
        } else {
            Err(RedirectRefusal::NotAllowed)
        }
    }
}

fn raw_checks(text: &str) -> Result<(), String> {
    if text.len() > MAX_REDIRECT_LEN {
        return Err(format!("longer than {MAX_REDIRECT_LEN} bytes"));
    }
    if text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err("control characters, spaces and backslashes are not allowed".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> RedirectAllowlist {
        RedirectAllowlist::new(
            entries
                .iter()
                .map(|e| RedirectEntry::parse(e).unwrap())
                .collect(),
        )
    }

    #[test]
    fn origins_are_exact_and_canonical() {
        for ok in [
            "https://app.example.com",
            "https://app.example.com/",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            assert!(WebOrigin::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "*",
            "null",
            "https://App.example.com",
            "https://app.example.com:443",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "https://app.example.com?x",
            "ftp://app.example.com",
            "app.example.com",
            "https://*.example.com",
            "",
        ] {
            assert!(WebOrigin::parse(bad).is_err(), "{bad}");
        }
        let o = WebOrigin::parse("http://127.0.0.1:9").unwrap();
        assert!(o.is_loopback() && !o.is_https());
        assert!(
            !WebOrigin::parse("https://example.com")
                .unwrap()
                .is_loopback()
        );
    }

    #[test]
    fn allowed_targets_pass_with_their_path_and_query() {
        let l = list(&["https://app.example.com/auth/", "https://other.example"]);
        for ok in [
            "https://app.example.com/auth/",
            "https://app.example.com/auth/reset?lang=fr",
            "https://other.example/",
            "https://other.example/anything/at/all",
            // The same host spelled in upper case is the same host.
            "https://APP.example.com/auth/x",
        ] {
            assert!(l.check(ok).is_ok(), "{ok}");
        }
    }

    /// The open-redirect tricks, each refused with its reason.
    #[test]
    fn hostile_targets_are_refused() {
        use RedirectRefusal::*;
        let l = list(&["https://app.example.com/auth", "http://localhost:3000"]);
        let cases: &[(&str, RedirectRefusal)] = &[
            ("//evil.example/auth", NotAbsolute),
            ("https:evil.example", NotAbsolute),
            ("https:/evil.example", NotAbsolute),
            ("/auth/reset", NotAbsolute),
            ("javascript:alert(1)", NotAbsolute),
            ("HTTPS://app.example.com/auth", NotAbsolute),
            (" https://app.example.com/auth", Malformed),
            ("https://app.example.com/auth\r\nLocation: x", Malformed),
            ("https:\\\\evil.example", Malformed),
            ("https://app.example.com\\@evil.example/auth", Malformed),
            ("https://app.example.com/auth\u{0}", Malformed),
            ("https://app.example.com@evil.example/auth", Userinfo),
            ("https://app.example.com%40evil.example/auth", Malformed),
            ("https://user:pw@app.example.com/auth", Userinfo),
            ("https://evil.example#@app.example.com/auth", Fragment),
            ("https://app.example.com/auth#x", Fragment),
            ("https://app.example.com.evil.example/auth", NotAllowed),
            (
                "https://evil.example/https://app.example.com/auth",
                NotAllowed,
            ),
            ("http://app.example.com/auth", NotAllowed),
            ("https://app.example.com:8443/auth", NotAllowed),
            ("https://app.example.com/authority", NotAllowed),
            ("https://app.example.com/auth/../admin", NotAllowed),
            ("https://app.example.com/auth/%2e%2e/admin", NotAllowed),
            ("https://app.example.com/", NotAllowed),
            // Cyrillic а: another host (xn--…).
            ("https://\u{0430}pp.example.com/auth", NotAllowed),
            ("https://localhost:3001/", NotAllowed),
        ];
        for (target, why) in cases {
            assert_eq!(l.check(target).err(), Some(*why), "{target:?}");
        }
        let long = format!("https://app.example.com/auth/{}", "a".repeat(3000));
        assert_eq!(l.check(&long).err(), Some(Malformed));
        // The exact entry path, and below it, pass.
        assert!(l.check("https://app.example.com/auth").is_ok());
        assert!(l.check("https://app.example.com/auth/x").is_ok());
        assert!(l.check("http://localhost:3000/cb").is_ok());
    }

    #[test]
    fn an_empty_list_admits_nothing() {
        assert_eq!(
            RedirectAllowlist::default()
                .check("https://app.example.com/")
                .err(),
            Some(RedirectRefusal::NotAllowed)
        );
    }

    #[test]
    fn entries_refuse_userinfo_queries_and_fragments() {
        for bad in [
            "https://u@app.example.com/",
            "https://app.example.com/?q",
            "https://app.example.com/#f",
            "//app.example.com",
            "https://*.example.com/",
            "not a url",
        ] {
            assert!(RedirectEntry::parse(bad).is_err(), "{bad}");
        }
    }
}
