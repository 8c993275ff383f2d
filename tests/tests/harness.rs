//! The harness itself: Garage instances are independent, reachable, and gone when stopped,
//! dropped, or when the test panics.

use std::path::Path;

use harness::Garage;

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn instances_are_independent_and_stop_by_pid() {
    let mut servers = Garage::start_many(2, &["uploads", "proxy"]);
    let (a, b) = (servers[0].access().clone(), servers[1].access().clone());
    assert_ne!(a.endpoint, b.endpoint);
    assert_ne!(a.access_key, b.access_key);
    assert_eq!(a.buckets, vec!["uploads", "proxy"]);
    for s in &servers {
        let port: u16 = s.access().endpoint.rsplit(':').next().unwrap().parse().unwrap();
        assert!(port < 32768, "ports stay below the ephemeral range");
    }

    let pid = servers[0].pid().expect("running");
    assert!(alive(pid));
    servers[0].stop();
    assert!(!alive(pid), "stop kills and reaps the process");
    assert!(servers[1].is_running(), "the other instance is unaffected");

    servers[0].restart();
    let pid = servers[0].pid().expect("running again");
    assert!(alive(pid));

    let pids: Vec<u32> = servers.iter().filter_map(Garage::pid).collect();
    drop(servers);
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "dropping the handles stops the servers"
    );
}

#[test]
fn servers_are_stopped_when_a_test_panics() {
    let mut pid = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let g = Garage::start("doomed", &["uploads"]);
        pid = g.pid();
        panic!("the test fails while the server runs");
    }));
    assert!(result.is_err());
    let pid = pid.expect("the server had started");
    assert!(!alive(pid), "unwinding dropped and killed the server");
}
