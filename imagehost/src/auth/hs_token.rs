//! HiveSigner-style tokens for `POST /hs/:token` (§2.4, D6), verified here, never by asking a
//! third party: ecency's base64url alphabet (`-`, `_`, `.`) or the standard one, JSON
//! `{signed_message: {type, app}, authors: [user], timestamp, signatures: [hex]}`, the signature
//! over SHA-256 of the JSON text without `signatures` as the token's author wrote it
//! (`JSON.stringify` of the first three fields, reproduced from the token's own bytes). Which
//! keys may sign is the caller's part ([`crate::auth::Account`]).

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::auth::HiveSignature;

/// The `signed_message.type` values HiveSigner defines.
pub const TYPES: [&str; 5] = ["login", "posting", "offline", "code", "refresh"];

/// A decoded token whose signature has not been checked against any key yet.
#[derive(Debug)]
pub struct HsToken {
    pub author: String,
    pub app: String,
    pub kind: String,
    /// Seconds since the epoch, as the author's clock had it.
    pub timestamp: f64,
    pub signature: HiveSignature,
    /// SHA-256 of the signed JSON text: what the signature signs.
    pub digest: [u8; 32],
}

/// Why a token is refused (every one is answered `400 invalid_signature`, as OH-develop does).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not base64 of JSON")]
    Encoding,
    #[error("the token lacks {0}")]
    Missing(&'static str),
    #[error("signed_message.type `{0}` is not a HiveSigner token type")]
    Type(String),
    #[error("app `{0}` is not accepted here")]
    App(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is dated in the future")]
    Future,
    #[error("the token's signature is malformed")]
    Signature,
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(borrow)]
    signed_message: Option<&'a RawValue>,
    #[serde(borrow)]
    authors: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(default)]
    signatures: Vec<String>,
}

#[derive(Deserialize)]
struct SignedMessage {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    app: String,
}

