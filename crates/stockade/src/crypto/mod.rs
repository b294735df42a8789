//! Thin wrappers over vetted cryptography crates (RustCrypto, dalek). Nothing
//! here invents a primitive: it generates, loads and names keys.

pub mod envelope;
pub mod hs256;
pub mod jwt;
pub mod keyring;
pub mod keys;
pub mod master;
pub mod random;
pub mod rotation;
pub mod seal;
pub mod server_keys;
pub mod token_cache;
