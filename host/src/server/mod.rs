//! See the crate documentation for what this module is for.
