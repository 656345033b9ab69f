//! config components (being written).
