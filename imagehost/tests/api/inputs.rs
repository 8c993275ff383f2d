//! The input budget: originals held in memory (fetching, read, waiting for the pool) are bounded
//! by `pipeline.input_budget`. A body that announces its length holds its room while it streams;
//! a second original that finds no room within `input_wait` gets a fast 503 instead of adding up;
//! the room comes back when the first load ends, and the node serves again.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use super::fixture::{json, metric, Backend, Fixture};
use super::images;
use super::proxy::p;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originals_past_the_input_budget_wait_then_get_503_and_the_room_comes_back() {
    let photo = images::jpeg(64, 48);
    // One origin that answers `/stall` with a length that takes the whole budget, sends a few bytes and stalls until
    // told to hang up; everything else gets the small photo.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let origin = listener.local_addr().expect("addr");
    let (hang_up, stalled) = std::sync::mpsc::channel::<()>();
    let stalled = std::sync::Arc::new(std::sync::Mutex::new(Some(stalled)));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let (photo, stalled) = (photo.clone(), stalled.clone());
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut b).is_ok_and(|n| n == 1) {
                    head.push(b[0]);
                }
                if String::from_utf8_lossy(&head).starts_with("GET /stall") {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 999000\r\n\r\n\xff\xd8\xff");
                    let rx = stalled.lock().expect("lock").take();
                    if let Some(rx) = rx {
                        let _ = rx.recv();
                    }
                } else {
                    let _ = conn.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            photo.len()
                        )
                        .as_bytes(),
                    );
                    let _ = conn.write_all(&photo);
                }
            });
        }
    });
    let f = Fixture::start(Backend::Directory, |c, _, _| {
        c.proxy.allow_loopback = true;
        c.proxy.max_image_size = 1_000_000;
        c.pipeline.input_budget = 1_000_000;
        c.pipeline.input_wait = Duration::from_millis(300);
    })
    .await;
    let stall_url = format!("http://{origin}/stall");
    let addr = f.addr;
    let first = tokio::spawn(async move {
        let path = p(&stall_url, "width=10");
        tokio::task::spawn_blocking(move || {
            harness::http::request_within(addr, "GET", &path, &[], &[], Duration::from_secs(30))
        })
        .await
    });
    // Wait until the stalled body holds its room.
    harness::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        (metric("imagehost_input_memory_bytes") >= 998_000.0).then_some(())
    })
    .expect("the stalled original holds its room");

    let r = f.get(&p(&format!("http://{origin}/other.jpg"), "width=20")).await;
    assert_eq!(
        (r.status, json(&r)["error"]["name"].as_str()),
        (503, Some("internal_error")),
        "{}",
        r.text()
    );

    hang_up.send(()).expect("hang up");
    let r = first.await.expect("join").expect("join").expect("answer");
    assert_eq!(r.status, 400, "a cut body is an upstream error: {}", r.text());
    harness::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        (metric("imagehost_input_memory_bytes") == 0.0).then_some(())
    })
    .expect("the room is given back");
    let r = f.get(&p(&format!("http://{origin}/other.jpg"), "width=20")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    f.stop().await;
}
