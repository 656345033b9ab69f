//! Per-series anomaly models (filled in by the model work).
