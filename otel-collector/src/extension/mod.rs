//! extension components (being written).