impl HsToken {
    /// Decodes `token` (from the URL path). Checks its shape only.
    pub fn decode(token: &str) -> Result<HsToken, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Encoding);
        }
        let standard: String = token
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                '.' => '=',
                c => c,
            })
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(standard.as_bytes())
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(standard.trim_end_matches('='))
            })
            .map_err(|_| TokenError::Encoding)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| TokenError::Encoding)?;
        let raw: Raw = serde_json::from_str(text).map_err(|_| TokenError::Encoding)?;
        let (Some(sm), Some(authors), Some(ts)) = (raw.signed_message, raw.authors, raw.timestamp) else {
            return Err(TokenError::Missing("signed_message, authors or timestamp"));
        };
        let message: SignedMessage = serde_json::from_str(sm.get()).map_err(|_| TokenError::Encoding)?;
        let names: Vec<String> = serde_json::from_str(authors.get()).map_err(|_| TokenError::Encoding)?;
        let timestamp: f64 = serde_json::from_str(ts.get()).map_err(|_| TokenError::Encoding)?;
        let author = names
            .into_iter()
            .next()
            .filter(|a| !a.is_empty())
            .ok_or(TokenError::Missing("authors[0]"))?;
        if message.app.is_empty() {
            return Err(TokenError::Missing("signed_message.app"));
        }
        let first = raw
            .signatures
            .first()
            .ok_or(TokenError::Missing("signatures[0]"))?;
        let signature = HiveSignature::parse(first).map_err(|_| TokenError::Signature)?;
        // JSON.stringify of {signed_message, authors, timestamp}: the token was made by
        // JSON.stringify of the same object with `signatures` added last, so each field's text
        // is in the token as it was signed.
        let signed = format!(
            "{{\"signed_message\":{},\"authors\":{},\"timestamp\":{}}}",
            sm.get(),
            authors.get(),
            ts.get()
        );
        Ok(HsToken {
            author,
            app: message.app,
            kind: message.kind,
            timestamp,
            signature,
            digest: Sha256::digest(signed.as_bytes()).into(),
        })
    }

    /// Checks the type, the app, and that `now` (seconds) is within `lifetime` after the
    /// timestamp and no more than `skew` before it.
    pub fn check(&self, apps: &[String], lifetime: f64, skew: f64, now: f64) -> Result<(), TokenError> {
        if !TYPES.contains(&self.kind.as_str()) {
            return Err(TokenError::Type(self.kind.clone()));
        }
        if !apps.iter().any(|a| a == &self.app) {
            return Err(TokenError::App(self.app.clone()));
        }
        if !self.timestamp.is_finite() || self.timestamp > now + skew {
            return Err(TokenError::Future);
        }
        if now - self.timestamp > lifetime {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::signature::{public_key_string, random_signing_key, sign};

    fn b64u(text: &str) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(text)
            .replace('+', "-")
            .replace('/', "_")
            .replace('=', ".")
    }

    /// A token as ecency makes one: the signed text, then the same object with signatures.
    fn token(key: &k256::ecdsa::SigningKey, kind: &str, app: &str, user: &str, ts: &str) -> String {
        let signed = format!(
            "{{\"signed_message\":{{\"type\":\"{kind}\",\"app\":\"{app}\"}},\"authors\":[\"{user}\"],\"timestamp\":{ts}}}"
        );
        let sig = sign(key, &Sha256::digest(signed.as_bytes()).into());
        b64u(&format!(
            "{},\"signatures\":[\"{sig}\"]}}",
            &signed[..signed.len() - 1]
        ))
    }

    #[test]
    fn a_token_decodes_to_the_key_that_signed_it() {
        let key = random_signing_key();
        let t =
            HsToken::decode(&token(&key, "code", "ecency.app", "alice", "1796518049.846")).expect("decodes");
        assert_eq!(
            (t.author.as_str(), t.app.as_str(), t.kind.as_str()),
            ("alice", "ecency.app", "code")
        );
        assert_eq!(t.timestamp, 1796518049.846);
        let recovered = t.signature.recover(&t.digest).expect("recovers");
        assert_eq!(recovered, public_key_string(key.verifying_key()));
    }

    #[test]
    fn changed_bytes_recover_another_key() {
        let key = random_signing_key();
        let good = token(&key, "code", "ecency.app", "alice", "1796518049");
        let text = String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(good.replace('-', "+").replace('_', "/").replace('.', "="))
                .expect("b64"),
        )
        .expect("utf8");
        for (from, to) in [
            ("alice", "mallory"),
            ("1796518049", "1796518999"),
            ("ecency.app", "hive.blog"),
        ] {
            let t = HsToken::decode(&b64u(&text.replace(from, to))).expect("decodes");
            let k = t.signature.recover(&t.digest).ok();
            assert_ne!(k, Some(public_key_string(key.verifying_key())), "{from} → {to}");
        }
    }

    #[test]
    fn shapes_table() {
        let key = random_signing_key();
        let cases: [(String, Option<TokenError>); 7] = [
            ("not base64!".into(), Some(TokenError::Encoding)),
            (b64u("[1,2]"), Some(TokenError::Encoding)),
            (b64u("{\"authors\":[\"a\"],\"timestamp\":1}"), Some(TokenError::Missing("signed_message, authors or timestamp"))),
            (
                b64u("{\"signed_message\":{\"type\":\"code\",\"app\":\"x\"},\"authors\":[],\"timestamp\":1,\"signatures\":[]}"),
                Some(TokenError::Missing("authors[0]")),
            ),
            (
                b64u("{\"signed_message\":{\"type\":\"code\",\"app\":\"x\"},\"authors\":[\"a\"],\"timestamp\":1,\"signatures\":[]}"),
                Some(TokenError::Missing("signatures[0]")),
            ),
            (
                b64u("{\"signed_message\":{\"type\":\"code\",\"app\":\"x\"},\"authors\":[\"a\"],\"timestamp\":1,\"signatures\":[\"zz\"]}"),
                Some(TokenError::Signature),
            ),
            (token(&key, "code", "x", "a", "1"), None),
        ];
        for (t, want) in cases {
            assert_eq!(HsToken::decode(&t).err(), want, "{t}");
        }
    }

    #[test]
    fn checks_table() {
        let key = random_signing_key();
        let apps = vec!["ecency.app".to_string()];
        let now = 1_800_000_000.0;
        let day = 86_400.0;
        let cases = [
            ("code", "ecency.app", now - 10.0, None),
            ("posting", "ecency.app", now, None),
            ("steal", "ecency.app", now, Some(TokenError::Type("steal".into()))),
            ("code", "evil.app", now, Some(TokenError::App("evil.app".into()))),
            ("code", "ecency.app", now - 8.0 * day, Some(TokenError::Expired)),
            ("code", "ecency.app", now + 600.0, Some(TokenError::Future)),
            ("code", "ecency.app", now + 60.0, None),
        ];
        for (kind, app, ts, want) in cases {
            let t = HsToken::decode(&token(&key, kind, app, "alice", &ts.to_string())).expect("decodes");
            assert_eq!(
                t.check(&apps, 7.0 * day, 300.0, now).err(),
                want,
                "{kind} {app} {ts}"
            );
        }
    }
}
