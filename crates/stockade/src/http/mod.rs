//! The HTTP edge: errors as problem+json, the JSON extractor, security
//! headers and the layer stack every route sits behind; who is calling
//! (`principal.rs`, `client_ip.rs`, `origin.rs`) and the [`AuthState`] those
//! extractors need, which every capability's state slice carries.

pub mod auth_state;
pub mod client_ip;
pub mod cors;
pub mod error;
pub mod headers;
pub mod json;
pub mod layers;
pub mod origin;
pub mod principal;
pub mod proxy_watch;
pub mod redirect;
pub mod refusals;
pub mod unread_body;

pub use auth_state::AuthState;
pub use error::{ApiError, Problem, RateLimited};
pub use json::ApiJson;
pub use origin::SameOrigin;
pub use principal::{AuditContext, Principal};
