//! The status API.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use blobstore::{BlobStore, ListRequest};
use serde_json::json;

use crate::metrics::BACKLOG;

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub db: sled::Db,
    pub stores: Vec<Arc<dyn BlobStore>>,
}

pub fn router(state: AppState) -> Router {
    Router::new().route("/status", get(status)).with_state(state)
}

/// Backlog and each fileserver bucket's reachability.
async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let backlog = state.inner.db.len();
    BACKLOG.set(backlog as i64);
    let probes = state.inner.stores.iter().map(|s| async move {
        let req = ListRequest {
            max_keys: 1,
            ..ListRequest::default()
        };
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(2), s.list(&req)).await,
            Ok(Ok(_))
        );
        (s.describe().to_string(), if up { "ok" } else { "unavailable" })
    });
    let servers: serde_json::Map<String, serde_json::Value> = futures::future::join_all(probes)
        .await
        .into_iter()
        .map(|(n, s)| (n, json!(s)))
        .collect();
    Json(json!({"backlog": backlog, "fileservers": servers}))
}
