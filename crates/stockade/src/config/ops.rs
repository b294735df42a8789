//! The operations settings (issue #20 items 5 and 6): the admin listener
//! that serves `/metrics` (`STOCKADE_ADMIN_LISTEN`, never the public
//! listener's address; `off` disables it) and the alert thresholds
//! (`STOCKADE_ALERT_*`, each bounded, with the defaults of
//! `stockade_core::alerts::Settings`). See `docs/metrics.md`.

use std::net::SocketAddr;

use chrono::Duration;
use stockade_core::alerts::Settings;

use super::parse::{invalid, parse_bool};
use super::{Config, ConfigError, Raw};

/// `STOCKADE_ADMIN_LISTEN` by default: loopback, Prometheus's exporter port.
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";

/// What this file parses: `(admin_listen, admin_allow_remote, alerts)`.
pub(super) type Parsed = (Option<SocketAddr>, bool, Settings);

pub(super) fn parse(raw: &Raw, listen: SocketAddr) -> Result<Parsed, ConfigError> {
    let admin = match raw.get("admin_listen") {
        Some(s) if s.trim().eq_ignore_ascii_case("off") => None,
        value => {
            let text = value.unwrap_or(DEFAULT_ADMIN_LISTEN);
            let addr: SocketAddr = text.trim().parse().map_err(|_| {
                invalid(
                    "admin_listen",
                    text,
                    "an address like 127.0.0.1:9464, or off",
                )
            })?;
            if clashes(addr, listen) {
                return Err(ConfigError::Invalid {
                    name: "STOCKADE_ADMIN_LISTEN".to_owned(),
                    reason: format!(
                        "`{addr}` is the public listener's address (STOCKADE_LISTEN={listen}): /metrics is served only on a separate admin address, or set it to off"
                    ),
                });
            }
            Some(addr)
        }
    };
    let allow_remote = parse_bool(raw, "admin_allow_remote")?.unwrap_or(false);
    let d = Settings::default();
    let alerts = Settings {
        window: Duration::seconds(number(raw, "alert_window_secs", 300, 60, 3600)?),
        server_error_percent: percent(raw, "alert_5xx_percent", d.server_error_percent)?,
        server_error_min_requests: count(
            raw,
            "alert_5xx_min_requests",
            d.server_error_min_requests,
        )?,
        client_error_factor: small(raw, "alert_4xx_spike_factor", d.client_error_factor, 1000)?,
        client_error_min: count(raw, "alert_4xx_spike_min", d.client_error_min)?,
        baseline_windows: small(raw, "alert_4xx_baseline_windows", d.baseline_windows, 288)?,
        rate_limit_hits: count(raw, "alert_rate_limit_hits", d.rate_limit_hits)?,
        webhook_failure_percent: percent(
            raw,
            "alert_webhook_failure_percent",
            d.webhook_failure_percent,
        )?,
        email_failure_percent: percent(
            raw,
            "alert_email_failure_percent",
            d.email_failure_percent,
        )?,
        delivery_min_attempts: count(raw, "alert_delivery_min_attempts", d.delivery_min_attempts)?,
        backup_max_age: Duration::hours(number(raw, "alert_backup_max_age_hours", 26, 1, 720)?),
    };
    Ok((admin, allow_remote, alerts))
}

/// Whether two listening addresses would be one socket: the same port
/// (not 0, which picks a free one) on the same address or on a wildcard.
fn clashes(admin: SocketAddr, listen: SocketAddr) -> bool {
    admin.port() != 0
        && admin.port() == listen.port()
        && (admin.ip() == listen.ip()
            || admin.ip().is_unspecified()
            || listen.ip().is_unspecified())
}

/// A whole number from `min` to `max`, or `default` when unset.
fn number(raw: &Raw, name: &str, default: i64, min: i64, max: i64) -> Result<i64, ConfigError> {
    match raw.get(name) {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| invalid(name, s, &format!("a whole number from {min} to {max}"))),
    }
}

fn percent(raw: &Raw, name: &str, default: u32) -> Result<u32, ConfigError> {
    small(raw, name, default, 100)
}

fn small(raw: &Raw, name: &str, default: u32, max: u32) -> Result<u32, ConfigError> {
    let n = number(raw, name, i64::from(default), 1, i64::from(max))?;
    u32::try_from(n).map_err(|_| invalid(name, &n.to_string(), "a smaller number"))
}

fn count(raw: &Raw, name: &str, default: u64) -> Result<u64, ConfigError> {
    let n = number(
        raw,
        name,
        i64::try_from(default).unwrap_or(i64::MAX),
        1,
        10_000_000,
    )?;
    u64::try_from(n).map_err(|_| invalid(name, &n.to_string(), "a smaller number"))
}

impl Config {
    /// The production refusal of a non-loopback admin listener without
    /// `STOCKADE_ADMIN_ALLOW_REMOTE=true` (`config/production.rs`).
    pub(super) fn admin_problem(&self) -> Option<String> {
        let addr = self.admin_listen?;
        (!addr.ip().is_loopback() && !self.admin_allow_remote).then(|| {
            format!(
                "STOCKADE_ADMIN_LISTEN={addr} is not a loopback address: /metrics would be reachable from the network; keep it on 127.0.0.1 (scrape through a local agent or tunnel), or set STOCKADE_ADMIN_ALLOW_REMOTE=true when a firewall restricts that port to the scraper"
            )
        })
    }
}

#[cfg(test)]
mod tests {

    use crate::config::load_pairs as load;

