//! connector components (being written).
