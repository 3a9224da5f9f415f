//! Admin API types of the ringshift node.
