//! The listener settings of issue #20: the TLS certificate and key files,
//! whether a proxy in front terminates TLS, the plain-HTTP redirector and
//! its ACME challenge directory, and the header read timeout. Parsed and
//! bounded here; the files are read by `http::tls`, the production rule
//! (no plain HTTP off loopback unless behind a TLS proxy) is
//! [`Listeners::production_problems`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::parse::parse_bool;
use super::{ConfigError, Raw, invalid};

/// `STOCKADE_HEADER_READ_TIMEOUT_SECS` by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The header read timeout is seconds from 1 to this.
pub(super) const MAX_HEADER_READ_TIMEOUT_SECS: u64 = 120;

/// The certificate chain and private key, PEM (`STOCKADE_TLS_CERT_FILE`,
/// `STOCKADE_TLS_KEY_FILE`): given together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The listener settings, as [`super::Config`] holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listeners {
    pub(super) header_read_timeout: Duration,
    pub(super) tls: Option<TlsFiles>,
    pub(super) behind_tls_proxy: bool,
    pub(super) http_redirect_listen: Option<SocketAddr>,
    pub(super) acme_challenge_dir: Option<PathBuf>,
}

pub(super) fn parse(raw: &Raw, public_url: Option<&Url>) -> Result<Listeners, ConfigError> {
    let header_read_timeout = match raw.get("header_read_timeout_secs") {
        None => DEFAULT_HEADER_READ_TIMEOUT,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_HEADER_READ_TIMEOUT_SECS).contains(n))
            .map(Duration::from_secs)
            .ok_or_else(|| {
                invalid(
                    "header_read_timeout_secs",
                    s,
                    &format!("seconds from 1 to {MAX_HEADER_READ_TIMEOUT_SECS}"),
                )
            })?,
    };
    let tls = match (raw.get("tls_cert_file"), raw.get("tls_key_file")) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
        }),
        (Some(_), None) => return Err(alone("STOCKADE_TLS_CERT_FILE", "STOCKADE_TLS_KEY_FILE")),
        (None, Some(_)) => return Err(alone("STOCKADE_TLS_KEY_FILE", "STOCKADE_TLS_CERT_FILE")),
    };
    let behind_tls_proxy = parse_bool(raw, "behind_tls_proxy")?.unwrap_or(false);
    let http_redirect_listen = match raw.get("http_redirect_listen") {
        None => None,
        Some(s) => Some(
            s.parse::<SocketAddr>()
                .map_err(|_| invalid("http_redirect_listen", s, "an address like 0.0.0.0:80"))?,
        ),
    };
    let acme_challenge_dir = raw.get("acme_challenge_dir").map(PathBuf::from);
    // Each of these redirects to the public URL: without one it has nowhere to go.
    for (set, name) in [
        (
            http_redirect_listen.is_some(),
            "STOCKADE_HTTP_REDIRECT_LISTEN",
        ),
        (behind_tls_proxy, "STOCKADE_BEHIND_TLS_PROXY"),
    ] {
        if set && public_url.is_none() {
            return Err(ConfigError::Invalid {
                name: name.to_owned(),
                reason: "needs STOCKADE_PUBLIC_URL, the only place it redirects to".to_owned(),
            });
        }
    }
    if acme_challenge_dir.is_some() && http_redirect_listen.is_none() {
        return Err(ConfigError::Invalid {
            name: "STOCKADE_ACME_CHALLENGE_DIR".to_owned(),
            reason:
                "is served only by the plain-HTTP redirector: set STOCKADE_HTTP_REDIRECT_LISTEN too"
                    .to_owned(),
        });
    }
    Ok(Listeners {
        header_read_timeout,
        tls,
        behind_tls_proxy,
        http_redirect_listen,
        acme_challenge_dir,
    })
}

fn alone(given: &str, missing: &str) -> ConfigError {
    ConfigError::Invalid {
        name: given.to_owned(),
        reason: format!("is set without {missing}: give both (TLS) or neither (plain HTTP)"),
    }
}

