//! imagehost's errors: [`Error`] for start-up, [`ApiError`] for requests, each mapped explicitly to
//! the HTTP status and the stable error name the imagehoster sends (§1.3, D3, D4).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Why imagehost could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot open fileserver bucket: {0}")]
    Store(#[from] blobstore::StoreError),
    #[error("account source: {0}")]
    Accounts(#[from] crate::auth::AccountsError),
    #[error("blacklist: {0}")]
    Blacklist(String),
    #[error("redis: {0}")]
    Redis(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("I/O error: {0}")]
    Io(std::io::Error),
}

/// A request that failed, as the client sees it: `{"error":{"info":{…},"name":"…"}}`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("blacklisted")]
    Blacklisted,
    #[error("reputation below the upload threshold")]
    Deplorable,
    #[error("no file in the upload")]
    FileMissing,
    #[error("internal error: {0}")]
    Internal(String),
    #[error("not an accepted image")]
    InvalidImage,
    #[error("invalid method")]
    InvalidMethod,
    #[error("invalid parameter {0}")]
    InvalidParam(&'static str),
    #[error("invalid proxy url")]
    InvalidProxyUrl,
    #[error("invalid signature")]
    InvalidSignature,
    #[error("numeric Content-Length required")]
    LengthRequired,
    #[error("missing parameter {0}")]
    MissingParam(&'static str),
    #[error("no such account")]
    NoSuchAccount,
    #[error("not found")]
    NotFound,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("upload quota exceeded")]
    QuotaExceeded,
    /// The disk an upload is spooled to is full.
    #[error("no space left to receive the upload")]
    InsufficientStorage,
    /// This client (or this source host) asked for more cold renders than its share; the
    /// seconds until it may ask again.
    #[error("too many new renders; retry in {0} s")]
    RenderLimit(u64),
    /// The request body stalled or trickled past the server's deadlines.
    #[error("request body too slow")]
    RequestTimeout,
    #[error("upstream error")]
    UpstreamError,
    /// No fileserver (or RPC node) could do the work: a transient 503, never cached.
    #[error("service unavailable: {0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::FileMissing
            | ApiError::InvalidImage
            | ApiError::InvalidParam(_)
            | ApiError::InvalidProxyUrl
            | ApiError::InvalidSignature
            | ApiError::MissingParam(_)
            | ApiError::UpstreamError => StatusCode::BAD_REQUEST,
            ApiError::Blacklisted => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            ApiError::Deplorable => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::InvalidMethod => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::NoSuchAccount | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QuotaExceeded | ApiError::RenderLimit(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable snake_case name on the wire (including OH's misspelt `qouta_exceeded`).
    pub fn name(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Blacklisted => "blacklisted",
            ApiError::Deplorable => "deplorable",
            ApiError::FileMissing => "file_missing",
            ApiError::Internal(_) | ApiError::Unavailable(_) => "internal_error",
            ApiError::InvalidImage => "invalid_image",
            ApiError::InvalidMethod => "invalid_method",
            ApiError::InvalidParam(_) => "invalid_param",
            ApiError::InvalidProxyUrl => "invalid_proxy_url",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::LengthRequired => "length_required",
            ApiError::MissingParam(_) => "missing_param",
            ApiError::NoSuchAccount => "no_such_account",
            ApiError::NotFound => "not_found",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::QuotaExceeded => "qouta_exceeded",
            ApiError::RenderLimit(_) => "too_many_renders",
            ApiError::InsufficientStorage => "insufficient_storage",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::UpstreamError => "upstream_error",
        }
    }

    /// The JSON body; `info` (when present) comes before `name`, as OH serialises it.
    pub fn body(&self) -> String {
        let info = match self {
            ApiError::BadRequest(msg) => Some(serde_json::json!({ "msg": msg })),
            ApiError::InvalidParam(p) | ApiError::MissingParam(p) => Some(serde_json::json!({ "param": p })),
            _ => None,
        };
        match info {
            Some(info) => format!(r#"{{"error":{{"info":{info},"name":"{}"}}}}"#, self.name()),
            None => format!(r#"{{"error":{{"name":"{}"}}}}"#, self.name()),
        }
    }

    /// Transient failures must not be cached by the CDN (D4).
    fn transient(&self) -> bool {
        matches!(
            self,
            ApiError::Internal(_)
                | ApiError::Unavailable(_)
                | ApiError::UpstreamError
                | ApiError::RequestTimeout
                | ApiError::RenderLimit(_)
                | ApiError::InsufficientStorage
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) | ApiError::Unavailable(detail) = &self {
            tracing::error!(error = %detail, status = self.status().as_u16(), "request failed");
        }
        let mut resp = (self.status(), self.body()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        if self.transient() {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        match self {
            ApiError::Unavailable(_) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::InsufficientStorage => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            }
            ApiError::RenderLimit(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_table() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::BadRequest("Upload not found"),
                400,
                r#"{"error":{"info":{"msg":"Upload not found"},"name":"bad_request"}}"#,
            ),
            (ApiError::Blacklisted, 451, r#"{"error":{"name":"blacklisted"}}"#),
            (
                ApiError::InsufficientStorage,
                507,
                r#"{"error":{"name":"insufficient_storage"}}"#,
            ),
            (
                ApiError::RenderLimit(3),
                429,
                r#"{"error":{"name":"too_many_renders"}}"#,
            ),
            (ApiError::Deplorable, 403, r#"{"error":{"name":"deplorable"}}"#),
            (ApiError::FileMissing, 400, r#"{"error":{"name":"file_missing"}}"#),
            (
                ApiError::Internal("x".into()),
                500,
                r#"{"error":{"name":"internal_error"}}"#,
            ),
            (
                ApiError::InvalidImage,
                400,
                r#"{"error":{"name":"invalid_image"}}"#,
            ),
            (
                ApiError::InvalidMethod,
                405,
                r#"{"error":{"name":"invalid_method"}}"#,
            ),
            (
                ApiError::InvalidParam("hash"),
                400,
                r#"{"error":{"info":{"param":"hash"},"name":"invalid_param"}}"#,
            ),
            (
                ApiError::InvalidProxyUrl,
                400,
                r#"{"error":{"name":"invalid_proxy_url"}}"#,
            ),
            (
                ApiError::InvalidSignature,
                400,
                r#"{"error":{"name":"invalid_signature"}}"#,
            ),
            (
                ApiError::LengthRequired,
                411,
                r#"{"error":{"name":"length_required"}}"#,
            ),
            (
                ApiError::MissingParam("url"),
                400,
                r#"{"error":{"info":{"param":"url"},"name":"missing_param"}}"#,
            ),
            (
                ApiError::NoSuchAccount,
                404,
                r#"{"error":{"name":"no_such_account"}}"#,
            ),
            (ApiError::NotFound, 404, r#"{"error":{"name":"not_found"}}"#),
            (
                ApiError::PayloadTooLarge,
                413,
                r#"{"error":{"name":"payload_too_large"}}"#,
            ),
            (
                ApiError::QuotaExceeded,
                429,
                r#"{"error":{"name":"qouta_exceeded"}}"#,
            ),
            (
                ApiError::UpstreamError,
                400,
                r#"{"error":{"name":"upstream_error"}}"#,
            ),
            (
                ApiError::Unavailable("x".into()),
                503,
                r#"{"error":{"name":"internal_error"}}"#,
            ),
        ];
        for (err, status, body) in cases {
            assert_eq!(
                (err.status().as_u16(), err.body().as_str()),
                (status, body),
                "{err:?}"
            );
        }
    }
}
