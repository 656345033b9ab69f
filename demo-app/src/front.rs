//! The frontend service: the public shop API.
//!
//! Routes: `GET /api/users`, `GET /api/users/{id}`, `GET /api/products`, `POST /api/orders`
//! (body `{"user_id": N, "items": [{"product_id": N, "quantity": N}]}`). An order reserves
//! stock at the inventory service and charges the payment service over HTTP, so one order is
//! one trace across three services; the answer carries the `trace_id`.
//!
//! Tests: `tests/handlers.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, TraceContextExt};
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::config::SimLatency;
use crate::http::{error_response, CallError, Downstream, TracedClient};
use crate::inventory::{StockRequest, StockResponse};
use crate::metrics::ShopMetrics;
use crate::payment::{ChargeRequest, ChargeResponse};
use crate::telemetry::SERVICE_FIELD;

/// Routes of this service that faults may target.
pub const ROUTES: &[&str] = &[
    "/api/users",
    "/api/users/{id}",
    "/api/products",
    "/api/orders",
];

/// Most distinct lines in one order.
pub const MAX_ORDER_LINES: usize = 20;
/// Largest quantity of one line.
pub const MAX_QUANTITY: u32 = 100;

/// A shop user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    /// Id, 1-based.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

/// A product of the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Product {
    /// Id, 1-based.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Unit price in US cents.
    pub price_cents: u64,
    /// Stock the inventory service starts with.
    #[serde(skip)]
    pub initial_stock: i64,
}

/// One order line.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrderItem {
    /// A product id from `/api/products`.
    pub product_id: u64,
    /// How many, 1..=[`MAX_QUANTITY`].
    pub quantity: u32,
}

/// Body of `POST /api/orders`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// A user id from `/api/users`.
    pub user_id: u64,
    /// 1..=[`MAX_ORDER_LINES`] lines.
    pub items: Vec<OrderItem>,
}

/// Answer of a created order (201).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Order {
    /// Order id.
    pub order_id: String,
    /// The buyer.
    pub user_id: u64,
    /// The lines.
    pub items: Vec<OrderItem>,
    /// Total in US cents.
    pub total_cents: u64,
    /// Payment reference.
    pub payment_id: String,
    /// The order's trace id (empty when tracing is off), to look the trace up.
    pub trace_id: String,
}

const PRODUCTS: &[(&str, u64)] = &[
    ("Espresso beans 1kg", 2_490),
    ("Pour-over kettle", 5_900),
    ("Ceramic dripper", 2_200),
    ("Paper filters x100", 650),
    ("Burr grinder", 14_900),
    ("Milk jug", 1_800),
    ("Travel mug", 2_400),
    ("Digital scale", 3_900),
    ("Cold brew bottle", 2_900),
    ("Tamper", 3_200),
    ("Knock box", 2_700),
    ("Decaf beans 500g", 1_490),
    ("Tasting cups x4", 3_600),
    ("Cleaning tablets", 990),
    ("Espresso machine", 89_900),
    ("Aeropress", 3_990),
    ("Moka pot", 3_490),
    ("French press", 2_990),
    ("Barista apron", 3_300),
    ("Gift card", 5_000),
];

const FIRST: &[&str] = &[
    "Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Edsger",
];
const LAST: &[&str] = &["Lovelace", "Turing", "Hopper", "Torvalds", "Liskov"];

/// The fixed catalog (20 products).
pub fn catalog() -> Vec<Product> {
    PRODUCTS
        .iter()
        .enumerate()
        .map(|(i, (name, price))| Product {
            id: i as u64 + 1,
            name: (*name).to_string(),
            price_cents: *price,
            initial_stock: 5_000,
        })
        .collect()
}

