//! `GET /u/:username/avatar/:size?` and `GET /u/:username/cover` (§4, D12): a 302 to the `/p/`
//! variant of the account's profile or cover image (or the default), with OH's Cache-Control and
//! Server-Timing. Account metadata comes through the account source's short cache.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::legacy::koa_redirect;
use super::target::encode;
use crate::auth::accounts::Account;
use crate::metrics::PROXY_RESPONSES;
use crate::state::AppState;
use crate::ApiError;

/// `small` 64, `medium` 128, `large` 512; anything else (a number included) 128.
pub fn avatar_size(size: Option<&str>) -> u32 {
    match size {
        Some("small") => 64,
        Some("large") => 512,
        _ => 128,
    }
}

/// The profile field (`profile_image` or `cover_image`) if it is an http(s) URL. Posting metadata
/// wins when it parses and has a truthy `profile.version`; otherwise `json_metadata`.
pub fn profile_url(account: &Account, field: &str) -> Option<String> {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
    let posting = parse(&account.posting_json_metadata);
    let truthy = |v: &serde_json::Value| match v {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    };
    let meta = if truthy(&posting["profile"]["version"]) {
        posting
    } else {
        parse(&account.json_metadata)
    };
    let url = meta["profile"][field].as_str()?;
    (url.starts_with("http://") || url.starts_with("https://")).then(|| url.to_string())
}

pub async fn avatar(state: State<AppState>, Path(username): Path<String>, headers: HeaderMap) -> Response {
    redirect(state, username, Kind::Avatar(avatar_size(None)), headers).await
}

pub async fn avatar_sized(
    state: State<AppState>,
    Path((username, size)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    redirect(state, username, Kind::Avatar(avatar_size(Some(&size))), headers).await
}

pub async fn cover(state: State<AppState>, Path(username): Path<String>, headers: HeaderMap) -> Response {
    redirect(state, username, Kind::Cover, headers).await
}

enum Kind {
    Avatar(u32),
    Cover,
}

async fn redirect(
    State(state): State<AppState>,
    username: String,
    kind: Kind,
    headers: HeaderMap,
) -> Response {
    let s = state.inner();
    let route = match kind {
        Kind::Avatar(_) => "avatar",
        Kind::Cover => "cover",
    };
    let started = Instant::now();
    let account = s.accounts.get(&username).await;
    let dur = started.elapsed().as_secs_f64() * 1000.0;
    let resp = match account {
        Err(e) => ApiError::Internal(format!("account lookup: {e}")).into_response(),
        Ok(None) => ApiError::NoSuchAccount.into_response(),
        Ok(Some(account)) => {
            let (field, default, query, cc) = match kind {
                Kind::Avatar(size) => (
                    "profile_image",
                    &s.config.profiles.default_avatar,
                    format!("width={size}&height={size}"),
                    "public,max-age=86400",
                ),
                Kind::Cover => (
                    "cover_image",
                    &s.config.profiles.default_cover,
                    "width=1344&height=240".to_string(),
                    "public,max-age=600",
                ),
            };
            let image = profile_url(&account, field).unwrap_or_else(|| default.clone());
            let loc = format!("/p/{}?{query}", encode(&image));
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let mut r = koa_redirect(StatusCode::FOUND, &loc, cc, accept);
            if let Ok(v) = HeaderValue::from_str(&format!("api;dur={dur:.3};desc=\"get_accounts API call\""))
            {
                r.headers_mut().insert("server-timing", v);
            }
            r
        }
    };
    PROXY_RESPONSES
        .with_label_values(&[route, resp.status().as_str()])
        .inc();
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(posting: &str, json: &str) -> Account {
        serde_json::from_value(serde_json::json!({
            "name": "alice", "posting_json_metadata": posting, "json_metadata": json
        }))
        .unwrap()
    }

    #[test]
    fn profile_table() {
        let p = r#"{"profile":{"version":2,"profile_image":"https://p.example/a.png","cover_image":"https://p.example/c.png"}}"#;
        let j = r#"{"profile":{"profile_image":"https://j.example/a.png"}}"#;
        let cases = [
            (p, j, "profile_image", Some("https://p.example/a.png")),
            (p, j, "cover_image", Some("https://p.example/c.png")),
            (
                r#"{"profile":{"profile_image":"https://p.example/a.png"}}"#,
                j,
                "profile_image",
                Some("https://j.example/a.png"),
            ),
            ("not json", j, "profile_image", Some("https://j.example/a.png")),
            ("", "", "profile_image", None),
            (
                r#"{"profile":{"version":1,"profile_image":"ipfs://x"}}"#,
                j,
                "profile_image",
                None,
            ),
            (
                r#"{"profile":{"version":"1","profile_image":"HTTP://X.example/a"}}"#,
                "",
                "profile_image",
                None,
            ),
            ("[1,2]", "{\"profile\":3}", "profile_image", None),
        ];
        for (posting, json, field, want) in cases {
            assert_eq!(
                profile_url(&account(posting, json), field).as_deref(),
                want,
                "{posting} / {json}"
            );
        }
        for (s, px) in [
            (Some("small"), 64),
            (Some("medium"), 128),
            (Some("large"), 512),
            (Some("64"), 128),
            (None, 128),
        ] {
            assert_eq!(avatar_size(s), px);
        }
    }
}
