//! The HTTP edge: errors as problem+json, the JSON extractor, security
//! headers and the layer stack every route sits behind; who is calling
//! (`principal.rs`, `client_ip.rs`, `origin.rs`) and the [`AuthState`] those
//! extractors need, which every capability's state slice carries. The
//! listeners themselves: `listener.rs` (the connection loop and its
//! bounds), `tls.rs`, `redirector.rs`, `scheme.rs` (behind a TLS proxy),
//! `listeners.rs` (what `serve` starts).

pub mod auth_state;
pub mod client_ip;
pub mod cors;
pub mod error;
pub mod headers;
pub mod json;
pub mod layers;
pub mod listener;
pub mod listeners;
pub mod origin;
pub mod principal;
pub mod proxy_watch;
pub mod redirect;
pub mod redirector;
pub mod refusals;
pub mod scheme;
pub mod tls;
pub mod unread_body;

pub use auth_state::AuthState;
pub use error::{ApiError, Problem, RateLimited};
pub use json::ApiJson;
pub use origin::SameOrigin;
pub use principal::{AuditContext, Principal};
