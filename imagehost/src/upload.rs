//! `POST /:username/:signature`, `POST /cs/:username/:signature` (§2.1–2.2) and `POST /hs/:token`
//! (§2.4, D6), in OH's order: signature or token syntax (and a token's app, type and age) →
//! multipart and Content-Length checks → streamed body and digest → image type (D7) → account →
//! recovered key against its authorities → account blacklist → quota → reputation → write to the
//! fileservers. Nothing is written for a request that fails any check.

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

use crate::auth::hs_token::HsToken;
use crate::auth::{Account, HiveSignature};
use crate::metrics::{SIGNATURE_SECONDS, UPLOADS, UPLOAD_BYTES};
use crate::quota::Limits;
use crate::sniff::{is_accepted_image, sniff, SNIFF_LEN};
use crate::state::AppState;
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
    let proof = Proof::Signature {
        username,
        signature,
        checksum_route: false,
    };
    outcome(handle(state, proof, headers, body).await)
}

pub async fn checksum(
    State(state): State<AppState>,
    Path((username, signature)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let proof = Proof::Signature {
        username,
        signature,
        checksum_route: true,
    };
    outcome(handle(state, proof, headers, body).await)
}

/// `POST /hs/:token`: an upload authorised by a HiveSigner-style token (D6).
pub async fn hivesigner(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    outcome(handle(state, Proof::Token(token), headers, body).await)
}

/// What authorises an upload.
enum Proof {
    /// A signature of the file's digest (or of its checksum, `/cs/`) by `username`'s key.
    Signature {
        username: String,
        signature: String,
        checksum_route: bool,
    },
    /// A token signed by the author's posting key or an app's it delegates posting to.
    Token(String),
}

/// A proof whose syntax (and, for a token, app, type and age) passed: its key is checked once
/// the account is known.
enum Checked {
    Signature(HiveSignature, bool),
    Token(HsToken),
}

/// The proof's author and what to check, or why it is refused before any body is read.
fn check_proof(hs: &crate::config::HivesignerConfig, proof: Proof) -> Result<(String, Checked), ApiError> {
    match proof {
        Proof::Signature {
            username,
            signature,
            checksum_route,
        } => {
            if username.is_empty() {
                return Err(ApiError::MissingParam("username"));
            }
            if signature.is_empty() {
                return Err(ApiError::MissingParam("signature"));
            }
            let signature = HiveSignature::parse(&signature).map_err(|_| ApiError::InvalidSignature)?;
            Ok((username, Checked::Signature(signature, checksum_route)))
        }
        Proof::Token(token) => {
            let refused = |e: crate::auth::hs_token::TokenError| {
                tracing::info!(error = %e, "HiveSigner token refused");
                ApiError::InvalidSignature
            };
            let token = HsToken::decode(&token).map_err(refused)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            token
                .check(
                    &hs.apps,
                    hs.lifetime.as_secs_f64(),
                    hs.max_skew.as_secs_f64(),
                    now,
                )
                .map_err(refused)?;
            Ok((token.author.clone(), Checked::Token(token)))
        }
    }
}

/// At most this many apps of an author's posting `account_auths` are looked up for one token.
const MAX_DELEGATES: usize = 8;

/// Whether the proof's key may upload for `account`: a signature's key by §2.1's rule; a
/// token's key in the author's posting authority, or in the posting authority of an app the
/// author's posting authority lists (D6).
async fn key_speaks_for(
    accounts: &crate::auth::AccountSource,
    checked: &Checked,
    account: &Account,
    digests: &crate::keys::UploadDigests,
) -> Result<bool, ApiError> {
    match checked {
        Checked::Signature(sig, checksum_route) => Ok(sig
            .recover(&digests.signed_digest(*checksum_route).ok_or(ApiError::Internal(
                "the upload's plain digest was not computed".into(),
            ))?)
            .is_ok_and(|k| account.key_may_upload(&k))),
        Checked::Token(token) => {
            let Ok(key) = token.signature.recover(&token.digest) else {
                return Ok(false);
            };
            if account.posting_key_suffices(&key) {
                return Ok(true);
            }
            for app in account.posting_delegates().take(MAX_DELEGATES) {
                let found = accounts
                    .get(app)
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                if found.is_some_and(|a| a.posting_key_suffices(&key)) {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// Whether a proven author may store these bytes: not blacklisted, not a re-upload of a
/// taken-down image, within the quota, reputable enough (in OH's order).
async fn admit(s: &crate::state::Inner, account: &Account, key: &str) -> Result<(), ApiError> {
    if s.blacklist.has_account(&account.name) {
        return Err(ApiError::Blacklisted);
    }
    // The same bytes as an image taken down (or blacklisted) are refused, on every node: the
    // key is a hash of the content, so this is exactly a re-upload.
    if s.takedowns.covers(key) || s.blacklist.has_image_hash(key) {
        tracing::info!(account = %account.name, %key, "re-upload of a taken-down image refused");
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
    Ok(())
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
    proof: Proof,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = state.inner();
    let cfg = &s.config.upload;
    let (username, checked) = check_proof(&s.config.hivesigner, proof)?;

    let checksum_route = matches!(checked, Checked::Signature(_, true));
    let received = intake::receive(
        &headers,
        body,
        checksum_route,
        cfg.max_image_size,
        cfg.spool_memory,
        s.spool_dir.clone(),
        &s.spool_budget,
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
    let key_ok = key_speaks_for(&s.accounts, &checked, &account, &received.digests).await?;
    SIGNATURE_SECONDS.observe(timer.elapsed().as_secs_f64());
    if !key_ok {
        return Err(ApiError::InvalidSignature);
    }
    let key_text = received.digests.upload_key();
    admit(s, &account, &key_text).await?;

    let key = Key::new(key_text.as_str()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let size = received.body.len();
    let opts = PutOptions {
        max_size: Some(cfg.max_image_size),
        content_type: sniff(&head).map(str::to_string),
        metadata: [("uploader".to_string(), account.name.clone())].into(),
        // Uploads are the only copy: durable before the 200.
        cache: false,
        // Hashed once here, not again by each fileserver, and by the key's own digest.
        known: received.known_digests(),
        digest_prefix: crate::keys::CHALLENGE_PREFIX_TEXT,
        // Set per fileserver by the write ([`write::write_all`]).
        if_absent: false,
    };
    let quorum = cfg.write_quorum.min(s.stores.servers.len()).max(1);
    write::write_all(
        &s.stores.servers,
        &key,
        Arc::new(received.body),
        received.digests.image_hash,
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
