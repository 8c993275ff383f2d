//! `GET /p/:url` (§1.4): decode and unwrap the URL, check the blacklist, then serve the variant
//! from the hot cache, the proxy store, or by getting the original (hot cache, upload store,
//! proxy store, or a guarded fetch) and rendering it on the CPU pool. One cold variant costs one
//! fetch and one render however many requests ask for it at once (single-flight per key).

pub mod legacy;
pub mod options;
pub mod original;
pub mod profile;
pub mod target;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use blobstore::{body_from_bytes, Key, PutOptions};
use bytes::Bytes;

use crate::metrics::{PROXY_RESPONSES, RENDERS};
use crate::pipeline::{self, AvifSource, Input, Output};
use crate::serve::IMMUTABLE;
use crate::sniff::serve_type;
use crate::state::AppState;
pub use crate::state::Variant;
use crate::ApiError;
use options::{Format, Options};
use target::Source;

/// Cache-Control on errors once the URL is known to be well-formed (§1.4 step 3).
const ERROR_CACHE: &str = "public,max-age=600";

pub async fn handle(
    State(state): State<AppState>,
    Path(b58): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    peer: Option<std::net::IpAddr>,
) -> Response {
    let client = state.inner().render_limits.client(peer, &headers);
    let resp = match proxy(&state, &b58, query.as_deref(), &headers, client).await {
        Ok(r) => r,
        Err((e, late)) => {
            let mut r = e.into_response();
            if late && !r.headers().contains_key(header::CACHE_CONTROL) {
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static(ERROR_CACHE));
            }
            r
        }
    };
    PROXY_RESPONSES
        .with_label_values(&["proxy", resp.status().as_str()])
        .inc();
    resp
}

