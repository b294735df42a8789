//! The posture as the HTML page's sections: labels and values in words
//! (durations in minutes, hours or days), rendered by the askama template
//! `templates/trust.html`, which escapes every value.

use askama::Template;

use super::posture::Posture;

#[derive(Template)]
#[template(path = "trust.html")]
pub(super) struct Page {
    generated_at: String,
    sections: Vec<Section>,
}

pub(super) struct Section {
    title: &'static str,
    rows: Vec<(&'static str, String)>,
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// Seconds in the largest whole unit.
fn span(seconds: i64) -> String {
    let unit = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match seconds {
        s if s > 0 && s % 86_400 == 0 => unit(s / 86_400, "day"),
        s if s > 0 && s % 3600 == 0 => unit(s / 3600, "hour"),
        s if s > 0 && s % 60 == 0 => unit(s / 60, "minute"),
        s => unit(s, "second"),
    }
}

fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Page {
    pub(super) fn of(p: &Posture) -> Self {
        let t = &p.transport;
        let l = &p.login_protection;
        let e = &p.encryption_at_rest;
        let sections = vec![
            Section {
                title: "Transport",
                rows: vec![
                    ("HTTPS", t.https.to_owned()),
                    ("HTTPS enforced", yes(t.https_enforced)),
                    ("TLS versions", list(&t.tls_versions)),
                    (
                        "Forward-secret AEAD suites only",
                        yes(t.tls_forward_secrecy_only),
                    ),
                    ("HTTP redirected with 308", yes(t.http_redirector)),
                    ("Strict-Transport-Security", t.hsts.to_owned()),
                ],
            },
            Section {
                title: "Browsers",
                rows: vec![
                    (
                        "Content-Security-Policy",
                        p.browser.content_security_policy.to_owned(),
                    ),
                    (
                        "Origins allowed by CORS (exact, never *)",
                        p.browser.cors_allowed_origins.to_string(),
                    ),
                    (
                        "Redirect allowlist entries (besides the public URL)",
                        p.browser.redirect_allowlist_entries.to_string(),
                    ),
                ],
            },
            Section {
                title: "Tokens",
                rows: vec![
                    ("Signature algorithm", p.tokens.algorithm.to_owned()),
                    ("Access token lifetime", span(p.tokens.access_token_seconds)),
                    (
                        "Refresh tokens rotated on every use",
                        yes(p.tokens.refresh_rotation),
                    ),
                    (
                        "Reuse grace before a replay revokes the session",
                        span(i64::try_from(p.tokens.refresh_reuse_grace_seconds).unwrap_or(0)),
                    ),
                    ("Refresh cookie", p.tokens.refresh_cookie.to_owned()),
                ],
            },
            Section {
                title: "Passwords",
                rows: vec![
                    ("Hash", p.passwords.hash.to_owned()),
                    ("Memory", format!("{} KiB", p.passwords.memory_kib)),
                    ("Iterations", p.passwords.iterations.to_string()),
                    ("Parallelism", p.passwords.parallelism.to_string()),
                    (
                        "Default minimum length",
                        p.passwords.default_min_length.to_string(),
                    ),
                    (
                        "Common passwords refused by default",
                        yes(p.passwords.common_passwords_rejected_by_default),
                    ),
                ],
            },
            Section {
                title: "Sign-in protection",
                rows: vec![
                    (
                        "Password attempts per client address",
                        format!("{} per {}", l.attempts_per_address, span(l.per_seconds)),
                    ),
                    (
                        "Account lockout",
                        format!(
                            "after {} failures, {} at first, doubling up to {}",
                            l.lockout_after_failures,
                            span(l.first_lockout_seconds),
                            span(l.longest_lockout_seconds)
                        ),
                    ),
                ],
            },
            Section {
                title: "Sessions",
                rows: vec![
                    (
                        "Idle timeout (default)",
                        span(p.sessions.default_idle_timeout_seconds),
                    ),
                    (
                        "Absolute lifetime (default)",
                        span(p.sessions.default_absolute_lifetime_seconds),
                    ),
                    (
                        "Step-up window (default)",
                        span(p.sessions.default_step_up_minutes.saturating_mul(60)),
                    ),
                ],
            },
            Section {
                title: "Multi-factor authentication",
                rows: vec![
                    ("Factors", list(&p.mfa.factors)),
                    ("Tenants requiring it", p.mfa.tenants_requiring.to_string()),
                    (
                        "Platform owners need a second factor",
                        yes(p.mfa.platform_owners_require_mfa),
                    ),
                ],
            },
            Section {
                title: "Encryption at rest",
                rows: vec![
                    ("Algorithm", e.algorithm.to_owned()),
                    ("Scheme", e.scheme.to_owned()),
                    ("Master key version", e.master_key_version.to_string()),
                    ("Master key versions loaded", list(&e.master_key_versions)),
                    (
                        "Tenant data-key versions in use",
                        list(&e.tenant_data_key_versions),
                    ),
                    (
                        "Signing key last rotated",
                        e.signing_key_rotated_at
                            .map_or_else(|| "never".to_owned(), |at| at.to_rfc3339()),
                    ),
                ],
            },
            Section {
                title: "Audit log",
                rows: vec![
                    ("Integrity", p.audit.chain.to_owned()),
                    (
                        "Retention floor",
                        span(p.audit.retention_floor_days.saturating_mul(86_400)),
                    ),
                    (
                        "Platform log retention",
                        span(p.audit.platform_retention_days.saturating_mul(86_400)),
                    ),
                    (
                        "Last full verification",
                        match &p.audit.last_verification {
                            None => "not run yet".to_owned(),
                            Some(v) => format!(
                                "{} at {}",
                                if v.ok {
                                    "every chain holds"
                                } else {
                                    "FAILED: a chain does not hold"
                                },
                                v.finished_at.to_rfc3339()
                            ),
                        },
                    ),
                ],
            },
            Section {
                title: "Backups",
                rows: vec![
                    ("Status", p.backups.status.to_owned()),
                    (
                        "Last successful, verified backup",
                        p.backups
                            .last_success_at
                            .map_or_else(|| "none".to_owned(), |at| at.to_rfc3339()),
                    ),
                ],
            },
            Section {
                title: "Data rights",
                rows: vec![
                    ("User erasure", p.data_rights.user_erasure.to_owned()),
                    (
                        "Tenant deletion grace",
                        p.data_rights
                            .tenant_deletion_grace_days
                            .map_or_else(|| "not available".to_owned(), |d| span(d * 86_400)),
                    ),
                    ("Tenant export", yes(p.data_rights.tenant_export)),
                ],
            },
            Section {
                title: "Build and operations",
                rows: vec![
                    ("Version", p.build.version.to_owned()),
                    (
                        "Dependency advisories at build",
                        p.build.advisories.to_owned(),
                    ),
                    (
                        "Scheduled jobs run by",
                        p.operations.leader_election.to_owned(),
                    ),
                ],
            },
        ];
        Self {
            generated_at: p.generated_at.to_rfc3339(),
            sections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::span;

    #[test]
    fn spans_use_the_largest_whole_unit() {
        assert_eq!(span(900), "15 minutes");
        assert_eq!(span(86_400), "1 day");
        assert_eq!(span(57_600), "16 hours");
        assert_eq!(span(0), "0 seconds");
        assert_eq!(span(61), "61 seconds");
    }
}
