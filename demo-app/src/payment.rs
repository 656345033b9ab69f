//! The payment service: authorises and captures a charge with card-network-like latency.
//!
//! Route: `POST /payments/charge` with `{"order_id": "...", "user_id": N, "amount_cents": N}`;
//! answers `{"payment_id": "...", "status": "captured"}`, or 402 when the amount exceeds
//! [`LIMIT_CENTS`] (a deterministic decline, so demos can show a 4xx path).
//!
//! Tests: `tests/handlers.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::config::SimLatency;
use crate::http::error_response;

/// Routes of this service that faults may target.
pub const ROUTES: &[&str] = &["/payments/charge"];

/// Charges above this many cents are declined with 402.
pub const LIMIT_CENTS: u64 = 1_000_000;

/// Body of a charge call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// The order being paid.
    pub order_id: String,
    /// The paying user.
    pub user_id: u64,
    /// Amount in US cents.
    pub amount_cents: u64,
}

/// Answer of a successful charge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChargeResponse {
    /// Payment reference.
    pub payment_id: String,
    /// Always `captured` on success.
    pub status: String,
}

#[derive(Clone)]
struct PayState {
    sim: SimLatency,
    next: Arc<AtomicU64>,
}

/// The payment routes (without the shared middleware; see [`crate::server::app`]).
pub fn routes(sim: SimLatency) -> Router {
    Router::new()
        .route("/payments/charge", post(charge))
        .with_state(PayState {
            sim,
            next: Arc::new(AtomicU64::new(1)),
        })
}

async fn charge(
    State(st): State<PayState>,
    body: Result<Json<ChargeRequest>, JsonRejection>,
) -> Response {
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("invalid charge JSON: {}; expected {{\"order_id\": \"...\", \"user_id\": N, \"amount_cents\": N}}", e.body_text()),
            )
        }
    };
    let auth = tracing::info_span!(
        "payment.authorize",
        demo.service = "demo-payment",
        order.id = %req.order_id,
        payment.amount_cents = req.amount_cents,
    );
    let authorised = async {
        st.sim.pause(15.0, 30.0).await;
        if req.amount_cents > LIMIT_CENTS {
            tracing::debug!(limit_cents = LIMIT_CENTS, "payment declined");
            false
        } else {
            tracing::debug!("payment authorised");
            true
        }
    }
    .instrument(auth)
    .await;
    if !authorised {
        return error_response(
            StatusCode::PAYMENT_REQUIRED,
            format!(
                "payment declined: {} cents exceeds the limit of {LIMIT_CENTS} cents",
                req.amount_cents
            ),
        );
    }
    let payment_id = format!("pay-{:08}", st.next.fetch_add(1, Ordering::Relaxed));
    let capture = tracing::info_span!("payment.capture", demo.service = "demo-payment", payment.id = %payment_id);
    async {
        st.sim.pause(5.0, 10.0).await;
        tracing::debug!(payment.id = %payment_id, "payment captured");
    }
    .instrument(capture)
    .await;
    Json(ChargeResponse {
        payment_id,
        status: "captured".into(),
    })
    .into_response()
}