impl super::Config {
    /// Production listens in plain HTTP only on loopback (a proxy on the
    /// same machine), or when it is told a TLS proxy is in front, whose
    /// `X-Forwarded-Proto` is believed only from `STOCKADE_TRUSTED_PROXIES`.
    pub(super) fn listener_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.tls.is_none() && !self.behind_tls_proxy && !self.listen.ip().is_loopback() {
            problems.push(format!(
                "STOCKADE_LISTEN={} is plain HTTP off loopback: production serves HTTPS itself (STOCKADE_TLS_CERT_FILE and STOCKADE_TLS_KEY_FILE), or says STOCKADE_BEHIND_TLS_PROXY=true when a proxy in front terminates TLS",
                self.listen
            ));
        }
        if self.behind_tls_proxy && self.trusted_proxies.is_empty() {
            problems.push(
                "STOCKADE_BEHIND_TLS_PROXY=true needs STOCKADE_TRUSTED_PROXIES to list the proxy: its X-Forwarded-Proto is believed only from there"
                    .to_owned(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::load_pairs as load;

    #[test]
    fn listener_settings_parse_and_are_bounded() {
        let cfg = load(&[]).unwrap();
        assert_eq!(cfg.header_read_timeout, Duration::from_secs(10));
        assert_eq!(cfg.tls, None);
        assert!(!cfg.behind_tls_proxy);
        assert_eq!(cfg.http_redirect_listen, None);
        let cfg = load(&[
            ("STOCKADE_HEADER_READ_TIMEOUT_SECS", "3"),
            ("STOCKADE_TLS_CERT_FILE", "/etc/le/fullchain.pem"),
            ("STOCKADE_TLS_KEY_FILE", "/etc/le/privkey.pem"),
            ("STOCKADE_PUBLIC_URL", "https://app.example.com"),
            ("STOCKADE_HTTP_REDIRECT_LISTEN", "0.0.0.0:80"),
            ("STOCKADE_ACME_CHALLENGE_DIR", "/var/www/acme"),
        ])
        .unwrap();
        assert_eq!(cfg.header_read_timeout, Duration::from_secs(3));
        assert_eq!(
            cfg.tls,
            Some(TlsFiles {
                cert_file: "/etc/le/fullchain.pem".into(),
                key_file: "/etc/le/privkey.pem".into()
            })
        );
        assert_eq!(
            cfg.http_redirect_listen,
            Some("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(cfg.acme_challenge_dir, Some("/var/www/acme".into()));
        for bad in ["0", "121", "-1", "ten"] {
            let err = load(&[("STOCKADE_HEADER_READ_TIMEOUT_SECS", bad)]).unwrap_err();
            assert!(err.to_string().contains("seconds from 1 to 120"), "{err}");
        }
        let err = load(&[("STOCKADE_HTTP_REDIRECT_LISTEN", "port 80")]).unwrap_err();
        assert!(err.to_string().contains("0.0.0.0:80"), "{err}");
    }

    #[test]
    fn half_a_pair_and_redirects_to_nowhere_are_refused() {
        let err = load(&[("STOCKADE_TLS_CERT_FILE", "/c.pem")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "STOCKADE_TLS_CERT_FILE: is set without STOCKADE_TLS_KEY_FILE: give both (TLS) or neither (plain HTTP)"
        );
        let err = load(&[("STOCKADE_TLS_KEY_FILE", "/k.pem")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("STOCKADE_TLS_KEY_FILE: is set without"),
            "{err}"
        );
        for name in ["STOCKADE_HTTP_REDIRECT_LISTEN", "STOCKADE_BEHIND_TLS_PROXY"] {
            let value = if name.ends_with("LISTEN") {
                "0.0.0.0:80"
            } else {
                "true"
            };
            let err = load(&[(name, value)]).unwrap_err();
            assert!(
                err.to_string().contains("needs STOCKADE_PUBLIC_URL"),
                "{err}"
            );
        }
        let err = load(&[("STOCKADE_ACME_CHALLENGE_DIR", "/var/www/acme")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("set STOCKADE_HTTP_REDIRECT_LISTEN"),
            "{err}"
        );
    }

    #[test]
    fn production_refuses_plain_http_off_loopback() {
        let base = [
            ("STOCKADE_PROFILE", "production"),
            ("STOCKADE_PUBLIC_URL", "https://app.example.com"),
            ("STOCKADE_MASTER_KEY", "x"),
            ("STOCKADE_SIGNING_KEY_FILE", "/k.pem"),
            ("STOCKADE_TRUSTED_PROXIES", "none"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            load(&[base.as_slice(), extra].concat())
                .unwrap()
                .production_problems()
        };
        // Loopback (a proxy on the same machine) and [::1] are fine.
        assert!(with(&[]).is_empty());
        assert!(with(&[("STOCKADE_LISTEN", "[::1]:8080")]).is_empty());
        for listen in ["0.0.0.0:8080", "10.1.2.3:8080", "[::]:8080"] {
            let problems = with(&[("STOCKADE_LISTEN", listen)]);
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with(&format!(
                    "STOCKADE_LISTEN={listen} is plain HTTP off loopback"
                )),
                "{problems:?}"
            );
        }
        // TLS on the listener itself.
        let tls = with(&[
            ("STOCKADE_LISTEN", "0.0.0.0:443"),
            ("STOCKADE_TLS_CERT_FILE", "/c.pem"),
            ("STOCKADE_TLS_KEY_FILE", "/k.pem"),
        ]);
        assert!(tls.is_empty(), "{tls:?}");
        // Behind a TLS proxy: the proxy must be trusted, or its
        // X-Forwarded-Proto would never be believed.
        let untrusted = with(&[
            ("STOCKADE_LISTEN", "0.0.0.0:8080"),
            ("STOCKADE_BEHIND_TLS_PROXY", "true"),
        ]);
        assert_eq!(untrusted.len(), 1, "{untrusted:?}");
        assert!(untrusted[0].contains("needs STOCKADE_TRUSTED_PROXIES"));
        let trusted = load(
            &[
                base.as_slice(),
                &[
                    ("STOCKADE_LISTEN", "0.0.0.0:8080"),
                    ("STOCKADE_BEHIND_TLS_PROXY", "true"),
                    ("STOCKADE_TRUSTED_PROXIES", "10.0.0.0/8"),
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert!(trusted.production_problems().is_empty());
    }
}
