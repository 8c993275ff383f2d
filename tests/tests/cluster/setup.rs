//! Starting the cluster: config files written as an operator would, binaries from the build.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use blobstore::{BlobStore, Key};
use harness::origin::{Origin, Reply};
use harness::process::{kill, spawn_tied};
use harness::Garage;

pub const BUCKETS: [&str; 2] = ["uploads", "proxy"];
pub const USER: &str = "local.user";

pub fn bin(name: &str) -> PathBuf {
    harness::process::workspace_bin(name)
}

/// One service process: restartable with the same command line.
pub struct Proc {
    pub name: String,
    pub addr: SocketAddr,
    /// Where readiness is checked: (address, path).
    ready: (SocketAddr, &'static str),
    cmd: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(
        name: &str,
        addr: SocketAddr,
        ready: (SocketAddr, &'static str),
        cmd: Vec<String>,
        logs: &Path,
    ) -> Proc {
        let mut p = Proc {
            name: name.into(),
            addr,
            ready,
            cmd,
            log: logs.join(format!("{name}.log")),
            child: None,
        };
        p.restart();
        p
    }

    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = spawn_tied(
            Command::new(&self.cmd[0])
                .args(&self.cmd[1..])
                .stdout(Stdio::null())
                .stderr(log),
        )
        .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child = Some(child);
        let (addr, path) = self.ready;
        harness::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            harness::http_status(addr, path).filter(|s| *s == 200)
        })
        .unwrap_or_else(|| panic!("{} did not become ready:\n{}", self.name, self.log_text()));
        // The service's own listener may come up after the one readiness is asked on (the
        // edge's proxy and admin listeners are separate pingora services).
        assert!(
            harness::listening(self.addr, Duration::from_secs(30)),
            "{} does not listen on {}:\n{}",
            self.name,
            self.addr,
            self.log_text()
        );
    }

    /// SIGKILL, as a crash or an OOM kill.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Uploaded {
    pub url: String,
    pub path: String,
    pub key: String,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub garages: Vec<Garage>,
    pub origin: Origin,
    pub blobsync: Proc,
    pub imagehosts: Vec<Proc>,
    pub edges: Vec<Proc>,
    pub edge_admins: Vec<SocketAddr>,
    pub imagehost_admins: Vec<SocketAddr>,
    pub wif: PathBuf,
    rt: tokio::runtime::Runtime,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn fileservers_toml(garages: &[Garage], dir: &Path) -> String {
    let mut out = String::new();
    for g in garages {
        let a = g.access();
        let secret = dir.join(format!("{}.secret", g.name()));
        std::fs::write(&secret, format!("{}\n", a.secret_key)).expect("secret file");
        out.push_str(&format!(
            "[[fileservers]]\nname = \"{}\"\ns3 = {{ endpoint = \"{}\", region = \"{}\", access_key_id = \"{}\", secret_access_key_file = \"{}\", connect_timeout = \"500ms\", max_attempts = 2 }}\n\n",
            g.name(), a.endpoint, a.region, a.access_key, secret.display()
        ));
    }
    out
}

