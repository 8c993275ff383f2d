//! `POST /:username/:signature` and `POST /cs/:username/:signature` (§2.1–2.2), in OH's order:
//! signature syntax → multipart and Content-Length checks → streamed body and digest → image type
//! (D7) → account → recovered key against its authorities → account blacklist → quota →
//! reputation → write to the fileservers. Nothing is written for a request that fails any check.

pub mod intake;
pub mod spool;
pub mod write;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use blobstore::{Key, PutOptions};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::json;

use crate::auth::HiveSignature;
use crate::http::AppState;
use crate::metrics::{SIGNATURE_SECONDS, UPLOADS, UPLOAD_BYTES};
use crate::quota::Limits;
use crate::sniff::{is_accepted_image, sniff, SNIFF_LEN};
use crate::ApiError;

/// Characters percent-encoded in the filename of the returned URL (D7): the WHATWG path set plus
/// `#`, `?`, `%`, `/` and `\`, so the URL always leads back to exactly this file name.
const FILENAME_UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

pub fn upload_url(service_url: &str, key: &str, filename: &str) -> String {
    format!(
        "{}/{key}/{}",
        service_url.trim_end_matches('/'),
        utf8_percent_encode(filename, FILENAME_UNSAFE)
    )
}

pub async fn signed(
    State(state): State<AppState>,
    Path((username, signature)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    outcome(handle(state, username, signature, headers, body, false).await)
}

pub async fn checksum(
    State(state): State<AppState>,
    Path((username, signature)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    outcome(handle(state, username, signature, headers, body, true).await)
}

fn outcome(r: Result<Json<serde_json::Value>, ApiError>) -> Result<Json<serde_json::Value>, ApiError> {
    UPLOADS
        .with_label_values(&[match &r {
            Ok(_) => "stored",
            Err(e) => e.name(),
        }])
        .inc();
    r
}

async fn handle(
    state: AppState,
    username: String,
    signature: String,
    headers: HeaderMap,
    body: Body,
    checksum_route: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = state.inner();
    let cfg = &s.config.upload;
    if username.is_empty() {
        return Err(ApiError::MissingParam("username"));
    }
    if signature.is_empty() {
        return Err(ApiError::MissingParam("signature"));
    }
    let signature = HiveSignature::parse(&signature).map_err(|_| ApiError::InvalidSignature)?;

    let received = intake::receive(
        &headers,
        body,
        cfg.max_image_size,
        cfg.spool_memory,
        s.spool_dir.clone(),
    )
    .await?;
    let head = received
        .body
        .head(SNIFF_LEN)
        .await
        .map_err(|e| ApiError::Internal(format!("spool: {e}")))?;
    if !cfg.accept_any_type && !is_accepted_image(&head) {
        return Err(ApiError::InvalidImage);
    }

    let account = s
        .accounts
        .get(&username)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or(ApiError::NoSuchAccount)?;
    let timer = Instant::now();
    let digest = received.digests.signed_digest(checksum_route);
    let key_ok = signature
        .recover(&digest)
        .is_ok_and(|k| account.key_may_upload(&k));
    SIGNATURE_SECONDS.observe(timer.elapsed().as_secs_f64());
    if !key_ok {
        return Err(ApiError::InvalidSignature);
    }
    if s.blacklist.has_account(&account.name) {
        return Err(ApiError::Blacklisted);
    }
    // The same bytes as an image taken down (or blacklisted) are refused, on every node: the
    // key is a hash of the content, so this is exactly a re-upload.
    let key_text = received.digests.upload_key();
    if s.takedowns.covers(&key_text) || s.blacklist.has_image_hash(&key_text) {
        tracing::info!(account = %account.name, key = %key_text, "re-upload of a taken-down image refused");
        return Err(ApiError::Blacklisted);
    }
    let limits = Limits {
        window: s.config.upload_limits.duration,
        max: s.config.upload_limits.max,
    };
    if !s.quota.allow(&account.name, &limits).await {
        return Err(ApiError::QuotaExceeded);
    }
    if account.reputation_score() < s.config.upload_limits.reputation {
        return Err(ApiError::Deplorable);
    }

    let key = Key::new(key_text.as_str()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let size = received.body.len();
    let opts = PutOptions {
        max_size: Some(cfg.max_image_size),
        content_type: sniff(&head).map(str::to_string),
        metadata: [("uploader".to_string(), account.name.clone())].into(),
    };
    let quorum = cfg.write_quorum.min(s.stores.servers.len()).max(1);
    write::write_all(
        &s.stores.servers,
        &key,
        Arc::new(received.body),
        received.digests.data_hash,
        opts,
        quorum,
        s.replication.clone(),
    )
    .await
    .map_err(ApiError::Unavailable)?;
    UPLOAD_BYTES.inc_by(size);
    tracing::info!(account = %account.name, key = %key_text, size, "upload stored");
    Ok(Json(
        json!({ "url": upload_url(&s.config.server.service_url, &key_text, &received.filename) }),
    ))
}

#[cfg(test)]
mod tests {
    use super::upload_url;

    #[test]
    fn url_table() {
        let k = "DQmbUdyDj5ht9ifdRtncntsETZQv23ZwbpgFKLQhUMH4rsj";
        let cases = [
            ("test.jpg", "test.jpg"),
            ("héllo wörld", "h%C3%A9llo%20w%C3%B6rld"),
            ("a#b?c.png", "a%23b%3Fc.png"),
            ("100%.jpg", "100%25.jpg"),
            ("dir/x.jpg", "dir%2Fx.jpg"),
            ("C:\\fake\\x.jpg", "C:%5Cfake%5Cx.jpg"),
            ("", ""),
        ];
        for (name, want) in cases {
            assert_eq!(
                upload_url("http://127.0.0.1:8800/", k, name),
                format!("http://127.0.0.1:8800/{k}/{want}")
            );
        }
    }
}
