//! Throughput of `analyze` on a ~1M-packet, ~230 MB capture of 2,000 sessions, against the read
//! limit (`tcpdump -r F -w /dev/null`) and what users run today (`tshark ... -Y mqtt`), in one
//! run so the ratios compare like with like. Also counts heap allocations per packet in the
//! steady state of the core (capture -> pipeline: decode, tracker).
//!
//!     cargo bench --bench throughput            (BENCH_RUNS=N to change the 3 runs per tool)
#![allow(clippy::disallowed_methods)] // waits on real processes and measures real time

mod common;

use common::*;
use mqtt_keepalive::capture::{OfflineReader, PacketSource};
use mqtt_keepalive::pipeline::Pipeline;
use mqtt_keepalive::session::record::SessionRecord;
use mqtt_keepalive::sink::RecordSink;
use mqtt_keepalive::synth::workload::{self, Workload};
use mqtt_keepalive::tracker::TrackerConfig;
use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts heap allocations (the benchmark's own measurement, not used by the tool).
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let file = data_dir().join("workload-2000x10min.pcap");
    let w =
        Workload { sessions: 2000, duration: Duration::from_secs(600), publish_interval_s: 1.8, ..Default::default() };
    let written = workload::write(&w, std::fs::File::create(&file).unwrap()).unwrap();
    let size_mb = std::fs::metadata(&file).unwrap().len() as f64 / 1e6;
    let packets = written.packets as f64;
    println!("capture: {} ({} packets, {size_mb:.1} MB, {} sessions)", file.display(), written.packets, w.sessions);
    println!(
        "machine: {} cores; best of {runs} runs per tool\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<44} {:>9} {:>12} {:>9} {:>10} {:>9}", "tool", "wall s", "packets/s", "MB/s", "peak RSS", "CPU s");
    let row = |name: &str, c: Cost| {
        println!(
            "{name:<44} {:>9.3} {:>12.0} {:>9.1} {:>7.1} MB {:>9.3}",
            c.wall.as_secs_f64(),
            packets / c.wall.as_secs_f64(),
            size_mb / c.wall.as_secs_f64(),
            c.peak_rss_mb,
            c.cpu.as_secs_f64()
        );
    };
    let analyze = best_of(runs, || analyze_cmd(&file));
    row("mqtt-keepalive analyze -f json", analyze);
    let tcpdump = have("tcpdump").then(|| {
        let c = best_of(runs, || {
            let mut c = Command::new("tcpdump");
            c.arg("-r").arg(&file).args(["-w", "/dev/null"]);
            c
        });
        row("tcpdump -r F -w /dev/null", c);
        c
    });
    let tshark = have("tshark").then(|| {
        let c = measure(Command::new("tshark").arg("-r").arg(&file).args([
            "-Y",
            "mqtt",
            "-T",
            "fields",
            "-e",
            "tcp.stream",
            "-e",
            "mqtt.msgtype",
            "-e",
            "mqtt.kalive",
        ]));
        row("tshark -Y mqtt -T fields (1 run)", c);
        c
    });
    println!();
    if let Some(t) = tcpdump {
        println!(
            "analyze / tcpdump pass-through time: {:.2}x (target: within 1.5x)",
            analyze.wall.as_secs_f64() / t.wall.as_secs_f64()
        );
    }
    if let Some(t) = tshark {
        println!(
            "tshark / analyze time:               {:.0}x (target: at least 60x)",
            t.wall.as_secs_f64() / analyze.wall.as_secs_f64()
        );
    }
    println!("analyze peak RSS:                    {:.1} MB (target: under 64 MB)", analyze.peak_rss_mb);

    // The same work on one thread, in process (read, decode, track, report): what the second
    // core (the reader stage of `analyze`) buys.
    let single = (0..runs)
        .map(|_| {
            let t = std::time::Instant::now();
            let mut reader = OfflineReader::open(&file).unwrap();
            let mut pipeline = Pipeline::new(TrackerConfig::default());
            let mut report = mqtt_keepalive::sink::report::Report::new();
            let mut records = RecordSink(|r: &SessionRecord| report.add(r));
            while let Some(p) = reader.next_packet().unwrap() {
                pipeline.frame(p.ts, p.link, p.data, p.orig_len);
                pipeline.drain(&mut [&mut records]).unwrap();
            }
            pipeline.finish(&mut [&mut records]).unwrap();
            t.elapsed()
        })
        .min()
        .unwrap();
    println!(
        "one thread, in process (no output):   {:.3} s; the two-stage pipeline is {:.2}x faster",
        single.as_secs_f64(),
        single.as_secs_f64() / analyze.wall.as_secs_f64()
    );

    // Allocations in the core's steady state: the second half of the capture, when every
    // session is established. Counted without and with the per-session records (whose
    // allocations happen when a session ends, or when its round-trip list grows).
    for (records, what) in [(false, "core"), (true, "core + session records")] {
        let mut reader = OfflineReader::open(&file).unwrap();
        let mut pipeline = Pipeline::new(TrackerConfig { records, ..TrackerConfig::default() });
        let (mut n, half) = (0u64, written.packets / 2);
        let (mut at_half, mut ended) = (0, 0);
        while let Some(p) = reader.next_packet().unwrap() {
            pipeline.frame(p.ts, p.link, p.data, p.orig_len);
            let mut count = RecordSink(|_: &SessionRecord| {
                if n > half {
                    ended += 1;
                }
            });
            pipeline.drain(&mut [&mut count]).unwrap();
            n += 1;
            if n == half {
                at_half = ALLOCS.load(Ordering::Relaxed);
            }
        }
        let steady = ALLOCS.load(Ordering::Relaxed) - at_half;
        println!(
            "{what}, steady state (2nd half, {} packets, {ended} sessions ended): {steady} heap allocations = {:.5} per packet",
            written.packets - half,
            steady as f64 / (written.packets - half) as f64
        );
    }
}
