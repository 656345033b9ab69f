//! Helpers the integration tests of several crates share. Dev-dependency only.
