//! Users: global identities that belong to tenants through memberships;
//! passwords, sign-up, sign-in, login protection, password reset.

mod argon;
pub mod erase;
mod hash_pool;
pub mod import;
pub mod import_store;
mod lockout;
mod model;
pub mod password;
pub mod password_gate;
pub mod reauth;
pub mod rekey;
pub mod reset;
mod reset_effects;
pub mod routes;
pub mod signup;
mod state;
mod store;
pub mod throttle;
pub mod verify;

pub use stockade_core::identity::email;

pub use email::{Email, EmailRefusal};
pub use erase::{EraseError, Erasure, erase_user};
pub(crate) use lockout::{clear_failures, count_factor_failure, refuse_if_locked};
pub(crate) use model::validate_name;
pub use model::{IdentityError, User};
pub use password_gate::{LOGIN_QUOTA, LoginLimiter};
pub use routes::routes;
pub use state::IdentityState;
pub(crate) use store::insert_user;
pub use store::{
    AuthUser, UserMembership, create_user, create_user_with_password, find_auth_user,
    find_auth_user_by_id, find_user, find_user_by_email, find_user_by_key, memberships_in,
    memberships_of, set_password_hash,
};
