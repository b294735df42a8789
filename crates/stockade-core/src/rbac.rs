//! Roles and permissions, pure (SPEC §2.6): permission syntax, built-in
//! roles, permission sets and coverage (`model`), and which permissions are
//! only planned (`planned`). Custom roles in the database and the HTTP
//! answers stay in `stockade::rbac`; nothing here reads a role row.

pub mod model;
pub mod planned;
