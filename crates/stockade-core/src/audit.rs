//! The audit log's pure part: the canonical encoding and hash of an event
//! (`chain`), how `details` is presented (`details`), sealing an event's
//! personal data (`pii`) and the retention holds arithmetic
//! (`retention_policy`). Appending, reading and verifying chains in the
//! database stays in `stockade::audit`; nothing here touches storage.

pub mod chain;
pub mod details;
pub mod pii;
pub mod retention_policy;
