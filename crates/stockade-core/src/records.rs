//! Records' pure rules (`model`): names, keys, indexed text, JSON merge
//! patch, cursors, `If-Match`. Encryption, storage and routes stay in
//! `stockade::records`; nothing here reads or writes a record.

pub mod model;
