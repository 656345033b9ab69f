//! The inventory service: in-memory stock per product, reserve/release over HTTP, and the
//! `demo.inventory.level` gauge.
//!
//! Routes: `POST /inventory/reserve`, `POST /inventory/release` (both take
//! `{"order_id": "...", "items": [{"product_id": N, "quantity": N}]}`), `GET /inventory/stock`.
//! Stock that falls under a tenth of its initial level is restocked (a span event says so),
//! so long load runs do not run dry.
//!
//! Tests: `tests/handlers.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::metrics::{Meter, ObservableGauge};
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::config::SimLatency;
use crate::front::{catalog, OrderItem};
use crate::http::error_response;

/// Routes of this service that faults may target.
pub const ROUTES: &[&str] = &[
    "/inventory/reserve",
    "/inventory/release",
    "/inventory/stock",
];

/// Body of reserve and release calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockRequest {
    /// The order the stock is for.
    pub order_id: String,
    /// Products and quantities.
    pub items: Vec<OrderItem>,
}

/// Answer of reserve and release calls.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StockResponse {
    /// The order.
    pub order_id: String,
    /// Stock left per product id after the change.
    pub levels: BTreeMap<u64, i64>,
}

/// Stock levels shared by handlers and the gauge callback.
#[derive(Clone, Debug)]
pub struct Stock {
    levels: Arc<Mutex<BTreeMap<u64, i64>>>,
    initial: Arc<BTreeMap<u64, i64>>,
}

impl Default for Stock {
    fn default() -> Self {
        let initial: BTreeMap<u64, i64> =
            catalog().iter().map(|p| (p.id, p.initial_stock)).collect();
        Stock {
            levels: Arc::new(Mutex::new(initial.clone())),
            initial: Arc::new(initial),
        }
    }
}

impl Stock {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, i64>> {
        self.levels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Current levels.
    pub fn levels(&self) -> BTreeMap<u64, i64> {
        self.lock().clone()
    }

    /// Reserves all items or none.
    ///
    /// # Errors
    /// `(404, message)` for an unknown product, `(409, message)` when stock is short.
    pub fn reserve(&self, items: &[OrderItem]) -> Result<BTreeMap<u64, i64>, (StatusCode, String)> {
        let mut levels = self.lock();
        for it in items {
            let have = *levels.get(&it.product_id).ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("unknown product_id {}", it.product_id),
                )
            })?;
            let want: i64 = items
                .iter()
                .filter(|o| o.product_id == it.product_id)
                .map(|o| i64::from(o.quantity))
                .sum();
            if have < want {
                return Err((
                    StatusCode::CONFLICT,
                    format!(
                        "insufficient stock for product {}: want {want}, have {have}",
                        it.product_id
                    ),
                ));
            }
        }
        let mut touched = BTreeMap::new();
        for it in items {
            let level = levels.entry(it.product_id).or_insert(0);
            *level -= i64::from(it.quantity);
            let initial = self.initial.get(&it.product_id).copied().unwrap_or(0);
            if *level < initial / 10 {
                tracing::debug!(
                    product.id = it.product_id,
                    from = *level,
                    to = initial,
                    "restocked"
                );
                *level = initial;
            }
            touched.insert(it.product_id, *level);
        }
        Ok(touched)
    }

    /// Returns items to stock (unknown products are ignored).
    pub fn release(&self, items: &[OrderItem]) -> BTreeMap<u64, i64> {
        let mut levels = self.lock();
        let mut touched = BTreeMap::new();
        for it in items {
            if let Some(level) = levels.get_mut(&it.product_id) {
                *level += i64::from(it.quantity);
                touched.insert(it.product_id, *level);
            }
        }
        touched
    }
}

#[derive(Clone)]
struct InvState {
    stock: Stock,
    sim: SimLatency,
    _gauge: Arc<ObservableGauge<i64>>,
}

