//! `POST /hs/:token` (§2.4, D6) with tokens made by the JavaScript the frontends run:
//! `tests/js/hs-token.mjs` mints them as ecency does (`@hiveio/dhive` signs), run with Node.
//! Accepted: the author's posting key, or the posting key of an app the author's posting
//! authority delegates to. Refused with 400 `invalid_signature`, storing nothing: a stranger's
//! key, an app the author does not (or no longer) delegate to, an app not configured, an expired
//! or future token, another token type, and a token whose bytes were changed after signing.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use harness::hive::{account, Authority};
use imagehost::auth::signature::{public_key_string, random_signing_key, wif_of};
use serde_json::json;

use super::fixture::{json, key_of, png, Backend, Fixture};

/// A token from the real library: `node tests/js/hs-token.mjs WIF USER APP OFFSET TYPE`.
fn token(key: &k256::ecdsa::SigningKey, user: &str, app: &str, offset_s: i64, kind: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/js/hs-token.mjs");
    let out = Command::new("node")
        .arg(&script)
        .args([
            wif_of(key),
            user.into(),
            app.into(),
            offset_s.to_string(),
            kind.into(),
        ])
        .output()
        .expect("node (scripts/test installs tests/js with npm ci)");
    assert!(
        out.status.success(),
        "hs-token.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("token text")
}

/// An account whose posting authority is `key` (weight 1 of 1) and delegates to `apps`.
fn delegating(name: &str, key: &str, apps: &[&str]) -> serde_json::Value {
    let mut a = account(
        name,
        &Authority::none(),
        &Authority::none(),
        &Authority::single(key),
        0,
    );
    a["posting"]["account_auths"] = json!(apps.iter().map(|app| json!([app, 1])).collect::<Vec<_>>());
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_the_frontends_library_upload_and_every_bad_one_is_refused() {
    let app_key = random_signing_key();
    let bob_key = random_signing_key();
    let k = |s: &k256::ecdsa::SigningKey| public_key_string(s.verifying_key());
    let extra = vec![
        account(
            "ecency.app",
            &Authority::none(),
            &Authority::none(),
            &Authority::single(&k(&app_key)),
            0,
        ),
        delegating("bob", &k(&bob_key), &["ecency.app"]),
        // carol revoked her delegation to the app: its key no longer speaks for her.
        delegating("carol", &k(&random_signing_key()), &[]),
    ];
    let f = Fixture::start_with(Backend::Directory, extra, |c, _, _| {
        c.hivesigner.apps = vec!["ecency.app".into()];
    })
    .await;

    let mut n = 0u8;
    let mut upload = |t: &str| {
        n += 1;
        let data = png(40 + n as u32, 30);
        (format!("/hs/{t}"), data)
    };
    // Accepted: signed by the author's posting key, and by the app's key for a delegating author.
    for (who, t) in [
        (
            "alice, her posting key",
            token(&f.keys.posting, "alice", "ecency.app", 0, "code"),
        ),
        (
            "bob, through ecency.app",
            token(&app_key, "bob", "ecency.app", 0, "code"),
        ),
        (
            "alice, a posting-type token",
            token(&f.keys.posting, "alice", "ecency.app", -60, "posting"),
        ),
    ] {
        let (path, data) = upload(&t);
        let r = f.upload(&path, "hs.png", &data).await;
        assert_eq!(r.status, 200, "{who}: {}", r.text());
        let url = json(&r)["url"].as_str().expect("url").to_string();
        assert!(
            url.ends_with(&format!("/{}/hs.png", key_of(&data))),
            "{who}: {url}"
        );
        assert_eq!(
            f.get(&format!("/{}", key_of(&data))).await.status,
            200,
            "{who}: served"
        );
    }

    // Refused, and nothing stored.
    let changed = {
        let t = token(&f.keys.posting, "alice", "ecency.app", 0, "code");
        let text = base64::engine::general_purpose::STANDARD
            .decode(t.replace('-', "+").replace('_', "/").replace('.', "="))
            .expect("base64");
        let text = String::from_utf8(text)
            .expect("json")
            .replace("\"alice\"", "\"bob\"");
        base64::engine::general_purpose::STANDARD.encode(text)
    };
    for (why, t) in [
        (
            "a stranger's key",
            token(&f.keys.stranger, "alice", "ecency.app", 0, "code"),
        ),
        (
            "her active key (posting only)",
            token(&f.keys.active, "alice", "ecency.app", 0, "code"),
        ),
        (
            "the app's key, for an author who revoked it",
            token(&app_key, "carol", "ecency.app", 0, "code"),
        ),
        (
            "the app's key, for an author who never delegated",
            token(&app_key, "alice", "ecency.app", 0, "code"),
        ),
        (
            "an app not accepted here",
            token(&f.keys.posting, "alice", "evil.app", 0, "code"),
        ),
        (
            "expired",
            token(&f.keys.posting, "alice", "ecency.app", -8 * 86_400, "code"),
        ),
        (
            "dated an hour ahead",
            token(&f.keys.posting, "alice", "ecency.app", 3_600, "code"),
        ),
        (
            "not a HiveSigner type",
            token(&f.keys.posting, "alice", "ecency.app", 0, "transfer"),
        ),
        ("alice's token with bob as author", changed),
        ("not a token", "bm90IGpzb24".to_string()),
    ] {
        let (path, data) = upload(&t);
        let r = f.upload(&path, "hs.png", &data).await;
        assert_eq!(r.status, 400, "{why}: {}", r.text());
        assert_eq!(json(&r)["error"]["name"], "invalid_signature", "{why}");
        assert_eq!(
            f.get(&format!("/{}", key_of(&data))).await.status,
            404,
            "{why}: stored"
        );
    }
    f.stop().await;
}
