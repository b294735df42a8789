//! The audit log: append-only, hash-chained per tenant.
//!
//! [`append`] (and [`append_many`] for a batch) writes events inside the caller's transaction, so an event
//! exists if and only if the change it describes was committed. [`verify`]
//! walks a chain and names the first sequence number that does not hold.

pub mod api;
mod head;
mod model;
pub mod pii;
pub mod query;
pub mod retention;
pub mod retention_policy;
pub mod sampler;
mod state;
mod store;
pub mod verification;
pub mod webhook;
pub mod webhook_api;
mod webhook_send;
pub mod webhook_url;

// How `details` is presented: a pure rule of `stockade-core`.
use stockade_core::audit::details;

pub use head::{HEAD_KEY_PURPOSE, install_head_key};
pub use model::{
    Actor, AuditError, GENESIS_HASH, NewEvent, Outcome, RequestContext, StoredEvent, Target,
    VerifyReport,
};
pub use state::AuditState;
pub use store::{append, append_many, verify_all, verify_tenant};
