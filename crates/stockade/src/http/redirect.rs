//! The one door for every link or redirect Stockade issues to a
//! caller-chosen destination (issue #20 item 4): [`allowed_target`] checks
//! it against the public URL and `STOCKADE_REDIRECT_ALLOWLIST`
//! (`stockade_core::web::RedirectAllowlist`, where every rule lives) and
//! answers 400 `http.redirect_not_allowed` otherwise. A destination that is
//! not the caller's to choose (the public URL's own pages) needs no check.

use axum::http::StatusCode;
use url::Url;

use super::ApiError;
use crate::config::Config;

/// The refusal's stable code.
pub const REDIRECT_NOT_ALLOWED: &str = "http.redirect_not_allowed";

/// `target`, parsed, when the allowlist admits it; 400
/// `http.redirect_not_allowed` otherwise (the reason goes to the log, the
/// target itself does not: it may be long or hostile).
pub fn allowed_target(config: &Config, target: &str) -> Result<Url, ApiError> {
    config.redirect_allowlist.check(target).map_err(|why| {
        tracing::warn!(reason = why.as_str(), "redirect target refused");
        ApiError::new(StatusCode::BAD_REQUEST, REDIRECT_NOT_ALLOWED).with_detail(
            "the destination is not the public URL nor in STOCKADE_REDIRECT_ALLOWLIST \
             (an absolute https:// URL without user name or fragment)",
        )
    })
}

/// The link `<page>#<name>=<token>`: the token in the fragment, which
/// browsers never send to a server nor put in a `Referer`.
pub fn token_link(page: &Url, name: &str, token: &str) -> String {
    let mut page = page.clone();
    page.set_fragment(Some(&format!("{name}={token}")));
    page.to_string()
}
