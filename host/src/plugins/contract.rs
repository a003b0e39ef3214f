//! The contract versions this host speaks (the WIT package `mailwit:plugin`); the loader and the
//! instances use this file, never `plugins/mod.rs`, which re-exports it.

use super::compat_v01;

/// The WIT package version this host implements. Plugins built against it or against an earlier
/// version the host still speaks ([`SUPPORTED_VERSIONS`]) load; others are refused with the
/// versions named.
pub const WIT_VERSION: &str = "0.2.0";
/// Every contract version the host loads plugins of (same major; for 0.x: same minor).
pub const SUPPORTED_VERSIONS: [&str; 2] = [WIT_VERSION, compat_v01::VERSION];
/// The WIT package name.
pub const WIT_PACKAGE: &str = "mailwit:plugin";