/// The fixed user list (50 users).
pub fn users() -> Vec<User> {
    (0..50u64)
        .map(|i| {
            let first = FIRST[(i as usize) % FIRST.len()];
            let last = LAST[(i as usize / FIRST.len()) % LAST.len()];
            User {
                id: i + 1,
                name: format!("{first} {last}"),
                email: format!(
                    "{}.{}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                ),
            }
        })
        .collect()
}

/// What the frontend handlers share.
#[derive(Clone, Debug)]
pub struct FrontState {
    users: Arc<Vec<User>>,
    products: Arc<HashMap<u64, Product>>,
    client: TracedClient,
    inventory: Downstream,
    payment: Downstream,
    shop: ShopMetrics,
    sim: SimLatency,
    next_order: Arc<AtomicU64>,
}

impl FrontState {
    /// Frontend state calling `inventory` and `payment` through `client`.
    pub fn new(
        client: TracedClient,
        inventory: Downstream,
        payment: Downstream,
        shop: ShopMetrics,
        sim: SimLatency,
    ) -> Self {
        FrontState {
            users: Arc::new(users()),
            products: Arc::new(catalog().into_iter().map(|p| (p.id, p)).collect()),
            client,
            inventory,
            payment,
            shop,
            sim,
            next_order: Arc::new(AtomicU64::new(1)),
        }
    }
}

/// The frontend routes (without the shared middleware; see [`crate::server::app`]).
pub fn routes(state: FrontState) -> Router {
    Router::new()
        .route("/api/users", get(list_users))
        .route("/api/users/{id}", get(get_user))
        .route("/api/products", get(list_products))
        .route("/api/orders", post(create_order))
        .with_state(state)
}

/// Runs `work` (a read of `table`) inside a `db.query` client span named `name` (`"SELECT
/// {table}"`, spelled out so nothing is formatted per request). Like the HTTP spans it is made
/// with the OpenTelemetry API directly: it is the most frequent span of the shop (one per list
/// or user read) and needs no `tracing` span for logs.
async fn db_select<F: Future>(name: &'static str, table: &'static str, work: F) -> F::Output {
    if !crate::telemetry::traces_enabled() {
        return work.await;
    }
    let parent = crate::http::current_otel_context();
    let scope = crate::http::start_span(name, SpanKind::Client, parent, |_| {
        vec![
            KeyValue::new(SERVICE_FIELD, "demo-frontend"),
            KeyValue::new("db.system.name", "in-memory"),
            KeyValue::new("db.operation.name", "SELECT"),
            KeyValue::new("db.collection.name", table),
        ]
    });
    let out = work.with_context(scope.cx.clone()).await;
    if let Some(span) = scope.span() {
        span.end();
    }
    out
}

async fn list_users(State(st): State<FrontState>) -> Json<Vec<User>> {
    db_select("SELECT users", "users", st.sim.pause(3.0, 6.0)).await;
    Json(st.users.as_ref().clone())
}

async fn get_user(State(st): State<FrontState>, id: Result<Path<u64>, PathRejection>) -> Response {
    let Path(id) = match id {
        Ok(id) => id,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("invalid user id: {}; use a positive integer", e.body_text()),
            )
        }
    };
    db_select("SELECT users", "users", st.sim.pause(1.0, 3.0)).await;
    match st.users.iter().find(|u| u.id == id) {
        Some(u) => Json(u.clone()).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            format!("user {id} not found; see GET /api/users"),
        ),
    }
}

async fn list_products(State(st): State<FrontState>) -> Json<Vec<Product>> {
    db_select("SELECT products", "products", st.sim.pause(2.0, 5.0)).await;
    let mut list: Vec<Product> = st.products.values().cloned().collect();
    list.sort_by_key(|p| p.id);
    Json(list)
}

