//! Integration tests: records (filled in by its issue).
