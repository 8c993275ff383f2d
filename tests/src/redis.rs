//! A real `redis-server` on loopback, without persistence, killed when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::process::{kill, spawn_tied};

pub struct Redis {
    child: Child,
    addr: SocketAddr,
}

impl Redis {
    /// Starts `redis-server` (Debian's package; `scripts/test` installs it) on a free port.
    pub fn start() -> Redis {
        for _ in 0..3 {
            let port = crate::free_port();
            let child = spawn_tied(
                Command::new("redis-server")
                    .args([
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .expect("start redis-server (apt-get install redis-server; scripts/test does)");
            let mut r = Redis {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            };
            if crate::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                r.ping().then_some(())
            })
            .is_some()
            {
                return r;
            }
            kill(&mut r.child);
        }
        panic!("redis-server did not answer PING");
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
