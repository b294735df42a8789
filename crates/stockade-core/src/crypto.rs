//! Thin wrappers over vetted cryptography crates (RustCrypto, dalek,
//! jsonwebtoken), pure: sealing (`seal`), randomness (`random`), the tenant
//! envelope format (`envelope`), HS256 secret strength (`hs256`) and access
//! tokens (`jwt`, `token_cache`). Nothing here invents a primitive, and
//! nothing loads, stores or rotates a key in a file or a database: that is
//! `stockade::crypto`.

pub mod envelope;
pub mod hs256;
pub mod jwt;
pub mod random;
pub mod seal;
pub mod token_cache;