/// The inventory routes (without the shared middleware; see [`crate::server::app`]).
pub fn routes(meter: &Meter, sim: SimLatency) -> Router {
    let stock = Stock::default();
    let observed = stock.clone();
    let gauge = meter
        .i64_observable_gauge("demo.inventory.level")
        .with_unit("{item}")
        .with_description("Items in stock per product.")
        .with_callback(move |obs| {
            for (id, level) in observed.levels() {
                obs.observe(level, &[KeyValue::new("product.id", id as i64)]);
            }
        })
        .build();
    let state = InvState {
        stock,
        sim,
        _gauge: Arc::new(gauge),
    };
    Router::new()
        .route("/inventory/reserve", post(reserve))
        .route("/inventory/release", post(release))
        .route("/inventory/stock", get(stock_levels))
        .with_state(state)
}

fn parse(
    body: Result<Json<StockRequest>, JsonRejection>,
) -> Result<StockRequest, (StatusCode, String)> {
    body.map(|Json(b)| b).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid stock request JSON: {}; expected {{\"order_id\": \"...\", \"items\": [{{\"product_id\": N, \"quantity\": N}}]}}", e.body_text()),
        )
    })
}

async fn reserve(
    State(st): State<InvState>,
    body: Result<Json<StockRequest>, JsonRejection>,
) -> Response {
    let req = match parse(body) {
        Ok(r) => r,
        Err((code, msg)) => return error_response(code, msg),
    };
    let span = tracing::info_span!(
        "inventory.reserve",
        demo.service = "demo-inventory",
        order.id = %req.order_id,
        order.items = req.items.len(),
    );
    async {
        st.sim.pause(4.0, 12.0).await;
        match st.stock.reserve(&req.items) {
            Ok(levels) => {
                tracing::debug!(order.id = %req.order_id, "stock reserved");
                Json(StockResponse {
                    order_id: req.order_id.clone(),
                    levels,
                })
                .into_response()
            }
            Err((code, msg)) => {
                tracing::debug!(order.id = %req.order_id, reason = %msg, "reservation refused");
                error_response(code, msg)
            }
        }
    }
    .instrument(span)
    .await
}

async fn release(
    State(st): State<InvState>,
    body: Result<Json<StockRequest>, JsonRejection>,
) -> Response {
    let req = match parse(body) {
        Ok(r) => r,
        Err((code, msg)) => return error_response(code, msg),
    };
    let span = tracing::info_span!("inventory.release", demo.service = "demo-inventory", order.id = %req.order_id);
    async {
        st.sim.pause(2.0, 4.0).await;
        let levels = st.stock.release(&req.items);
        tracing::debug!(order.id = %req.order_id, "stock released");
        Json(StockResponse {
            order_id: req.order_id.clone(),
            levels,
        })
        .into_response()
    }
    .instrument(span)
    .await
}

async fn stock_levels(State(st): State<InvState>) -> Json<BTreeMap<u64, i64>> {
    Json(st.stock.levels())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_all_or_nothing() {
        let s = Stock::default();
        let before = s.levels();
        let (id, have) = before.iter().next().map(|(k, v)| (*k, *v)).unwrap();
        let err = s
            .reserve(&[
                OrderItem {
                    product_id: id,
                    quantity: 1,
                },
                OrderItem {
                    product_id: 9_999,
                    quantity: 1,
                },
            ])
            .unwrap_err();
        assert_eq!(err.0, StatusCode::NOT_FOUND);
        assert_eq!(s.levels(), before);
        let err = s
            .reserve(&[OrderItem {
                product_id: id,
                quantity: (have + 1) as u32,
            }])
            .unwrap_err();
        assert_eq!(err.0, StatusCode::CONFLICT);
        let after = s
            .reserve(&[OrderItem {
                product_id: id,
                quantity: 2,
            }])
            .unwrap();
        assert_eq!(after[&id], have - 2);
        s.release(&[OrderItem {
            product_id: id,
            quantity: 2,
        }]);
        assert_eq!(s.levels(), before);
    }

    #[test]
    fn low_stock_is_restocked() {
        let s = Stock::default();
        let (id, have) = s.levels().into_iter().next().unwrap();
        let after = s
            .reserve(&[OrderItem {
                product_id: id,
                quantity: (have - 1) as u32,
            }])
            .unwrap();
        assert_eq!(after[&id], have);
    }
}
