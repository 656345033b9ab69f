//! What flows through the collector and how stages hand it on.
//!
//! Every stage after a receiver (processor, fan-out, exporter queue, connector) is a [`Consumer`]:
//! it takes a [`Telemetry`] batch and answers when it has taken responsibility for it. `Ok` means
//! the data is accepted (delivered or safely queued), so a receiver may acknowledge it to the
//! client; an error tells the receiver what status to answer.

mod consumer;
pub(crate) mod contain;
mod context;
pub mod fanout;
pub mod graph;
pub mod service;
mod telemetry;

pub use consumer::{
    ConsumeError, ConsumeFuture, Consumer, SharedConsumer, Shutdown, ShutdownFuture,
};
pub use context::StartContext;
pub(crate) use telemetry::data_point_count;
pub use telemetry::{Signal, Telemetry};