impl Cluster {
    /// Everything up and ready, with `edges` edge processes (each a purge peer of the others).
    pub fn start(edges: usize) -> Cluster {
        let dir = harness::tempdir();
        let d = dir.path();
        let logs = d.join("logs");
        std::fs::create_dir_all(&logs).expect("logs dir");
        let garages = Garage::start_many(2, &BUCKETS);
        let origin = Origin::start(|req| {
            if req.path.ends_with(".png") {
                Reply::ok(crate::setup::png(800, 600, 40))
                    .header("Content-Type", "image/png")
                    .header("Cache-Control", "max-age=600")
            } else {
                Reply::status(404)
            }
        });
        let out = Command::new(bin("hive-sign"))
            .args(["keygen", "--name", USER, "--dir"])
            .arg(d)
            .output()
            .expect("hive-sign keygen");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        // The account's profile picture is an image on the loopback origin (avatars redirect to it).
        let accounts_path = d.join("accounts.json");
        let mut accounts: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&accounts_path).expect("accounts")).expect("json");
        let profile = serde_json::json!({"profile": {"version": 2, "profile_image": format!("http://{}/avatar.png", origin.addr()),
            "cover_image": format!("http://{}/cover.png", origin.addr())}});
        accounts[0]["posting_json_metadata"] = profile.to_string().into();
        std::fs::write(&accounts_path, accounts.to_string()).expect("accounts");
        for f in ["blacklist-images.json", "blacklist-accounts.json"] {
            std::fs::write(d.join(f), "[]").expect("blacklist");
        }
        let fileservers = fileservers_toml(&garages, d);
        // One cluster secret, as an operator deploys it: blobsync's API token, which imagehosts
        // and edges also use to pull the takedown list and blobsync to push takedowns.
        let token = d.join("blobsync.token");
        std::fs::write(&token, "cluster-test-token\n").expect("token file");
        let ports = harness::ports::free_ports(3 + 2 * 2 + 2 * edges);
        let blobsync_addr = loopback(ports[0]);
        let edge_ports: Vec<(u16, u16)> = (0..edges).map(|i| (ports[7 + 2 * i], ports[8 + 2 * i])).collect();
        let edge_list = edge_ports
            .iter()
            .map(|(p, _)| format!("\"127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");

        let imagehost_admins = (0..2)
            .map(|i| format!("\"127.0.0.1:{}\"", ports[2 + 2 * i]))
            .collect::<Vec<_>>()
            .join(", ");
        let blobsync_toml = d.join("blobsync.toml");
        std::fs::write(
            &blobsync_toml,
            format!(
                "buckets = [\"uploads\", \"proxy\"]\n\n[server]\nlisten = \"{blobsync_addr}\"\ntoken_file = \"{}\"\n\n[queue]\npath = \"{}\"\n\n\
[copy]\ninitial_backoff = \"200ms\"\nmax_backoff = \"2s\"\n\n[anti_entropy]\ninterval = \"3s\"\n\n\
[takedown]\nimagehosts = [{imagehost_admins}]\npurge_edges = [{edge_list}]\n\n{fileservers}[log]\nformat = \"text\"\n",
                token.display(),
                d.join("queue").display()
            ),
        )
        .expect("blobsync config");
        let blobsync = Proc::start(
            "blobsync",
            blobsync_addr,
            (blobsync_addr, "/status"),
            vec![
                bin("blobsync").display().to_string(),
                "--config".into(),
                blobsync_toml.display().to_string(),
            ],
            &logs,
        );

        let edge0 = edge_ports[0].0;
        let imagehosts: Vec<Proc> = (0..2)
            .map(|i| {
                let (port, admin) = (ports[1 + 2 * i], ports[2 + 2 * i]);
                let path = d.join(format!("imagehost-{i}.toml"));
                std::fs::write(
                    &path,
                    format!(
                        "[server]\nlisten = \"127.0.0.1:{port}\"\nservice_url = \"http://127.0.0.1:{edge0}\"\n\n{fileservers}\
[upload]\nwrite_quorum = 1\n\n[accounts]\nstatic_file = \"{}\"\n\n[blacklist]\nimages_file = \"{}\"\naccounts_file = \"{}\"\n\n\
[replication]\nevents_url = \"http://{blobsync_addr}/events\"\ntoken_file = \"{token}\"\n\n\
[takedowns]\nurl = \"http://{blobsync_addr}/takedowns\"\ntoken_file = \"{token}\"\nstate_file = \"{}\"\npoll_interval = \"1s\"\n\n\
[proxy]\nallow_loopback = true\nnegotiate_avif = true\n\n[cache]\ndir = \"{}\"\nmax_bytes = 100000000\n\n\
[log]\nformat = \"text\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
                        accounts_path.display(),
                        d.join("blacklist-images.json").display(),
                        d.join("blacklist-accounts.json").display(),
                        d.join(format!("imagehost-{i}-takedowns.json")).display(),
                        d.join(format!("imagehost-{i}-cache")).display(),
                        token = token.display(),
                    ),
                )
                .expect("imagehost config");
                Proc::start(
                    &format!("imagehost-{i}"),
                    loopback(port),
                    (loopback(port), "/healthcheck"),
                    vec![bin("imagehost").display().to_string(), "--config".into(), path.display().to_string()],
                    &logs,
                )
            })
            .collect();
        let nodes = imagehosts
            .iter()
            .map(|p| format!("\"{}\"", p.addr))
            .collect::<Vec<_>>()
            .join(", ");
        let mut edge_procs = Vec::new();
        let mut edge_admins = Vec::new();
        for (i, (port, admin)) in edge_ports.iter().enumerate() {
            let peers = edge_ports
                .iter()
                .filter(|(p, _)| p != port)
                .map(|(p, _)| format!("\"127.0.0.1:{p}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let path = d.join(format!("edge-{i}.toml"));
            std::fs::write(
                &path,
                format!(
                    "[server]\nlisten = \"127.0.0.1:{port}\"\nupgrade_sock = \"{0}/edge-{i}.sock\"\npid_file = \"{0}/edge-{i}.pid\"\n\
grace_period = \"1s\"\nshutdown_timeout = \"1s\"\n\n[upstreams]\nnodes = [{nodes}]\nhealth_interval = \"250ms\"\n\n\
[cache]\ndisk_dir = \"{0}/edge-{i}-disk\"\n\n[purge]\npeers = [{peers}]\n\n\
[takedowns]\nurl = \"http://{blobsync_addr}/takedowns\"\ntoken_file = \"{1}\"\npoll_interval = \"1s\"\n\n\
[limits]\nuploads_per_second = 0\n\n[log]\nformat = \"text\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n",
                    d.display(),
                    token.display()
                ),
            )
            .expect("edge config");
            edge_procs.push(Proc::start(
                &format!("edge-{i}"),
                loopback(*port),
                (loopback(*admin), "/healthz"),
                vec![
                    bin("edge").display().to_string(),
                    "--config".into(),
                    path.display().to_string(),
                ],
                &logs,
            ));
            edge_admins.push(loopback(*admin));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Cluster {
            imagehost_admins: (0..2).map(|i| loopback(ports[2 + 2 * i])).collect(),
            wif: d.join(format!("{USER}.wif")),
            dir,
            garages,
            origin,
            blobsync,
            imagehosts,
            edges: edge_procs,
            edge_admins,
            rt,
        }
    }

    pub fn edge(&self) -> SocketAddr {
        self.edges[0].addr
    }

    /// Uploads `data` through `edge` the way a user does: sign with hive-sign, post with curl.
    /// The response's status and JSON.
    pub fn upload(&self, edge: SocketAddr, data: &[u8], name: &str) -> (u16, serde_json::Value) {
        let file = self
            .dir
            .path()
            .join(format!("upload-{}-{name}", rand::random::<u32>()));
        std::fs::write(&file, data).expect("write upload");
        let sig = Command::new(bin("hive-sign"))
            .args(["sign", "--key-file"])
            .arg(&self.wif)
            .arg(&file)
            .output()
            .expect("hive-sign");
        assert!(sig.status.success(), "{}", String::from_utf8_lossy(&sig.stderr));
        let sig = String::from_utf8_lossy(&sig.stdout).trim().to_string();
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--noproxy",
                "*",
                "-w",
                "\n%{http_code}",
                "-F",
            ])
            .arg(format!("file=@{};filename={name}", file.display()))
            .arg(format!("http://{edge}/{USER}/{sig}"))
            .output()
            .expect("curl");
        let _ = std::fs::remove_file(&file);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (
            code.trim().parse().unwrap_or(0),
            serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Uploads through the first edge and requires success: the answer's URL, its path on the
    /// edge, and the key.
    pub fn upload_ok(&self, data: &[u8], name: &str) -> Uploaded {
        let (status, json) = self.upload(self.edge(), data, name);
        assert_eq!(status, 200, "upload {name}: {json}");
        let url = json["url"].as_str().expect("url in the answer").to_string();
        let path = url
            .strip_prefix(&format!("http://{}", self.edge()))
            .expect("the url is on the edge")
            .to_string();
        let key = path.split('/').nth(1).expect("key").to_string();
        Uploaded { url, path, key }
    }

    pub fn store(&self, i: usize, bucket: &str) -> Arc<dyn BlobStore> {
        blobstore::open_bucket(&self.garages[i].fileserver(), bucket).expect("open bucket")
    }

    /// Keys in fileserver `i`'s `bucket` starting with `prefix`.
    pub fn keys_with(&self, i: usize, bucket: &str, prefix: &str) -> Vec<String> {
        let store = self.store(i, bucket);
        self.rt.block_on(async {
            let req = blobstore::ListRequest {
                prefix: prefix.to_string(),
                ..Default::default()
            };
            store
                .list(&req)
                .await
                .map(|p| p.entries.into_iter().map(|e| e.key.to_string()).collect())
                .unwrap_or_default()
        })
    }

    /// The bytes of `key` in fileserver `i`'s uploads bucket, if it is there.
    pub fn stored(&self, i: usize, key: &str) -> Option<Vec<u8>> {
        let store = self.store(i, "uploads");
        let key = Key::new(key).expect("key");
        self.rt.block_on(async {
            let obj = store.get(&key, None).await.ok()?;
            blobstore::collect_body(obj.body, 100 << 20)
                .await
                .ok()
                .map(|b| b.to_vec())
        })
    }
}

/// A PNG with some texture (so it compresses like a photo, not like a flat fill).
pub fn png(w: u32, h: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8 ^ seed, (y * 13) as u8, ((x * y) % 251) as u8 ^ seed])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// Width and height of an encoded image.
pub fn dimensions(data: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(data).expect("a decodable image");
    (img.width(), img.height())
}
