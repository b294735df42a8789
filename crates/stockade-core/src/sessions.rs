//! Sessions' pure rules (`model`): the refresh cookie's name, the refresh
//! policy, the step-up window and session liveness. Refresh tokens (bound to
//! a tenant id), session rows and routes stay in `stockade::sessions`;
//! nothing here reads a session.

pub mod model;
