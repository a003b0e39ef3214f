//! The Rust SDK for mailwit plugins (placeholder until the SDK lands).
