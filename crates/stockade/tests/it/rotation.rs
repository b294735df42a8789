//! Integration tests: rotation (filled in by its issue).
