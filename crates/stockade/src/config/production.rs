//! The production profile's refusals that need no I/O: a public https URL,
//! open signup only with its explicit flag, a master key and a signing key
//! (or a strong HS256 secret) named, owners given as ids, database TLS,
//! trusted proxies said, the admin listener on loopback unless allowed, no
//! plain HTTP off loopback unless behind a TLS proxy (`config/tls.rs`), no
//! benchmark build. One line per problem, so
//! `config check` and `serve` can list them all; key files themselves are
//! read and judged by `crypto::keys`, not here.

use super::{Config, JwtAlg, SignupMode};

impl Config {
    /// Problems that make this configuration unfit for production that can
    /// be seen without reading key files (those are checked by
    /// `crypto::keys`). One line each.
    pub fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        match &self.public_url {
            None => problems.push(
                "STOCKADE_PUBLIC_URL is not set: production needs the https:// URL clients use"
                    .to_owned(),
            ),
            Some(url) if url.scheme() != "https" => problems.push(format!(
                "STOCKADE_PUBLIC_URL uses {}://: production needs an https:// URL",
                url.scheme()
            )),
            Some(_) => {}
        }
        for origin in self.cors_origins.iter().filter(|o| !o.is_https()) {
            problems.push(format!(
                "STOCKADE_CORS_ORIGINS names {origin}: production allows only https:// origins"
            ));
        }
        // The public URL's own entry is judged above.
        let base = url::Url::parse(&self.base_url())
            .ok()
            .and_then(|u| stockade_core::web::WebOrigin::of(&u));
        for entry in self
            .redirect_allowlist
            .entries()
            .iter()
            .filter(|e| !e.origin().is_https() && Some(e.origin()) != base.as_ref())
        {
            problems.push(format!(
                "STOCKADE_REDIRECT_ALLOWLIST names {}: production allows only https:// destinations",
                entry.origin()
            ));
        }
        if self.signup == SignupMode::Open && !self.allow_open_signup {
            problems.push(
                "STOCKADE_SIGNUP=open in production needs the explicit flag STOCKADE_ALLOW_OPEN_SIGNUP=true"
                    .to_owned(),
            );
        }
        if self.master_key.is_none() {
            problems.push(
                "STOCKADE_MASTER_KEY_FILE is not set: production needs a master key (32 random bytes, base64)"
                    .to_owned(),
            );
        }
        match self.jwt_alg {
            JwtAlg::EdDsa if self.signing_key_file.is_none() => problems.push(
                "STOCKADE_SIGNING_KEY_FILE is not set: production needs an Ed25519 signing key (PKCS#8 PEM)"
                    .to_owned(),
            ),
            JwtAlg::Hs256 => match &self.jwt_secret {
                None => problems.push(
                    "STOCKADE_JWT_SECRET_FILE is not set: HS256 needs a secret of at least 512 bits"
                        .to_owned(),
                ),
                Some(s) => {
                    if let Some(problem) = crate::crypto::hs256::problem(s) {
                        problems.push(problem);
                    }
                }
            },
            JwtAlg::EdDsa => {}
        }
        if let Some(email) = self
            .platform_owners
            .iter()
            .find(|o| uuid::Uuid::parse_str(o).is_err())
        {
            problems.push(format!(
                "STOCKADE_PLATFORM_OWNERS lists an email address ({email}): an email makes its account an owner only once verified, and production cannot deliver verification emails yet (no SMTP sender: issue #21); list user ids, or grant with `stockade platform add-owner`"
            ));
        }
        problems.extend(self.database_tls_problems());
        if !self.trusted_proxies_set {
            problems.push(
                "STOCKADE_TRUSTED_PROXIES is not set: production needs it said, as the CIDRs of the proxies in front of Stockade or `none` when clients connect directly (behind an unlisted proxy every client shares the proxy's address)"
                    .to_owned(),
            );
        }
        problems.extend(self.admin_problem());
        problems.extend(self.listener_problems());
        if cfg!(feature = "bench") {
            problems.push(
                "this binary was built with the `bench` feature (benchmark routes without authentication): never run it in production"
                    .to_owned(),
            );
        }
        problems
    }
}
