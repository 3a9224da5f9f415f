//! ringshift end-to-end harness.
