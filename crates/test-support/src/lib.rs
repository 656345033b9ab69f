//! Helpers the integration tests of several crates share. Dev-dependency only.
//!
//! Every server these helpers start listens on 127.0.0.1 on a port picked at runtime, and every
//! process they start is killed when its guard drops.

pub mod bins;
pub mod collector;
pub mod net;
pub mod process;
pub mod prometheus;
pub mod tempdir;
pub mod tls;

pub use bins::{python, require_bin, workspace_root};
pub use net::free_port;
pub use process::{Proc, Procs, START_TIMEOUT};
pub use tempdir::TempDir;
