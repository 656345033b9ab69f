//! The collector's configuration in the upstream otelcol YAML format (being written).

pub mod error;

pub use error::ComponentConfigError;