/// Errors carry whether they happened after step 3 (and so get the 600 s Cache-Control).
async fn proxy(
    state: &AppState,
    b58: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Result<Response, (ApiError, bool)> {
    let s = state.inner();
    let opts = options::parse(query).map_err(|e| (e, false))?;
    let url = target::decode(b58).map_err(|e| (e, false))?;
    let url = target::unwrap(url, &s.service_url).map_err(|e| (e, false))?;
    let late = |e: ApiError| (e, true);
    if s.blacklist.has_url(&url) {
        return Err(late(ApiError::Blacklisted));
    }
    let source = target::source(url, &s.service_url);
    let source_key = source.key().to_string();
    if s.takedowns.covers(&source_key) {
        return Err(late(ApiError::Blacklisted));
    }
    let negotiate =
        opts.format == Format::Auto || (opts.format == Format::Match && s.config.proxy.match_is_auto);
    // Read as the edge reads it to pick its cache variant.
    let accepts = |media: &str| service::accept::header_takes(headers, media);
    // An AVIF source goes as it is to a client that takes AVIF and asked for no size; sized,
    // a client that takes AVIF gets an AVIF encoded here (`negotiate_avif`), else WebP.
    let sized = opts.width.is_some() || opts.height.is_some();
    let avif_out = s.config.proxy.negotiate_avif;
    let (format, avif) = match (negotiate, accepts("image/webp"), accepts("image/avif")) {
        (false, ..) => (opts.format, AvifSource::AsRequested),
        (true, webp, true) if !sized => (
            if webp { Format::Webp } else { Format::Match },
            AvifSource::PassThrough,
        ),
        (true, _, true) if avif_out => (Format::Avif, AvifSource::AsRequested),
        (true, true, _) => (Format::Webp, AvifSource::AsRequested),
        (true, false, _) => (Format::Match, AvifSource::Convert),
    };
    let vkey = target::variant_key(source.key(), &opts, format);
    // What an AVIF source becomes depends on the client, not only on the variant key: its own
    // flight per policy. Negotiated answers are tagged with their type, since one key can give
    // an AVIF original to one client and a WebP or JPEG to another.
    let flight = match avif {
        AvifSource::AsRequested => vkey.clone(),
        other => format!("{vkey}|{other:?}"),
    };

    let variant = match s.hotcache.as_ref() {
        Some(cache) => cache.get(&vkey).await.map(|bytes| {
            Arc::new(Variant {
                content_type: serve_type(&bytes),
                bytes,
                content_key: None,
            })
        }),
        None => None,
    };
    let variant = match variant {
        Some(v) => v,
        None => {
            let work = produce(state.clone(), source, opts, (format, avif), vkey.clone(), client);
            s.variants
                .run(&flight, work)
                .await
                .unwrap_or_else(|| Err(ApiError::Internal("render task panicked".into())))
                .map_err(late)?
        }
    };
    let tag = match negotiate {
        true => format!("{vkey}|{}", variant.content_type.trim_start_matches("image/")),
        false => vkey,
    };
    Ok(respond(&variant, &tag, negotiate, source_key))
}

/// The variant from the proxy store, or rendered from the original and stored.
async fn produce(
    state: AppState,
    source: Source,
    opts: Options,
    (format, avif): (Format, AvifSource),
    vkey: String,
    client: Option<std::net::IpAddr>,
) -> Result<Arc<Variant>, ApiError> {
    let s = state.inner();
    if let Some(bytes) = original::from_proxy_stores(s, &vkey).await {
        if let Some(cache) = &s.hotcache {
            cache.put(&vkey, &bytes).await;
        }
        return Ok(Arc::new(Variant {
            content_type: serve_type(&bytes),
            bytes,
            content_key: None,
        }));
    }
    // In no cache: a cold render, spent from the client's share (and the source host's).
    let host = match &source {
        Source::Remote { url, .. } => url.host_str(),
        Source::Upload(_) => None,
    };
    s.render_limits.take(client, host)?;
    let orig = original::get(&state, &source).await?;
    let input = Input::from_mime(orig.mime).ok_or(ApiError::InvalidImage)?;
    let req = pipeline::Request {
        width: opts.width,
        height: opts.height,
        mode: opts.mode,
        format: match format {
            Format::Match | Format::Auto => Output::Match,
            Format::Jpeg => Output::Jpeg,
            Format::Png => Output::Png,
            Format::Webp => Output::Webp,
            Format::Avif => Output::Avif,
        },
        avif,
    };
    let refused = |e: pipeline::PipelineError| {
        RENDERS.with_label_values(&[e.kind()]).inc();
        tracing::info!(key = %vkey, error = %e, "image refused");
        match e {
            pipeline::PipelineError::Encode(m) => ApiError::Internal(m),
            _ => ApiError::InvalidImage,
        }
    };
    // Headers only, here: the output is bounded and the memory estimated before the pool admits
    // the job by it.
    let job = pipeline::prepare(&orig.bytes, input, &req, &s.settings).map_err(refused)?;
    let settings = s.settings.clone();
    let data = orig.bytes.clone();
    let remote = matches!(source, Source::Remote { .. });
    let known = orig.content_digest;
    let upload_key = source.key().to_string();
    let st = state.clone();
    let (content_digest, content_key, rendered) = s
        .pool
        .run(job.cost, move || {
            // A fetched copy that is byte for byte one of our uploads answers to that upload's
            // takedown, wherever it is hosted; hashed here, off the runtime, unless the hot cache
            // kept the digest with the bytes (an original is hashed once, not once per size).
            let digest = remote.then(|| known.unwrap_or_else(|| crate::keys::upload_digest_of(&data)));
            let content_key = digest.as_ref().map(crate::keys::key_of_hash);
            // Decoded pixels are kept under the content key: an upload's own, or the one a
            // fetched original's bytes would have.
            let kept = pipeline::kept::KeptAs {
                kept: &st.inner().kept,
                key: content_key.as_deref().unwrap_or(&upload_key),
            };
            let rendered = pipeline::render_kept(&data, input, &req, &settings, Some(kept));
            (digest, content_key, rendered)
        })
        .await
        .map_err(|e| match e {
            crate::pool::PoolError::Busy => ApiError::Unavailable("image queue full".into()),
            crate::pool::PoolError::Panicked => ApiError::Internal("image job panicked".into()),
        })?;
    let rendered = rendered.map_err(refused)?;
    // Checked again after the render: a takedown that landed meanwhile stops the bytes before
    // anything is cached or stored.
    let taken_down = |s: &crate::state::Inner| {
        s.takedowns.covers(source.key()) || content_key.as_deref().is_some_and(|k| s.takedowns.covers(k))
    };
    if taken_down(s) {
        return Err(ApiError::Blacklisted);
    }
    original::keep(&state, &orig, content_digest).await;
    if rendered.passthrough {
        RENDERS.with_label_values(&["passthrough"]).inc();
        return Ok(Arc::new(Variant {
            bytes: orig.bytes,
            content_type: rendered.content_type,
            content_key,
        }));
    }
    RENDERS.with_label_values(&["ok"]).inc();
    let bytes = Bytes::from(rendered.bytes);
    if !rendered.shared {
        return Ok(Arc::new(Variant {
            bytes,
            content_type: rendered.content_type,
            content_key,
        }));
    }
    if let Some(cache) = &s.hotcache {
        cache.put(&vkey, &bytes).await;
    }
    if taken_down(s) {
        // Landed while the hot cache was written: take back what was just put there.
        if let Some(cache) = &s.hotcache {
            cache.remove(&vkey);
        }
        return Err(ApiError::Blacklisted);
    }
    store_in_background(&state, &vkey, &bytes, rendered.content_type, None);
    Ok(Arc::new(Variant {
        bytes,
        content_type: rendered.content_type,
        content_key,
    }))
}

/// Writes an object to every fileserver's proxy bucket without holding up the response. The
/// proxy bucket is a rebuildable cache: a failed write is logged, and the next miss redoes it.
/// A fetched original is stored with its `content_digest` (see [`original::CONTENT_DIGEST`]).
pub fn store_in_background(
    state: &AppState,
    key: &str,
    bytes: &Bytes,
    content_type: &str,
    content_digest: Option<[u8; 32]>,
) {
    let Ok(key) = Key::new(key) else { return };
    let metadata: std::collections::BTreeMap<String, String> = content_digest
        .map(|d| (original::CONTENT_DIGEST.to_string(), hex::encode(d)))
        .into_iter()
        .collect();
    for fs in state.inner().stores.servers.clone() {
        let (key, bytes) = (key.clone(), bytes.clone());
        let opts = PutOptions {
            content_type: Some(content_type.to_string()),
            metadata: metadata.clone(),
            // A rebuildable cache: no fsyncs; a crash loses it, a read never serves it torn.
            cache: true,
            ..PutOptions::default()
        };
        let state = state.clone();
        tokio::spawn(async move {
            // A takedown that landed since the render has already swept the stores: do not
            // write behind it.
            if state.inner().takedowns.covers(key.as_str()) {
                return;
            }
            if let Err(e) = fs.proxy.put(&key, body_from_bytes(bytes), &opts).await {
                tracing::warn!(fileserver = %fs.name, key = %key, error = %e, "proxy store write failed");
            }
        });
    }
}

fn respond(v: &Variant, etag: &str, negotiated: bool, source_key: String) -> Response {
    let mut resp = Response::new(Body::from(v.bytes.clone()));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(v.bytes.len()));
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        h.insert(header::ETAG, etag);
    }
    if negotiated {
        h.append(header::VARY, HeaderValue::from_static("Accept"));
    }
    let tags = match &v.content_key {
        Some(k) if *k != source_key => format!("{source_key} {k}"),
        _ => source_key,
    };
    if let Ok(v) = HeaderValue::from_str(&tags) {
        h.insert(crate::serve::SURROGATE_KEY.clone(), v);
    }
    resp.into_response()
}
