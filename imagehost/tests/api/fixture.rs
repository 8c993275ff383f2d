//! The service under test and everything around it.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use blobstore::{BlobStore, FileserverConfig, Layout, ListRequest};
use harness::hive::{account, Authority, HiveNode};
use harness::http::Response;
use harness::Garage;
use imagehost::auth::signature::{public_key_string, sign, signing_key_from_wif};
use imagehost::keys::UploadDigests;
use imagehost::Config;
use k256::ecdsa::SigningKey;
use service::Shutdown;

pub const BOUNDARY: &str = "----hiveTestBoundary7MA4YWxkTrZu0gW";
/// The dhive vector's image and signatures (see the contract).
pub const VECTOR_GIF: &str =
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b";
pub const VECTOR_SIG: &str = "1f7ce2e19a81e0d582fcb47470cdb8dd52c7ebc11d5a61487d06e24e6fea8d88cf60028fcc6e643cd5f89925c67447a2f8912f0d2b2a1a832136caa1091a9ea958";
pub const VECTOR_CS_SIG: &str = "1f3226040f907d9b9282887daa1a5736463b5568547e76114fc262c50f63671ea700f303b61fcc4e561d284064aee194d5e6f847610677c037d2749cc939994edd";
pub const VECTOR_KEY: &str = "DQmbvHsfahN2rUoqV5TnXKdT7EPU2SD1ZiKJE6oWpnE8wgX";
const VECTOR_WIF: &str = "5KavJ8prT6ktQxyGKy8SHj5ryXph36ugf5hFgUQarVTcZHo4gYq";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Directory,
    Garage,
}

/// Fresh keys for each run; `weak` has weight 1 under a posting threshold of 2.
pub struct Keys {
    pub posting: SigningKey,
    pub active: SigningKey,
    pub owner: SigningKey,
    pub weak: SigningKey,
    pub stranger: SigningKey,
}

pub struct Fixture {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), imagehost::Error>>,
    /// The uploads bucket of each fileserver, opened independently of the service.
    pub stores: Vec<Arc<dyn BlobStore>>,
    pub garages: Vec<Garage>,
    pub hive: HiveNode,
    pub keys: Keys,
    pub config: Config,
    _dir: tempfile::TempDir,
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 13) as u8, 99]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

pub fn multipart(field: &str, filename: Option<&str>, content: &[u8]) -> Vec<u8> {
    let mut body = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"");
    if let Some(f) = filename {
        body.push_str(&format!(
            "; filename=\"{f}\"\r\nContent-Type: application/octet-stream"
        ));
    }
    body.push_str("\r\n\r\n");
    let mut out = body.into_bytes();
    out.extend_from_slice(content);
    out.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    out
}

pub fn key_of(data: &[u8]) -> String {
    UploadDigests::of(data).upload_key()
}

fn s3(g: &Garage) -> FileserverConfig {
    g.fileserver_failing_fast(Duration::from_millis(500))
}

impl Fixture {
    pub async fn start(
        backend: Backend,
        tweak: impl FnOnce(&mut Config, &std::path::Path, &Keys),
    ) -> Fixture {
        Self::start_with(backend, Vec::new(), tweak).await
    }

