//! processor components (being written).
