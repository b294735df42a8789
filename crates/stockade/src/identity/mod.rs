//! Users: global identities that belong to tenants through memberships.

mod model;
mod store;

pub use model::{Email, IdentityError, User};
pub use store::{create_user, find_user_by_email};