/// Checks an order against the catalog and returns its total in cents.
fn validate(st: &FrontState, req: &OrderRequest) -> Result<u64, (StatusCode, String)> {
    if !st.users.iter().any(|u| u.id == req.user_id) {
        return Err((
            StatusCode::NOT_FOUND,
            format!("user {} not found; see GET /api/users", req.user_id),
        ));
    }
    if req.items.is_empty() || req.items.len() > MAX_ORDER_LINES {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "an order needs 1 to {MAX_ORDER_LINES} items, got {}",
                req.items.len()
            ),
        ));
    }
    let mut total = 0u64;
    for it in &req.items {
        let Some(p) = st.products.get(&it.product_id) else {
            return Err((
                StatusCode::NOT_FOUND,
                format!("product {} not found; see GET /api/products", it.product_id),
            ));
        };
        if it.quantity == 0 || it.quantity > MAX_QUANTITY {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "quantity {} of product {} is out of range: use 1..={MAX_QUANTITY}",
                    it.quantity, it.product_id
                ),
            ));
        }
        total += p.price_cents * u64::from(it.quantity);
    }
    Ok(total)
}

fn downstream_error(e: &CallError) -> Response {
    match e {
        // The callee's own verdict on the order (unknown product, no stock, declined) is passed on.
        CallError::Status {
            status, message, ..
        } if (400..500).contains(status) => error_response(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY),
            message.clone(),
        ),
        _ => {
            tracing::error!(error = %e, "downstream call failed");
            error_response(StatusCode::BAD_GATEWAY, e.to_string())
        }
    }
}

async fn create_order(
    State(st): State<FrontState>,
    body: Result<Json<OrderRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid order JSON: {}; expected {{\"user_id\": N, \"items\": [{{\"product_id\": N, \"quantity\": N}}]}}",
                    e.body_text()
                ),
            )
        }
    };
    // Validation is a few in-memory lookups: no span of its own (a rejected order's server
    // span carries the 4xx status and the answer says why).
    let total = match validate(&st, &req) {
        Ok(t) => t,
        Err((code, msg)) => return error_response(code, msg),
    };
    let order_id = format!("ord-{:08}", st.next_order.fetch_add(1, Ordering::Relaxed));
    let span = tracing::info_span!(
        "order.place",
        demo.service = "demo-frontend",
        order.id = %order_id,
        order.total_cents = total,
        enduser.id = req.user_id,
    );
    // The request's trace id from its server span (the current OpenTelemetry context), so an
    // order the sampler dropped, whose `order.place` span is not made at all, answers with its
    // trace id too, as its log lines do.
    let trace_id = opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            sc.trace_id().to_string()
        } else {
            String::new()
        }
    });
    async {
        let stock = StockRequest {
            order_id: order_id.clone(),
            items: req.items.clone(),
        };
        if let Err(e) = st
            .client
            .post_json::<_, StockResponse>(&st.inventory, "/inventory/reserve", &stock)
            .await
        {
            tracing::debug!(error = %e, "order rejected at inventory");
            return downstream_error(&e);
        }
        tracing::debug!("stock reserved");
        let charge = ChargeRequest {
            order_id: order_id.clone(),
            user_id: req.user_id,
            amount_cents: total,
        };
        let payment = match st
            .client
            .post_json::<_, ChargeResponse>(&st.payment, "/payments/charge", &charge)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "payment failed; releasing stock");
                if let Err(re) = st
                    .client
                    .post_json::<_, StockResponse>(&st.inventory, "/inventory/release", &stock)
                    .await
                {
                    tracing::error!(error = %re, "stock release failed");
                }
                return downstream_error(&e);
            }
        };
        st.sim.pause(1.0, 2.0).await;
        st.shop
            .orders_created
            .add(1, &[KeyValue::new("order.status", "created")]);
        st.shop.order_value.record(total as f64 / 100.0, &[]);
        tracing::info!(payment.id = %payment.payment_id, total_cents = total, "order created");
        (
            StatusCode::CREATED,
            Json(Order {
                order_id: order_id.clone(),
                user_id: req.user_id,
                items: req.items.clone(),
                total_cents: total,
                payment_id: payment.payment_id,
                trace_id,
            }),
        )
            .into_response()
    }
    .instrument(span)
    .await
}
