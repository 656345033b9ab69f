//! exporter components (being written).
