//! The connection layer under both OTLP transports: accept loop, optional TLS, authentication,
//! and the limits that keep many or slow clients from taking the receiver down.
//!
//! Every accepted connection gets a slot in a table bounded by `max_connections`. A connection
//! is *idle* while no request is in flight; it is closed (gracefully: HTTP/2 GOAWAY, HTTP/1
//! `Connection: close`, then dropped after [`CLOSE_GRACE`]) when it stays idle longer than its
//! limit: before its first request the `first_request` limit (HTTP `read_header_timeout`, gRPC
//! `max_connection_idle`), after it the idle limit (HTTP `idle_timeout`, gRPC
//! `max_connection_idle`). A client that dribbles a request byte by byte (slow-loris) never
//! starts a request, so it is closed by the first limit whatever it sends; HTTP/1 also has
//! hyper's header read timeout. TLS handshakes must finish within [`HANDSHAKE_TIMEOUT`]. When
//! the table is full, the idle connection that never completed a request (then the one idle the
//! longest) is evicted to make room; when every connection is busy, the new one is refused.
//! Requests in flight are never cut by these limits.
//!
//! Per-connection memory is bounded by hyper's buffers (HTTP/1 read buffer, HTTP/2 windows and
//! `max_concurrent_streams`), plus the request bodies the handlers limit themselves.
//!
//! Own metrics: `otelcol_receiver_open_connections`,
//! `otelcol_receiver_connections_closed_total{reason}` (`idle`, `evicted`, `refused`,
//! `max_age`, `tls_handshake`), and the TLS/auth counters of [`tls`] and
//! [`crate::extension::auth`].
//!
//! Tests: `cargo test -p otel-collector receiver::server` and `tests/sec_connections.rs`.

pub mod tls;

use crate::extension::auth::{AuthFailure, ServerAuth};
use crate::receiver::answer::ErrorAnswer;
use crate::telemetry::{Counter, Gauge, SelfMetrics};
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prost::Message as _;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// A TLS handshake must complete within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a graceful close, a connection that has not finished is dropped after this long.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Default `max_connections` per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default HTTP/2 streams per connection when the config says 0 (hyper's default).
const DEFAULT_MAX_STREAMS: u32 = 200;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC: HTTP/2 only.
    Grpc,
    /// OTLP/HTTP: HTTP/1.1 and HTTP/2.
    Http,
}

/// Connection limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections held at once (idle ones are evicted beyond it).
    pub max_connections: usize,
    /// How long a new connection may stay without starting a request.
    pub first_request: Option<Duration>,
    /// How long a connection may stay idle between requests.
    pub idle: Option<Duration>,
    /// Close a connection (gracefully) after it has been open this long.
    pub max_age: Option<Duration>,
    /// After `max_age`, how long in-flight requests get before the connection is dropped.
    pub max_age_grace: Option<Duration>,
    /// HTTP/1 only: the whole header block must arrive within this long.
    pub header_read: Option<Duration>,
    /// HTTP/2 keepalive ping interval (none: no pings).
    pub keepalive_time: Option<Duration>,
    /// HTTP/2: close when a ping is not answered within this long.
    pub keepalive_timeout: Option<Duration>,
    /// HTTP/2 concurrent streams per connection (0: hyper's default, 200).
    pub max_concurrent_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            first_request: None,
            idle: None,
            max_age: None,
            max_age_grace: None,
            header_read: None,
            keepalive_time: None,
            keepalive_timeout: None,
            max_concurrent_streams: 0,
        }
    }
}

/// Everything one listener needs besides the socket and the router.
#[derive(Clone)]
pub struct ServeOptions {
    /// Receiver id, for logs and metrics.
    pub receiver: String,
    /// `grpc` or `http`.
    pub protocol: Protocol,
    /// Limits.
    pub limits: Limits,
    /// TLS, when configured.
    pub tls: Option<Arc<tls::ReloadingAcceptor>>,
    /// Authentication, when configured.
    pub auth: Option<ServerAuth>,
}

