//! [`StartContext`]: what the service hands to every component it starts.

use crate::extension::auth::Authenticators;
use crate::extension::file_storage::FileStorageConfig;
use crate::extension::health::HealthState;
use std::collections::BTreeMap;
use std::sync::Arc;
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
    /// The service's health (phase, full exporter queues), shared by every component.
    pub health: HealthState,
    /// The started authenticator extensions (`auth: {authenticator: ID}` looks them up).
    pub auth: Authenticators,
    /// The enabled `file_storage` extensions by id (`sending_queue.storage` names one).
    pub storage: Arc<BTreeMap<String, FileStorageConfig>>,
    /// Set for the processors of a pipeline feeding a persistent queue: stages that hold data
    /// (the batch processor) answer only once it is durably queued.
    pub durable_acks: bool,
}

impl StartContext {
    /// A context for component `id` sharing the service's `cancel` token.
    pub fn new(id: impl Into<String>, cancel: CancellationToken) -> Self {
        StartContext {
            id: id.into(),
            cancel,
            health: HealthState::new(),
            auth: Authenticators::default(),
            storage: Arc::default(),
            durable_acks: false,
        }
    }

    /// The same context with the started authenticators.
    pub fn with_auth(mut self, auth: Authenticators) -> Self {
        self.auth = auth;
        self
    }

    /// The same context with the enabled `file_storage` extensions.
    pub fn with_storage(mut self, storage: BTreeMap<String, FileStorageConfig>) -> Self {
        self.storage = Arc::new(storage);
        self
    }

    /// The same context asking holding stages to acknowledge only durable data.
    pub fn with_durable_acks(mut self, durable: bool) -> Self {
        self.durable_acks = durable;
        self
    }

    /// The same context sharing `health` (the service creates one and hands it to everyone).
    pub fn with_health(mut self, health: HealthState) -> Self {
        self.health = health;
        self
    }

    /// The same context for another component id.
    pub fn for_component(&self, id: impl Into<String>) -> Self {
        StartContext {
            id: id.into(),
            ..self.clone()
        }
    }
}
