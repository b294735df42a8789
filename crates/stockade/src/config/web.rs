//! Where browsers may come from and be sent to (issue #20 item 4):
//! `STOCKADE_CORS_ORIGINS`, the exact origins whose pages may call the API
//! from a browser (default none), and `STOCKADE_REDIRECT_ALLOWLIST`, the
//! destinations a link or redirect may point to besides the public URL.
//! The rules themselves are `stockade_core::web`.

use stockade_core::web::{RedirectAllowlist, RedirectEntry, WebOrigin};
use url::Url;

use super::{ConfigError, Raw, invalid};

/// The most entries either list may hold.
const MAX_ENTRIES: usize = 64;

/// The CORS origins, in the order given, without duplicates.
pub(super) fn cors_origins(raw: &Raw) -> Result<Vec<WebOrigin>, ConfigError> {
    let mut origins: Vec<WebOrigin> = Vec::new();
    for item in items(raw, "cors_origins")? {
        let origin = WebOrigin::parse(item).map_err(|why| invalid("cors_origins", item, &why))?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

/// The redirect allowlist: the public URL (its origin and path), then the
/// configured entries.
pub(super) fn redirect_allowlist(
    raw: &Raw,
    public_url: Option<&Url>,
) -> Result<RedirectAllowlist, ConfigError> {
    let mut entries = Vec::new();
    if let Some(public) = public_url
        && let Ok(entry) = RedirectEntry::parse(public.as_str())
    {
        entries.push(entry);
    }
    for item in items(raw, "redirect_allowlist")? {
        entries.push(
            RedirectEntry::parse(item).map_err(|why| invalid("redirect_allowlist", item, &why))?,
        );
    }
    Ok(RedirectAllowlist::new(entries))
}

fn items<'a>(raw: &'a Raw, name: &str) -> Result<Vec<&'a str>, ConfigError> {
    let items: Vec<&str> = raw
        .get(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.len() > MAX_ENTRIES {
        return Err(invalid(
            name,
            &format!("{} entries", items.len()),
            &format!("at most {MAX_ENTRIES} comma-separated entries"),
        ));
    }
    Ok(items)
}
