//! Thin wrappers over vetted cryptography crates (RustCrypto, dalek). Nothing
//! here invents a primitive: it generates, loads and names keys. The pure
//! parts (sealing, randomness, the envelope format, access tokens, HS256
//! secret strength) live in `stockade_core::crypto`, re-exported here.

pub mod envelope;
pub mod hs256;
pub mod keyring;
pub mod keys;
pub mod master;
pub mod rotation;
pub mod server_keys;

pub use stockade_core::crypto::{jwt, random, seal, token_cache};