impl Protocol {
    /// The `transport` label: `grpc` or `http`.
    pub fn transport(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// One connection's slot in the table.
struct Slot {
    /// Requests started on it.
    started: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds since the table's epoch when it last became idle (or was opened).
    idle_since_ms: AtomicU64,
    opened: Instant,
    /// Cancelled to ask the connection to close (eviction).
    evict: CancellationToken,
}

/// The connections of one listener.
struct Table {
    epoch: Instant,
    max: usize,
    next_id: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    open: Gauge,
    closed: HashMap<&'static str, Counter>,
}

const CLOSE_REASONS: [&str; 5] = ["idle", "evicted", "refused", "max_age", "tls_handshake"];

impl Table {
    fn new(receiver: &str, transport: &'static str, max: usize) -> Self {
        let m = SelfMetrics::global();
        let labels = vec![
            ("receiver", receiver.to_string()),
            ("transport", transport.to_string()),
        ];
        let closed = CLOSE_REASONS
            .iter()
            .map(|r| {
                let mut l = labels.clone();
                l.push(("reason", r.to_string()));
                (
                    *r,
                    m.counter(
                        "otelcol_receiver_connections_closed_total",
                        "Connections a receiver closed or refused to protect itself, by reason.",
                        l,
                    ),
                )
            })
            .collect();
        Table {
            epoch: Instant::now(),
            max: max.max(1),
            next_id: AtomicU64::new(0),
            slots: Mutex::new(HashMap::new()),
            open: m.gauge(
                "otelcol_receiver_open_connections",
                "Connections a receiver holds open now.",
                labels,
            ),
            closed,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn count(&self, reason: &'static str) {
        if let Some(c) = self.closed.get(reason) {
            c.add(1);
        }
    }

    /// A slot for a new connection, evicting an idle one when the table is full; `None` when
    /// every connection is busy (the new one is refused).
    fn admit(&self) -> Option<(u64, Arc<Slot>)> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let live = slots.values().filter(|s| !s.evict.is_cancelled()).count();
        if live >= self.max {
            let victim = slots
                .values()
                .filter(|s| !s.evict.is_cancelled() && s.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|s| {
                    (
                        s.started.load(Ordering::Relaxed) > 0,
                        s.idle_since_ms.load(Ordering::Relaxed),
                    )
                })
                .cloned();
            match victim {
                Some(v) => {
                    v.evict.cancel();
                    self.count("evicted");
                }
                None => {
                    self.count("refused");
                    return None;
                }
            }
        }
        // Evicted connections still closing count too, within a small slack.
        if slots.len() >= self.max + self.max / 8 + 8 {
            self.count("refused");
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            opened: Instant::now(),
            evict: CancellationToken::new(),
        });
        slots.insert(id, slot.clone());
        self.open.set(slots.len() as i64);
        Some((id, slot))
    }

    fn release(&self, id: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.remove(&id);
        self.open.set(slots.len() as i64);
    }
}

/// Removes a connection's slot when its task ends, however it ends.
struct SlotGuard {
    table: Arc<Table>,
    id: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.table.release(self.id);
    }
}

/// Marks a request in flight on its connection until dropped.
struct InFlight {
    slot: Arc<Slot>,
    table: Arc<Table>,
}

impl InFlight {
    fn start(slot: &Arc<Slot>, table: &Arc<Table>) -> Self {
        slot.started.fetch_add(1, Ordering::Relaxed);
        slot.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            slot: slot.clone(),
            table: table.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot
            .idle_since_ms
            .store(self.table.now_ms(), Ordering::Relaxed);
        self.slot.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The I/O of one connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Serves `router` on `listener` under `options` until `stop` is cancelled; then stops
/// accepting, asks every connection to close gracefully and returns when all have ended.
pub fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    options: ServeOptions,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let transport = options.protocol.transport();
    let table = Arc::new(Table::new(
        &options.receiver,
        transport,
        options.limits.max_connections,
    ));
    let builder = Arc::new(http_builder(options.protocol, &options.limits));
    let options = Arc::new(options);
    async move {
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(receiver = %options.receiver, transport, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some((id, slot)) = table.admit() else {
                tracing::debug!(receiver = %options.receiver, transport, %peer, "connection refused: every connection is busy (max_connections)");
                drop(tcp);
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let guard = SlotGuard {
                table: table.clone(),
                id,
            };
            tracker.spawn(connection(
                tcp,
                peer,
                slot,
                guard,
                options.clone(),
                builder.clone(),
                router.clone(),
                stop.clone(),
            ));
        }
        tracker.close();
        tracker.wait().await;
    }
}

fn http_builder(protocol: Protocol, limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    {
        let mut h1 = b.http1();
        h1.timer(TokioTimer::new()).keep_alive(true);
        h1.header_read_timeout(limits.header_read);
    }
    {
        let mut h2 = b.http2();
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(if limits.max_concurrent_streams == 0 {
                DEFAULT_MAX_STREAMS
            } else {
                limits.max_concurrent_streams
            })
            .keep_alive_interval(limits.keepalive_time);
        if let Some(t) = limits.keepalive_timeout {
            h2.keep_alive_timeout(t);
        }
    }
    if protocol == Protocol::Grpc {
        b = b.http2_only();
    }
    b
}

/// Why a connection's watchdog closes it, if it should.
fn close_reason(slot: &Slot, table: &Table, limits: &Limits) -> Option<&'static str> {
    if let Some(age) = limits.max_age {
        if slot.opened.elapsed() >= age {
            return Some("max_age");
        }
    }
    if slot.in_flight.load(Ordering::Acquire) > 0 {
        return None;
    }
    let limit = if slot.started.load(Ordering::Relaxed) == 0 {
        limits.first_request.or(limits.idle)
    } else {
        limits.idle
    }?;
    let idle_ms = table
        .now_ms()
        .saturating_sub(slot.idle_since_ms.load(Ordering::Relaxed));
    (Duration::from_millis(idle_ms) >= limit).then_some("idle")
}

/// How often a connection's watchdog looks at it.
fn watch_period(limits: &Limits) -> Duration {
    [limits.first_request, limits.idle, limits.max_age]
        .into_iter()
        .flatten()
        .min()
        .map_or(Duration::from_secs(1), |d| d / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(1))
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    slot: Arc<Slot>,
    guard: SlotGuard,
    options: Arc<ServeOptions>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: axum::Router,
    stop: CancellationToken,
) {
    let table = guard.table.clone();
    let io: Box<dyn Io> = match &options.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp));
            let done = tokio::select! {
                r = handshake => r,
                _ = slot.evict.cancelled() => { return; }
                _ = stop.cancelled() => { return; }
            };
            match done {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    tls.handshake_failures.add(1);
                    table.count("tls_handshake");
                    tracing::debug!(receiver = %options.receiver, %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tls.handshake_failures.add(1);
                    table.count("tls_handshake");
                    tracing::debug!(receiver = %options.receiver, %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let service = {
        let slot = slot.clone();
        let table = table.clone();
        let options = options.clone();
        hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let in_flight = InFlight::start(&slot, &table);
            let router = router.clone();
            let options = options.clone();
            async move {
                let resp = handle(req, router, &options).await;
                drop(in_flight);
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(watch_period(&options.limits));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let hard_deadline = closing.unwrap_or_else(|| tokio::time::Instant::now() + CLOSE_GRACE);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(receiver = %options.receiver, %peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = tokio::time::sleep_until(hard_deadline), if closing.is_some() => {
                tracing::debug!(receiver = %options.receiver, %peer, "connection dropped after the close grace period");
                break;
            }
            _ = stop.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            _ = slot.evict.cancelled(), if closing.is_none() => {
                tracing::debug!(receiver = %options.receiver, %peer, "idle connection evicted: max_connections reached");
                if slot.started.load(Ordering::Relaxed) == 0 {
                    // Never used: nothing to tell the client, free the slot at once.
                    break;
                }
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + idle_grace(&slot));
            }
            _ = tick.tick(), if closing.is_none() => {
                if let Some(reason) = close_reason(&slot, &table, &options.limits) {
                    table.count(reason);
                    tracing::debug!(receiver = %options.receiver, %peer, reason, "closing connection");
                    conn.as_mut().graceful_shutdown();
                    let grace = if reason == "max_age" {
                        options.limits.max_age_grace.unwrap_or(CLOSE_GRACE)
                    } else {
                        idle_grace(&slot)
                    };
                    closing = Some(tokio::time::Instant::now() + grace);
                }
            }
        }
    }
    drop(guard);
}

/// An idle connection gets a short grace (for the GOAWAY to go out); a busy one the full one.
fn idle_grace(slot: &Slot) -> Duration {
    if slot.in_flight.load(Ordering::Acquire) == 0 {
        Duration::from_millis(500)
    } else {
        CLOSE_GRACE
    }
}

/// Authenticates (when configured) and routes one request.
async fn handle(
    req: http::Request<Incoming>,
    router: axum::Router,
    options: &ServeOptions,
) -> http::Response<Body> {
    if let Some(auth) = &options.auth {
        if let Err(failure) = auth.check(req.headers()).await {
            return unauthenticated(options.protocol, req.headers(), failure);
        }
    }
    match router.oneshot(req.map(Body::new)).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// The 401 / `UNAUTHENTICATED` answer, in the request's protocol and format.
fn unauthenticated(
    protocol: Protocol,
    headers: &http::HeaderMap,
    failure: AuthFailure,
) -> http::Response<Body> {
    let answer = ErrorAnswer {
        grpc: tonic::Code::Unauthenticated,
        http: http::StatusCode::UNAUTHORIZED,
        message: failure.message().to_string(),
        retry_after: None,
    };
    match protocol {
        Protocol::Grpc => {
            let (parts, body) = answer.grpc_status().into_http::<Body>().into_parts();
            let _ = body;
            http::Response::from_parts(parts, Body::empty())
        }
        Protocol::Http => {
            let json = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim_start().starts_with("application/json"));
            let (ct, body) = if json {
                (
                    "application/json",
                    answer.json_body().to_string().into_bytes(),
                )
            } else {
                (
                    "application/x-protobuf",
                    answer.rpc_status().encode_to_vec(),
                )
            };
            http::Response::builder()
                .status(http::StatusCode::UNAUTHORIZED)
                .header(http::header::CONTENT_TYPE, ct)
                .header(http::header::WWW_AUTHENTICATE, failure.challenge())
                .body(Body::from(body))
                .unwrap_or_else(|_| http::Response::new(Body::empty()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(started: u64, in_flight: usize, idle_since_ms: u64) -> Arc<Slot> {
        Arc::new(Slot {
            started: AtomicU64::new(started),
            in_flight: AtomicUsize::new(in_flight),
            idle_since_ms: AtomicU64::new(idle_since_ms),
            opened: Instant::now(),
            evict: CancellationToken::new(),
        })
    }

    #[test]
    fn a_full_table_evicts_an_unused_idle_connection_first_and_refuses_when_all_are_busy() {
        let t = Table::new("otlp/unit", "http", 2);
        let (_, a) = t.admit().unwrap();
        let (_, b) = t.admit().unwrap();
        a.started.store(3, Ordering::Relaxed); // a served requests, b never did
        let (_, c) = t.admit().expect("room made by eviction");
        assert!(
            b.evict.is_cancelled(),
            "the never-used connection goes first"
        );
        assert!(!a.evict.is_cancelled());
        a.in_flight.store(1, Ordering::Relaxed);
        c.in_flight.store(1, Ordering::Relaxed);
        assert!(t.admit().is_none(), "every live connection is busy");
    }

    #[test]
    fn idle_limits_apply_before_and_after_the_first_request_but_never_in_flight() {
        let t = Table::new("otlp/unit2", "grpc", 10);
        let limits = Limits {
            first_request: Some(Duration::from_millis(0)),
            idle: Some(Duration::from_secs(3600)),
            ..Limits::default()
        };
        assert_eq!(close_reason(&slot(0, 0, 0), &t, &limits), Some("idle"));
        assert_eq!(close_reason(&slot(1, 0, t.now_ms()), &t, &limits), None);
        assert_eq!(close_reason(&slot(0, 1, 0), &t, &limits), None);
        let no_limits = Limits::default();
        assert_eq!(close_reason(&slot(0, 0, 0), &t, &no_limits), None);
    }
}
