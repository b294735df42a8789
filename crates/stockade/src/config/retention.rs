//! Audit retention settings of the deployment (issue #17 item 10): the floor
//! no tenant's retention may go below, and the platform chain's retention.

use super::{ConfigError, Raw, invalid};

/// `STOCKADE_AUDIT_RETENTION_MIN_DAYS` by default.
pub(super) const DEFAULT_MIN_DAYS: i64 = 90;
/// `STOCKADE_AUDIT_PLATFORM_RETENTION_DAYS` by default.
pub(super) const DEFAULT_PLATFORM_DAYS: i64 = 365;
/// Both are days from 1 to this (ten years, the tenants' own maximum).
pub(super) const MAX_DAYS: i64 = 3650;

/// `(min_days, platform_days)`; the platform chain may not be kept for less
/// than the floor every tenant must keep.
pub(super) fn parse(raw: &Raw) -> Result<(i64, i64), ConfigError> {
    let min = days(raw, "audit_retention_min_days", DEFAULT_MIN_DAYS)?;
    let platform = days(raw, "audit_platform_retention_days", DEFAULT_PLATFORM_DAYS)?;
    if platform < min {
        return Err(ConfigError::Invalid {
            name: "STOCKADE_AUDIT_PLATFORM_RETENTION_DAYS".to_owned(),
            reason: format!(
                "`{platform}` is below STOCKADE_AUDIT_RETENTION_MIN_DAYS ({min}): the platform's own log is kept at least as long as every tenant's"
            ),
        });
    }
    Ok((min, platform))
}

fn days(raw: &Raw, name: &str, default: i64) -> Result<i64, ConfigError> {
    match raw.get(name) {
        None => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_DAYS).contains(n))
            .ok_or_else(|| invalid(name, s, &format!("days from 1 to {MAX_DAYS}"))),
    }
}

#[cfg(test)]
mod tests {

    use crate::config::load_pairs as load;

    #[test]
    fn retention_floor_and_platform_days() {
        let cfg = load(&[]).unwrap();
        assert_eq!(
            (
                cfg.audit_retention_min_days,
                cfg.audit_platform_retention_days
            ),
            (90, 365)
        );
        let cfg = load(&[
            ("STOCKADE_AUDIT_RETENTION_MIN_DAYS", "180"),
            ("STOCKADE_AUDIT_PLATFORM_RETENTION_DAYS", "730"),
        ])
        .unwrap();
        assert_eq!(
            (
                cfg.audit_retention_min_days,
                cfg.audit_platform_retention_days
            ),
            (180, 730)
        );
        for bad in ["0", "-1", "3651", "ninety", "1.5"] {
            assert!(
                load(&[("STOCKADE_AUDIT_RETENTION_MIN_DAYS", bad)]).is_err(),
                "{bad}"
            );
            assert!(
                load(&[("STOCKADE_AUDIT_PLATFORM_RETENTION_DAYS", bad)]).is_err(),
                "{bad}"
            );
        }
        // The platform's log may not be kept for less than the floor.
        let err = load(&[
            ("STOCKADE_AUDIT_RETENTION_MIN_DAYS", "400"),
            ("STOCKADE_AUDIT_PLATFORM_RETENTION_DAYS", "365"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("below"), "{err}");
    }
}
