//! Database sources (being written).
