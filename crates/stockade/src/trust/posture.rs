//! The deployment's security posture, gathered from what actually runs: the
//! constants the code enforces, the loaded configuration, and the database
//! (signing keys, tenant settings, chain verifications). Nothing here is
//! written by hand for the page: change a setting and the posture changes.
//!
//! What it must never show: a secret, a tenant's name or id, a user, an
//! internal address (listen addresses, database or Redis hosts, proxy
//! ranges). Counts are shown only where the issue asks for one (tenants
//! requiring MFA).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{Config, JwtAlg};
use crate::db::{Db, DbError};
use crate::ids::TenantId;

/// The whole posture, as `/trust.json` serves it and `/trust` renders it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Posture {
    pub generated_at: DateTime<Utc>,
    pub build: Build,
    pub transport: Transport,
    pub browser: Browser,
    pub tokens: Tokens,
    pub passwords: Passwords,
    pub login_protection: LoginProtection,
    pub sessions: Sessions,
    pub mfa: Mfa,
    pub encryption_at_rest: EncryptionAtRest,
    pub audit: Audit,
    pub backups: Backups,
    pub data_rights: DataRights,
    pub operations: Operations,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Build {
    pub version: &'static str,
    /// The dependency-advisory check of the build (`cargo audit` in CI,
    /// given to the compiler as `BUILD_ADVISORIES`), or `not
    /// checked` for a build made without it.
    pub advisories: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Transport {
    /// `built-in` (this process terminates TLS), `proxy` (a trusted proxy
    /// does), or `none` (development, plain HTTP on loopback).
    pub https: &'static str,
    /// Whether plain HTTP is refused or redirected (308) to HTTPS.
    pub https_enforced: bool,
    /// TLS versions this process accepts (empty when it does not terminate
    /// TLS).
    pub tls_versions: Vec<&'static str>,
    /// Only forward-secret AEAD cipher suites.
    pub tls_forward_secrecy_only: bool,
    /// A plain-HTTP listener that only answers 308 to the HTTPS URL.
    pub http_redirector: bool,
    /// The `Strict-Transport-Security` header on every response.
    pub hsts: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Browser {
    /// The API's `Content-Security-Policy`.
    pub content_security_policy: &'static str,
    /// How many exact origins may call the API from a browser (CORS); no
    /// wildcard is possible.
    pub cors_allowed_origins: usize,
    /// Links and redirects go only to the public URL or these many
    /// configured destinations.
    pub redirect_allowlist_entries: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tokens {
    /// The access-token signature algorithm (`EdDSA` or `HS256`).
    pub algorithm: &'static str,
    pub access_token_seconds: i64,
    /// Refresh tokens rotate on every use; a reused one revokes the session
    /// (after at most this grace).
    pub refresh_rotation: bool,
    pub refresh_reuse_grace_seconds: u64,
    /// The refresh cookie's name and attributes.
    pub refresh_cookie: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Passwords {
    pub hash: &'static str,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// The default minimum length (each tenant may raise it).
    pub default_min_length: usize,
    pub common_passwords_rejected_by_default: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoginProtection {
    /// Password attempts per client address...
    pub attempts_per_address: u32,
    /// ...per this many seconds.
    pub per_seconds: i64,
    /// Consecutive failures that lock an address (account) ...
    pub lockout_after_failures: i64,
    /// ... for this long at first, doubling on each repeat ...
    pub first_lockout_seconds: i64,
    /// ... up to this long.
    pub longest_lockout_seconds: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Sessions {
    pub default_idle_timeout_seconds: i64,
    pub default_absolute_lifetime_seconds: i64,
    /// How recent a proof sensitive actions need by default.
    pub default_step_up_minutes: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Mfa {
    pub factors: Vec<&'static str>,
    /// How many tenants require a second factor (of admins or of everyone).
    pub tenants_requiring: u64,
    /// Platform owners need a second factor on platform routes.
    pub platform_owners_require_mfa: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EncryptionAtRest {
    pub algorithm: &'static str,
    pub scheme: &'static str,
    /// The master key version new data is wrapped under.
    pub master_key_version: u32,
    /// Every master key version still loaded.
    pub master_key_versions: Vec<u32>,
    /// Tenant data-key versions in use.
    pub tenant_data_key_versions: Vec<u32>,
    /// When the current token-signing key was made (its last rotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key_rotated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Audit {
    pub chain: &'static str,
    /// No tenant may keep its log for less.
    pub retention_floor_days: i64,
    pub platform_retention_days: i64,
    /// The last scheduled verification of every chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<ChainStatus>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChainStatus {
    pub finished_at: DateTime<Utc>,
    /// Every chain held.
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Backups {
    /// `not available`: this version has no backup command yet.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DataRights {
    /// What deleting a user does.
    pub user_erasure: &'static str,
    /// Days a cancelled tenant stays restorable; absent while this version
    /// has no tenant cancellation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_deletion_grace_days: Option<i64>,
    /// Whether tenant data export is available.
    pub tenant_export: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Operations {
    /// How the instance that runs scheduled jobs is chosen.
    pub leader_election: &'static str,
}

/// Gathers the posture at `now`; `leader_election` comes from the job
/// board of the serving instance.
pub async fn gather(
    config: &Config,
    db: &Db,
    master_versions: Vec<u32>,
    master_current: u32,
    leader_election: &'static str,
    now: DateTime<Utc>,
) -> Result<Posture, DbError> {
    use crate::identity::password as pw;
    let (tenants_requiring, data_versions) = tenant_facts(db).await?;
    let signing_key_rotated_at = crate::crypto::keyring::list(db)
        .await
        .ok()
        .and_then(|keys| {
            keys.iter()
                .filter(|k| k.is_current())
                .map(|k| k.created_at)
                .max()
        });
    let last_verification = crate::audit::verification::latest(db)
        .await?
        .map(|v| ChainStatus {
            finished_at: v.finished_at,
            ok: v.ok,
        });
    let lock = crate::identity::throttle::BASE_LOCK;
    let policy = crate::tenancy::settings::TenantSettings::default();
    Ok(Posture {
        generated_at: now,
        build: Build {
            version: env!("CARGO_PKG_VERSION"),
            advisories: option_env!("BUILD_ADVISORIES").unwrap_or("not checked"),
        },
        transport: super::transport(config),
        browser: Browser {
            content_security_policy: crate::http::headers::API_CSP,
            cors_allowed_origins: config.cors_origins.len(),
            // The first entry is the public URL's own.
            redirect_allowlist_entries: config.redirect_allowlist.entries().len().saturating_sub(1),
        },
        tokens: Tokens {
            algorithm: match config.jwt_alg {
                JwtAlg::EdDsa => "EdDSA",
                JwtAlg::Hs256 => "HS256",
            },
            access_token_seconds: crate::sessions::ACCESS_TOKEN_SECONDS,
            refresh_rotation: true,
            refresh_reuse_grace_seconds: config.refresh_reuse_grace.as_secs(),
            refresh_cookie: "__Host-stockade_refresh; HttpOnly; Secure; SameSite=Lax",
        },
        passwords: Passwords {
            hash: "argon2id",
            memory_kib: pw::ARGON2_M_COST,
            iterations: pw::ARGON2_T_COST,
            parallelism: pw::ARGON2_P_COST,
            default_min_length: policy.password_policy.min_length,
            common_passwords_rejected_by_default: policy.password_policy.reject_common,
        },
        login_protection: LoginProtection {
            attempts_per_address: crate::identity::LOGIN_QUOTA.burst,
            per_seconds: crate::identity::LOGIN_QUOTA.period.num_seconds(),
            lockout_after_failures: crate::identity::throttle::MAX_FAILURES,
            first_lockout_seconds: lock.num_seconds(),
            longest_lockout_seconds: crate::identity::throttle::lock_duration(i64::MAX)
                .num_seconds(),
        },
        sessions: Sessions {
            default_idle_timeout_seconds: policy.session_idle_secs,
            default_absolute_lifetime_seconds: policy.session_absolute_secs,
            default_step_up_minutes: policy.step_up_minutes,
        },
        mfa: Mfa {
            factors: vec!["totp", "webauthn", "recovery_codes"],
            tenants_requiring,
            platform_owners_require_mfa: true,
        },
        encryption_at_rest: EncryptionAtRest {
            algorithm: "AES-256-GCM",
            scheme: "envelope: per-tenant data keys wrapped by the master key",
            master_key_version: master_current,
            master_key_versions: master_versions,
            tenant_data_key_versions: data_versions,
            signing_key_rotated_at,
        },
        audit: Audit {
            chain: "SHA-256 hash chain per tenant, heads signed with HMAC-SHA-256",
            retention_floor_days: config.audit_retention_min_days,
            platform_retention_days: config.audit_platform_retention_days,
            last_verification,
        },
        backups: Backups {
            status: "not available",
            last_success_at: None,
        },
        data_rights: DataRights {
            user_erasure: "immediate: sessions revoked, audit personal data anonymised",
            tenant_deletion_grace_days: None,
            tenant_export: false,
        },
        operations: Operations { leader_election },
    })
}

/// Per tenant, read in its own scope (row-level security shows no
/// transaction every tenant's rows): whether it requires MFA, and its
/// current data-key versions. Returns the count and the distinct versions.
async fn tenant_facts(db: &Db) -> Result<(u64, Vec<u32>), DbError> {
    let mut tx = db.global_read().await?;
    let tenants: Vec<(TenantId,)> = tx
        .fetch_all("SELECT id FROM tenants ORDER BY id", vec![])
        .await?;
    drop(tx);
    let mut requiring = 0u64;
    for (tenant,) in &tenants {
        let mut tx = db.tenant_read(*tenant).await?;
        let settings = crate::tenancy::settings::load(&mut tx).await?;
        drop(tx);
        if settings.mfa_required != crate::tenancy::settings::MfaRequired::Off {
            requiring += 1;
        }
    }
    let versions = match crate::crypto::envelope::status(db).await {
        Ok(status) => status.current_data.keys().copied().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "trust page: tenant key versions unreadable");
            Vec::new()
        }
    };
    Ok((requiring, versions))
}
