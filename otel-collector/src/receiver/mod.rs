//! receiver components (being written).
