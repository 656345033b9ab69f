//! [`StartContext`]: what the service hands to every component it starts.

use tokio_util::sync::CancellationToken;

/// What a component gets when it starts: its id and the service's shutdown token.
///
/// Extended additively by other components (for example a health-state handle).
#[derive(Clone, Debug)]
pub struct StartContext {
    /// The component's id as written in the config (`otlp/tempo`).
    pub id: String,
    /// Cancelled when the service shuts down; long-running tasks select on it.
    pub cancel: CancellationToken,
}

impl StartContext {
    /// A context for component `id` sharing the service's `cancel` token.
    pub fn new(id: impl Into<String>, cancel: CancellationToken) -> Self {
        StartContext {
            id: id.into(),
            cancel,
        }
    }

    /// The same context for another component id.
    pub fn for_component(&self, id: impl Into<String>) -> Self {
        StartContext {
            id: id.into(),
            ..self.clone()
        }
    }
}