    #[test]
    fn admin_listener_defaults_to_loopback_and_can_be_off() {
        let cfg = load(&[]).unwrap();
        assert_eq!(cfg.admin_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(!cfg.admin_allow_remote);
        for off in ["off", "OFF", " off "] {
            assert_eq!(
                load(&[("STOCKADE_ADMIN_LISTEN", off)])
                    .unwrap()
                    .admin_listen,
                None
            );
        }
        let cfg = load(&[("STOCKADE_ADMIN_LISTEN", "127.0.0.1:0")]).unwrap();
        assert_eq!(cfg.admin_listen.unwrap().port(), 0);
        for bad in ["9464", "localhost:9464", "127.0.0.1", "on"] {
            let err = load(&[("STOCKADE_ADMIN_LISTEN", bad)]).unwrap_err();
            assert!(
                err.to_string().starts_with("STOCKADE_ADMIN_LISTEN: "),
                "{err}"
            );
        }
    }

    #[test]
    fn the_admin_listener_is_never_the_public_one() {
        for (listen, admin) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:9464", "0.0.0.0:9464"),
            ("[::]:8080", "[::1]:8080"),
        ] {
            let err = load(&[
                ("STOCKADE_LISTEN", listen),
                ("STOCKADE_ADMIN_LISTEN", admin),
            ])
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("public listener's address"),
                "{listen} {admin}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        // The default admin address against a public listener on its port.
        assert!(load(&[("STOCKADE_LISTEN", "127.0.0.1:9464")]).is_err());
        // Other ports, other addresses, and port 0 (a free one each) are fine.
        for (listen, admin) in [
            ("127.0.0.1:8080", "127.0.0.1:8081"),
            ("10.0.0.5:8080", "127.0.0.1:8080"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ] {
            assert!(
                load(&[
                    ("STOCKADE_LISTEN", listen),
                    ("STOCKADE_ADMIN_LISTEN", admin)
                ])
                .is_ok(),
                "{listen} {admin}"
            );
        }
    }

    #[test]
    fn production_refuses_a_remote_admin_listener_unless_allowed() {
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
        assert!(with(&[]).is_empty());
        assert!(with(&[("STOCKADE_ADMIN_LISTEN", "[::1]:9464")]).is_empty());
        assert!(with(&[("STOCKADE_ADMIN_LISTEN", "off")]).is_empty());
        let problems = with(&[("STOCKADE_ADMIN_LISTEN", "0.0.0.0:9464")]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("STOCKADE_ADMIN_ALLOW_REMOTE"),
            "{problems:?}"
        );
        assert!(
            with(&[
                ("STOCKADE_ADMIN_LISTEN", "10.1.2.3:9464"),
                ("STOCKADE_ADMIN_ALLOW_REMOTE", "true"),
            ])
            .is_empty()
        );
        // Development does not refuse it.
        let dev = load(&[("STOCKADE_ADMIN_LISTEN", "0.0.0.0:9464")]).unwrap();
        assert!(dev.admin_problem().is_some());
    }

    #[test]
    fn alert_thresholds_parse_with_bounds_and_defaults() {
        let cfg = load(&[]).unwrap();
        assert_eq!(cfg.alerts, stockade_core::alerts::Settings::default());
        let cfg = load(&[
            ("STOCKADE_ALERT_WINDOW_SECS", "60"),
            ("STOCKADE_ALERT_5XX_PERCENT", "20"),
            ("STOCKADE_ALERT_5XX_MIN_REQUESTS", "3"),
            ("STOCKADE_ALERT_4XX_SPIKE_FACTOR", "10"),
            ("STOCKADE_ALERT_4XX_SPIKE_MIN", "7"),
            ("STOCKADE_ALERT_4XX_BASELINE_WINDOWS", "24"),
            ("STOCKADE_ALERT_RATE_LIMIT_HITS", "5"),
            ("STOCKADE_ALERT_WEBHOOK_FAILURE_PERCENT", "100"),
            ("STOCKADE_ALERT_EMAIL_FAILURE_PERCENT", "1"),
            ("STOCKADE_ALERT_DELIVERY_MIN_ATTEMPTS", "2"),
            ("STOCKADE_ALERT_BACKUP_MAX_AGE_HOURS", "48"),
        ])
        .unwrap();
        let a = cfg.alerts;
        assert_eq!(a.window, chrono::Duration::seconds(60));
        assert_eq!(
            (a.server_error_percent, a.server_error_min_requests),
            (20, 3)
        );
        assert_eq!(
            (
                a.client_error_factor,
                a.client_error_min,
                a.baseline_windows
            ),
            (10, 7, 24)
        );
        assert_eq!(a.rate_limit_hits, 5);
        assert_eq!(
            (a.webhook_failure_percent, a.email_failure_percent),
            (100, 1)
        );
        assert_eq!(a.delivery_min_attempts, 2);
        assert_eq!(a.backup_max_age, chrono::Duration::hours(48));
        for (name, bad) in [
            ("STOCKADE_ALERT_WINDOW_SECS", "59"),
            ("STOCKADE_ALERT_WINDOW_SECS", "3601"),
            ("STOCKADE_ALERT_5XX_PERCENT", "0"),
            ("STOCKADE_ALERT_5XX_PERCENT", "101"),
            ("STOCKADE_ALERT_5XX_PERCENT", "5.5"),
            ("STOCKADE_ALERT_RATE_LIMIT_HITS", "0"),
            ("STOCKADE_ALERT_RATE_LIMIT_HITS", "-3"),
            ("STOCKADE_ALERT_4XX_BASELINE_WINDOWS", "289"),
            ("STOCKADE_ALERT_BACKUP_MAX_AGE_HOURS", "721"),
            ("STOCKADE_ALERT_DELIVERY_MIN_ATTEMPTS", "many"),
        ] {
            let err = load(&[(name, bad)]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name}: ")), "{name}={bad}: {err}");
        }
        assert!(load(&[("STOCKADE_ALERT_SOMETHING", "1")]).is_err());
    }
}
