//! Consistent-hash ring for ringshift: see README of the crate.
