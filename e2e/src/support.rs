//! Test support (filled below).
