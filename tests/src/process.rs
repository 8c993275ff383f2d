//! Child processes that cannot outlive the test: killed on drop and when the test process dies.

use std::process::{Child, Command};

/// Spawns `cmd` so the kernel kills it (SIGKILL) if the spawning thread's process goes away, even
/// when the test is killed without unwinding.
#[allow(unsafe_code)]
pub fn spawn_tied(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child's own process state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Kills and reaps a child; harmless if it already exited.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A child killed and reaped when this is dropped, however the test or bench ends (also when
/// the parent-death signal of [`spawn_tied`] does not hold, e.g. after entering a namespace).
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        kill(&mut self.0);
    }
}

/// Sends SIGTERM, as systemd does on `stop`.
#[allow(unsafe_code)]
pub fn terminate(child: &Child) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
}

/// Waits up to `timeout` for the child to exit.
pub fn wait_exit(child: &mut Child, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
    crate::wait_until(timeout, std::time::Duration::from_millis(20), || {
        child.try_wait().ok().flatten()
    })
}

/// Resident memory of a process in KiB (`VmRSS`), 0 if it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The most resident memory a process has had in KiB (`VmHWM`, the kernel's high-water mark),
/// 0 if it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A binary of this workspace built into the same target directory as the running test
/// (`cargo build --workspace --bins`; `scripts/test` builds them before the tests).
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}
