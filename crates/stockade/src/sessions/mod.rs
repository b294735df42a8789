//! Server-side sessions and rotating refresh tokens (SPEC §2.2).
//!
//! A session is one sign-in of one user into one tenant. Access tokens name
//! it (`sid`) and every request checks it is still live, so revocation takes
//! effect on the next request. Refresh tokens are 256-bit random, stored as
//! SHA-256, rotated on every use; presenting a used one again revokes the
//! session (reuse detection), unless inside the optional grace window.

pub mod cache;
mod everywhere;
mod model;
mod rotation_batch;
mod routes;
mod start;
mod state;
mod store;

pub use cache::SessionCache;
pub use model::{
    REFRESH_COOKIE, RefreshToken, STEP_UP_MINUTES_RANGE, STEP_UP_WINDOW, Session, SessionPolicy,
    SessionStatus, step_up_fresh, step_up_window,
};
pub use rotation_batch::RotationBatcher;
pub use routes::{ACCESS_TOKEN_SECONDS, SessionView, SessionsApi, TokenResponse, routes};
pub(crate) use routes::{access_token, refresh_cookie, with_cookie};
pub(crate) use start::{SignIn, start};
pub use state::SessionsState;
pub use store::{
    IMPERSONATION_TTL, Live, RefreshError, Refusal, Rotated, Sighting, check, create,
    create_impersonation, create_unproven, list_for_user, look_up, mark_authenticated, revoke,
    revoke_all_for_user, rotate, rotate_seen, set_amr,
};
