//! The ringshift operator.
