//! Integration tests: apikeys (filled in by its issue).