    /// As `start`, with `extra` accounts (in `get_accounts` format) on the Hive node.
    pub async fn start_with(
        backend: Backend,
        extra: Vec<serde_json::Value>,
        tweak: impl FnOnce(&mut Config, &std::path::Path, &Keys),
    ) -> Fixture {
        let dir = harness::tempdir();
        let keys = Keys {
            posting: fresh_key(),
            active: fresh_key(),
            owner: fresh_key(),
            weak: fresh_key(),
            stranger: fresh_key(),
        };
        let k = |s: &SigningKey| public_key_string(s.verifying_key());
        let posting = Authority::single(&k(&keys.posting));
        let vector = public_key_string(signing_key_from_wif(VECTOR_WIF).expect("wif").verifying_key());
        let mut accounts = extra;
        accounts.extend(vec![
            account(
                "alice",
                &Authority::single(&k(&keys.owner)),
                &Authority::single(&k(&keys.active)),
                &posting,
                0,
            ),
            account(
                "weakling",
                &Authority::none(),
                &Authority::none(),
                &Authority {
                    threshold: 2,
                    keys: vec![(k(&keys.weak), 1)],
                },
                0,
            ),
            account(
                "lowrep",
                &Authority::none(),
                &Authority::none(),
                &posting,
                -10_525_900_772_718,
            ),
            account("iamgod", &Authority::none(), &Authority::none(), &posting, 0),
            account("spammer", &Authority::none(), &Authority::none(), &posting, 0),
            account(
                "imagehoster-test",
                &Authority::none(),
                &Authority::none(),
                &Authority::single(&vector),
                0,
            ),
        ]);
        let hive = HiveNode::start(accounts);
        std::fs::write(dir.path().join("accounts-blacklist.json"), r#"["spammer"]"#)
            .expect("write blacklist");
        std::fs::write(
            dir.path().join("images-blacklist.json"),
            r#"{"urls": [], "patterns": ["^DQmTakenDown"]}"#,
        )
        .expect("write blacklist");

        let garages = match backend {
            Backend::Directory => Vec::new(),
            Backend::Garage => Garage::start_many(2, &["uploads", "proxy"]),
        };
        let fileservers = match backend {
            Backend::Directory => vec![
                FileserverConfig::directory("fs0", dir.path().join("fs0")),
                FileserverConfig::directory("fs1", dir.path().join("fs1")),
            ],
            Backend::Garage => garages.iter().map(s3).collect(),
        };
        let mut config = Config {
            fileservers,
            ..Config::default()
        };
        config.server.service_url = "http://images.test".into();
        config.accounts.rpc_nodes = vec![hive.url()];
        config.blacklist.accounts_file = Some(dir.path().join("accounts-blacklist.json"));
        config.blacklist.images_file = Some(dir.path().join("images-blacklist.json"));
        config.upload.spool_memory = 4096;
        config.upload.spool_dir = Some(dir.path().to_path_buf());
        config.cache.dir = Some(dir.path().join("hotcache"));
        config.takedowns.state_file = Some(dir.path().join("takedowns.json"));
        tweak(&mut config, dir.path(), &keys);

        let stores = config
            .fileservers
            .iter()
            .map(|fs| blobstore::open_bucket(fs, &config.buckets.uploads).expect("open uploads bucket"))
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = Shutdown::new();
        let task = tokio::spawn(imagehost::run(config.clone(), listener, shutdown.clone()));
        let f = Fixture {
            addr,
            shutdown,
            task,
            stores,
            garages,
            hive,
            keys,
            config,
            _dir: dir,
        };
        let addr = f.addr;
        tokio::task::spawn_blocking(move || {
            harness::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                harness::http_status(addr, "/")
            })
        })
        .await
        .expect("join")
        .expect("imagehost answers");
        f
    }

    pub async fn stop(self) {
        self.shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops in time")
            .expect("join")
            .expect("run returns Ok");
    }

    pub async fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let (addr, method, path, body) = (self.addr, method.to_string(), path.to_string(), body.to_vec());
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let h: Vec<(&str, &str)> = headers.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            harness::http::request(addr, &method, &path, &h, &body).expect("request")
        })
        .await
        .expect("join")
    }

    /// The proxy bucket of fileserver `i`, opened independently of the service.
    pub fn proxy_store(&self, i: usize) -> Arc<dyn BlobStore> {
        blobstore::open_bucket(&self.config.fileservers[i], &self.config.buckets.proxy)
            .expect("open proxy bucket")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, &[], b"").await
    }

    /// `POST path` with `data` as the multipart file `filename`.
    pub async fn head(&self, path: &str) -> Response {
        self.request("HEAD", path, &[], &[]).await
    }

    pub async fn upload(&self, path: &str, filename: &str, data: &[u8]) -> Response {
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        self.request(
            "POST",
            path,
            &[("Content-Type", &ct)],
            &multipart("file", Some(filename), data),
        )
        .await
    }

    pub async fn raw(&self, bytes: Vec<u8>, half_close: bool) -> Response {
        let addr = self.addr;
        tokio::task::spawn_blocking(move || {
            harness::http::raw(addr, &bytes, half_close).expect("raw request")
        })
        .await
        .expect("join")
    }

    /// Keys stored in the uploads bucket of fileserver `i`.
    pub async fn keys_on(&self, i: usize) -> BTreeSet<String> {
        let page = self.stores[i]
            .list(&ListRequest::default())
            .await
            .expect("list uploads");
        page.entries.into_iter().map(|e| e.key.to_string()).collect()
    }

    /// Waits until every fileserver holds exactly `want` (background writes may still be landing).
    pub async fn expect_keys_everywhere(&self, want: &BTreeSet<String>) {
        for i in 0..self.stores.len() {
            let mut got = BTreeSet::new();
            for _ in 0..100 {
                got = self.keys_on(i).await;
                if &got == want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(&got, want, "fileserver {i} holds exactly the accepted uploads");
        }
    }
}

pub fn fresh_key() -> SigningKey {
    imagehost::auth::signature::random_signing_key()
}

pub fn signature(key: &SigningKey, data: &[u8], checksum_route: bool) -> String {
    sign(
        key,
        &UploadDigests::of(data)
            .signed_digest(checksum_route)
            .expect("both digests"),
    )
}

pub fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", r.text()))
}

pub fn layout_dir(config: &Config, i: usize) -> Option<(std::path::PathBuf, Layout)> {
    let fs = &config.fileservers[i];
    fs.directory
        .as_ref()
        .map(|d| (d.path.join(&config.buckets.uploads), fs.layout))
}

/// The value of one sample in this process's metrics, e.g. `imagehost_served_total{status="200"}`.
pub fn metric(sample: &str) -> f64 {
    service::admin::render_metrics()
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}
