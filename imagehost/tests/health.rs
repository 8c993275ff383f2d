//! imagehost in-process: OH's health routes, the readiness route following real fileservers
//! (directories and Garage), the JSON 404 fallback, and shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use blobstore::FileserverConfig;
use harness::http::Response;
use harness::Garage;
use imagehost::Config;
use service::Shutdown;
use tokio::net::TcpListener;

type RunTask = tokio::task::JoinHandle<Result<(), imagehost::Error>>;

async fn get(addr: SocketAddr, path: &str) -> Response {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || harness::http::get(addr, &path).expect("request"))
        .await
        .expect("join")
}

async fn start(config: Config) -> (SocketAddr, Shutdown, RunTask) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = Shutdown::new();
    let task = tokio::spawn(imagehost::run(config, listener, shutdown.clone()));
    (addr, shutdown, task)
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

async fn stop(shutdown: Shutdown, task: RunTask) {
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("stops in time")
        .expect("join")
        .expect("run returns Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_routes_readiness_and_fallback_on_directories() {
    let root = harness::tempdir();
    let config = Config {
        fileservers: vec![
            FileserverConfig::directory("a", root.path().join("a")),
            FileserverConfig::directory("b", root.path().join("b")),
        ],
        cache: imagehost::config::CacheConfig {
            dir: None,
            ..Default::default()
        },
        ..Config::default()
    };
    let (addr, shutdown, task) = start(config).await;

    for path in ["/", "/.well-known/healthcheck.json"] {
        let r = get(addr, path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"));
        let body = json(&r);
        assert_eq!(body["ok"], true);
        assert!(body["version"]
            .as_str()
            .is_some_and(|v| v.starts_with(env!("CARGO_PKG_VERSION"))));
        let date = body["date"].as_str().expect("date");
        assert!(
            date.len() == 24 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
            "ISO date: {date}"
        );
    }

    let r = get(addr, "/healthcheck").await;
    assert_eq!(
        (r.status, json(&r)["fileservers"].clone()),
        (200, serde_json::json!({"a": "ok", "b": "ok"}))
    );

    // One fileserver's disk goes away: still ready, and the body says which one is down.
    std::fs::rename(root.path().join("a"), root.path().join("a-gone")).expect("unmount a");
    let r = get(addr, "/healthcheck").await;
    assert_eq!(
        (r.status, json(&r)["fileservers"].clone()),
        (200, serde_json::json!({"a": "unavailable", "b": "ok"}))
    );
    // Both gone: not ready.
    std::fs::rename(root.path().join("b"), root.path().join("b-gone")).expect("unmount b");
    let r = get(addr, "/healthcheck").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(json(&r)["ok"], false);

    // Anything unrouted is OH's JSON not_found.
    for path in ["/nope/a/b", "/p/x/extra"] {
        let r = get(addr, path).await;
        assert_eq!(
            (r.status, r.text()),
            (404, r#"{"error":{"name":"not_found"}}"#.to_string()),
            "{path}"
        );
    }

    stop(shutdown, task).await;
}

fn garage_fileserver(g: &Garage) -> FileserverConfig {
    g.fileserver_failing_fast(Duration::from_millis(500))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_garage_fileservers() {
    let mut servers = Garage::start_many(2, &["uploads", "proxy"]);
    let config = Config {
        fileservers: servers.iter().map(garage_fileserver).collect(),
        cache: imagehost::config::CacheConfig {
            dir: None,
            ..Default::default()
        },
        ..Config::default()
    };
    let (addr, shutdown, task) = start(config).await;

    let r = get(addr, "/healthcheck").await;
    assert_eq!(
        (r.status, json(&r)["fileservers"].clone()),
        (200, serde_json::json!({"fs0": "ok", "fs1": "ok"}))
    );
    servers[0].stop();
    let r = get(addr, "/healthcheck").await;
    assert_eq!(
        (r.status, json(&r)["fileservers"].clone()),
        (200, serde_json::json!({"fs0": "unavailable", "fs1": "ok"}))
    );
    servers[1].stop();
    assert_eq!(get(addr, "/healthcheck").await.status, 503);
    servers[0].restart();
    assert_eq!(
        get(addr, "/healthcheck").await.status,
        200,
        "ready again once a fileserver returns"
    );

    stop(shutdown, task).await;
}
