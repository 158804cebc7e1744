//! The agent's HTTP endpoints (axum): `/metrics`, `/healthz`, `/sessions`, and `/`.
//!
//! Contract: GET only (other methods get 405); `/metrics` serves OpenMetrics text to clients
//! that accept it (`Accept: application/openmetrics-text`) and the Prometheus text format
//! (0.0.4) to everyone else; `/healthz` is 200 once the capture is open and 503 before;
//! `/sessions` is the live [`SessionsDocument`](crate::sink::report::SessionsDocument).

use crate::sink::metrics::openmetrics_to_prometheus;
use crate::sink::report::LiveSessions;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub sessions: Arc<Mutex<LiveSessions>>,
    pub ready: Arc<AtomicBool>,
}

/// The routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/sessions", get(sessions))
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

async fn sessions(State(state): State<AppState>) -> Response {
    let doc = match state.sessions.lock() {
        Ok(s) => s.snapshot(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    axum::Json(doc).into_response()
}

async fn landing() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><title>mqtt-keepalive</title><h1>mqtt-keepalive ",
        env!("CARGO_PKG_VERSION"),
        "</h1><ul><li><a href=\"/metrics\">/metrics</a> Prometheus metrics</li>",
        "<li><a href=\"/sessions\">/sessions</a> open and recently closed sessions (JSON)</li>",
        "<li><a href=\"/healthz\">/healthz</a> health</li></ul>\n"
    ))
}
