//! Shared helpers live in e2e/util.rs; this library is empty.
