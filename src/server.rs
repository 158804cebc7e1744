//! The agent's HTTP endpoints (axum): `/metrics`, `/healthz`, `/sessions`, and `/`.
//!
//! Contract: GET only (other methods get 405); `/metrics` serves OpenMetrics text to clients
//! that accept it (`Accept: application/openmetrics-text`) and the Prometheus text format
//! (0.0.4) to everyone else; `/healthz` is 200 once the capture is open and 503 before;
//! `/sessions` is the live [`SessionsDocument`] (`?limit=N` open sessions listed, the most
//! severe, and at most N closed ones, the newest; [`DEFAULT_SESSIONS_LIMIT`] by default, 0 for
//! all; `?client_id=PATTERN` only sessions whose client id matches the glob; `?sort=deadline` the
//! open sessions nearest their deadline; `?format=text` a table for people; a query that does not
//! read is answered 400 with what is accepted: [`crate::sessions_query`]), asked of the capture thread (which
//! owns the sessions) through [`SessionRequests`] and answered within its loop's wait (at most
//! 250 ms, plus the time to read every open session: about 0.2 s for a million).
//! [`serve`] bounds what a client can hold: request headers must arrive within
//! [`HEADER_TIMEOUT`] and fit in [`MAX_HEADER_BYTES`], a request is answered within
//! [`REQUEST_TIMEOUT`], and at most [`MAX_CONNECTIONS`] connections are served at once.

use crate::sessions_query::{SessionsFormat, SessionsQuery};
use crate::sink::metrics::openmetrics_to_prometheus;
use crate::sink::report::{SessionsDocument, SessionsSelection};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

/// Time allowed for a request's headers to arrive (slow clients are dropped).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Time allowed to answer one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 64;

/// Serves the router on `listener` until `shutdown` completes.
pub async fn serve(listener: tokio::net::TcpListener, router: Router, shutdown: impl std::future::Future<Output = ()>) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let service = hyper_util::service::TowerToHyperService::new(router);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
            () = &mut shutdown => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("accept: {e}");
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let service = service.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(MAX_HEADER_BYTES);
            if let Err(e) = http.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("HTTP connection: {e}");
            }
            drop(permit);
        });
    }
}

/// Answers 503 when a handler takes longer than [`REQUEST_TIMEOUT`].
async fn time_limit(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timed out\n").into_response(),
    }
}

/// Where `/sessions` asks for the current document of the sessions selected: the capture thread
/// answers on the one-shot channel it is sent.
pub type SessionRequests = SyncSender<(SessionsSelection, tokio::sync::oneshot::Sender<SessionsDocument>)>;

pub use crate::sessions_query::DEFAULT_SESSIONS_LIMIT;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub sessions: SessionRequests,
    pub ready: Arc<AtomicBool>,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/sessions", get(sessions))
        .layer(axum::middleware::from_fn(time_limit))
        .with_state(state)
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &state.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
    } else {
        ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], openmetrics_to_prometheus(&body)).into_response()
    }
}

async fn healthz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "capture not open yet\n").into_response()
    }
}

async fn sessions(State(state): State<AppState>, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let q = match SessionsQuery::parse(&pairs) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    match state.sessions.try_send((q.selection, reply)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return (StatusCode::SERVICE_UNAVAILABLE, "busy\n").into_response(),
        Err(TrySendError::Disconnected(_)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, "capture stopped\n").into_response();
        }
    }
    match answer.await {
        Ok(doc) if q.format == SessionsFormat::Text => doc.render_text().into_response(),
        Ok(doc) => axum::Json(doc).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "capture stopped\n").into_response(),
    }
}

async fn landing() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><title>mqtt-keepalive</title><h1>mqtt-keepalive ",
        env!("CARGO_PKG_VERSION"),
        "</h1><ul><li><a href=\"/metrics\">/metrics</a> Prometheus metrics</li>",
        "<li><a href=\"/sessions\">/sessions</a> open and recently closed sessions (JSON; ",
        "<a href=\"/sessions?format=text&amp;sort=deadline\">as text</a>, nearest their deadline first)</li>",
        "<li><a href=\"/healthz\">/healthz</a> health</li></ul>\n"
    ))
}
