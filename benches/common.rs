//! Shared by the benchmarks: run a command and measure wall time, CPU and peak RSS.
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // waits on real processes and measures real time

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of a command cost.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    pub wall: Duration,
    pub cpu: Duration,
    pub peak_rss_mb: f64,
}

/// Runs `cmd` (stdout to /dev/null) and measures it with wait4(2).
#[allow(clippy::zombie_processes)] // reaped by wait4(2) below, which also gives its rusage
pub fn measure(cmd: &mut Command) -> Cost {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("command runs");
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed: {status}");
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Cost { wall, cpu: tv(usage.ru_utime) + tv(usage.ru_stime), peak_rss_mb: usage.ru_maxrss as f64 / 1024.0 }
}

/// The best (lowest wall time) of `n` runs.
pub fn best_of(n: usize, mut make: impl FnMut() -> Command) -> Cost {
    (0..n).map(|_| measure(&mut make())).min_by_key(|c| c.wall).expect("n > 0")
}

/// True when `tool` is on the PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where generated benchmark captures go.
pub fn data_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn analyze_cmd(file: &std::path::Path) -> Command {
    analyze_cmd_as(file, "json")
}

/// `analyze -f FORMAT FILE`.
#[allow(dead_code)] // not every bench uses every helper
pub fn analyze_cmd_as(file: &std::path::Path, format: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"));
    c.args(["analyze", "--no-progress", "-f", format]).arg(file);
    c
}
