//! The peers' processes: Varnish and nginx `proxy_cache` started in directories of their own,
//! and what each server holds as it says (the edge, Varnish) or as its files show (nginx).

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::process::Killed;

use super::Server;

pub fn varnish(dir: &std::path::Path, origin: SocketAddr, storage: &str, name: &'static str) -> Server {
    let port = harness::free_port();
    let child = Command::new("varnishd")
        .args([
            "-F",
            "-a",
            &format!("127.0.0.1:{port}"),
            "-b",
            &origin.to_string(),
        ])
        .args(["-s", storage, "-t", "3600", "-n"])
        .arg(dir.join(name))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start varnishd (apt-get install varnish)");
    Server {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _keep: Box::new(Killed(child)),
    }
}

/// A server's name as a directory name.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The cache directory of the nginx named `name`, in its own directory under `dir`.
pub fn nginx_cache(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    dir.join(slug(name)).join("cache")
}

/// nginx `proxy_cache` with `max_size` `max` bytes and a key zone of `zone` (a size as nginx
/// reads it), in its own directory (named after it).
pub fn start_nginx(
    dir: &std::path::Path,
    origin: SocketAddr,
    (max, zone): (u64, &str),
    name: &'static str,
) -> Server {
    let port = harness::free_port();
    let d = dir.join(slug(name));
    std::fs::create_dir_all(nginx_cache(dir, name)).expect("nginx dir");
    let conf = format!(
        "daemon off; master_process on; worker_processes 2; user root; pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  proxy_cache_path {d}/cache levels=1:2 keys_zone=c:{zone} max_size={max} inactive=1h use_temp_path=off
    manager_files=100000 manager_sleep=10ms manager_threshold=1s;
  upstream origin {{ server {origin}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_cache c;
      proxy_cache_valid 200 1h;
      proxy_cache_lock on;
    }}
  }}
}}
",
        d = d.display(),
    );
    std::fs::write(d.join("nginx.conf"), conf).expect("nginx.conf");
    // A process group of its own, so the whole of it can be killed if it does not stop.
    let child = Command::new("nginx")
        .arg("-c")
        .arg(d.join("nginx.conf"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (apt-get install nginx-light)");
    Server {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _keep: Box::new(Nginx(child)),
    }
}

/// An nginx master, stopped by SIGTERM so that it takes its workers and cache manager with it
/// (a SIGKILL to it alone leaves them running, orphaned, beside the next server measured); if it
/// has not stopped in 10 s, its whole process group is killed.
struct Nginx(std::process::Child);

impl Drop for Nginx {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        harness::process::terminate(&self.0);
        let stopped = harness::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            self.0.try_wait().ok().flatten()
        });
        if stopped.is_none() {
            // SAFETY: kill(2) on the process group this bench made for the nginx it started.
            unsafe {
                libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL);
            }
            harness::process::kill(&mut self.0);
        }
    }
}

/// Where to read what a server holds.
#[derive(Clone)]
pub enum Holder {
    Edge(SocketAddr),
    Varnish(&'static str),
    /// Its cache directory.
    Nginx(std::path::PathBuf),
}

pub fn holder(dir: &std::path::Path, server: &Server) -> Holder {
    match server._keep.downcast_ref::<bench::Edge>() {
        Some(e) => Holder::Edge(e.admin),
        None if server.name.starts_with("varnish") => Holder::Varnish(server.name),
        None => Holder::Nginx(nginx_cache(dir, server.name)),
    }
}

/// What a server holds now, as far as it says: the edge's memory bytes, Varnish's storage bytes,
/// the size of nginx's cache files (its `max_size` is enforced by a background manager, so it
/// may run over).
pub fn held(dir: &std::path::Path, holder: &Holder) -> u64 {
    if let Holder::Edge(admin) = holder {
        let stats = harness::http::get(*admin, "/stats.json")
            .map(|r| r.body)
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&stats).unwrap_or_default();
        return v["cache_memory_bytes"].as_u64().unwrap_or(0);
    }
    if let Holder::Varnish(name) = holder {
        let out = Command::new("varnishstat")
            .args(["-1", "-n"])
            .arg(dir.join(name))
            .args(["-f", "SMA.*.g_bytes", "-f", "SMF.*.g_bytes"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let bytes: u64 = out
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        return bytes;
    }
    match holder {
        Holder::Nginx(cache) => nginx_files(cache).0,
        _ => 0,
    }
}

/// The bytes and number of nginx's cache files under `dir`, each file counted as nginx counts it
/// against `max_size` (`ngx_file_fs_size`: the blocks it holds, when more than its length), which
/// is also what it takes in the page cache: a file's length alone leaves out a tenth of it here.
pub fn nginx_files(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => nginx_files(&e.path()),
            _ => e
                .metadata()
                .map_or((0, 0), |m| (m.len().max(m.blocks() * 512), 1)),
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// A key zone that holds `keys` keys: nginx 1.22's zone takes 129 B a key beyond about 6 KiB of
/// its own (measured here: 256, 512 and 1,024 KiB zones held 1,983, 4,031 and 8,095 keys).
pub fn zone_for(keys: u64) -> String {
    format!("{}k", (keys * 129 + (6 << 10)).div_ceil(1024))
}
