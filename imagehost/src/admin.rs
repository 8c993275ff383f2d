//! imagehost's admin listener: `/metrics`, `/healthz`, the live stats page (`/stats`,
//! `/stats.json`), and `POST /takedowns`, where blobsync tells every node of a takedown before the
//! edges drop their copies. A push needs the `takedowns.token` (compared in constant time) or,
//! without one configured, a loopback peer.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::state::AppState;
use crate::stats::Stats;

#[derive(Deserialize)]
struct Pushed {
    keys: Vec<String>,
}

/// `POST /takedowns`, the stats page (`/stats`, `/stats.json`), `/metrics` and `/healthz`.
pub fn router(state: AppState, stats: Arc<Stats>) -> Router {
    let config = state.inner().config.clone();
    let page = Router::new()
        .route("/stats", get(|| async { service::stats::html() }))
        .route(
            "/stats.json",
            get(move || {
                let (stats, config) = (stats.clone(), config.clone());
                async move {
                    (
                        [(header::CACHE_CONTROL, "no-store")],
                        Json(json!({ "page": stats.page(&config) })),
                    )
                }
            }),
        );
    Router::new()
        .route("/takedowns", post(takedowns))
        .with_state(state)
        .merge(page)
        .merge(service::admin::router())
}

fn allowed(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> bool {
    match &state.inner().config.takedowns.token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| token.matches(given.trim())),
        None => peer.ip().is_loopback(),
    }
}

async fn takedowns(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !allowed(&state, peer, &headers) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "forbidden", "message": "takedowns.token required"})),
        )
            .into_response();
    }
    let Ok(pushed) = serde_json::from_slice::<Pushed>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "bad_request", "message": "expected {\"keys\": [...]}"})),
        )
            .into_response();
    };
    match state.take_down(pushed.keys, None).await {
        Ok(new) => Json(json!({"added": new.len()})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "unavailable", "message": format!("takedown not kept: {e}")})),
        )
            .into_response(),
    }
}
