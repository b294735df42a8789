//! Users' pure rules: the canonical email address (`email`) and the policy a
//! new password must meet (`password`). Hashing passwords (on its own
//! threads), accounts and sign-in stay in `stockade::identity`; nothing here
//! hashes with argon2 or reads a user.

pub mod email;
pub mod password;
