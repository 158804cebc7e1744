//! Scale: captures of 10k, 100k and 1M concurrently open sessions (handshake, CONNECT, CONNACK,
//! one ping each, none closed), analysed by `analyze`: time per packet should stay flat (linear
//! in packets) and peak RSS per session small (target: a million under 256 MB, about 256 bytes
//! a session; RSS is printed in MiB, 2^20 bytes, and per session in bytes).
//!
//! Every output format must hold a million open sessions in that budget: the sessions' state is
//! the tracker's, and no sink keeps a table of its own per session (issue 21: `-f jsonl` once
//! kept each client id a second time).
//!
//!     cargo bench --bench scale                 (SCALE_MAX=100000 to stop earlier;
//!                                                SCALE_FORMATS=json,jsonl,text,html,openmetrics
//!                                                for more formats than json)

mod common;

use common::*;
use mqtt_keepalive::synth::workload::{self, Workload};
use std::time::Duration;

fn main() {
    let max: u32 = std::env::var("SCALE_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let formats = std::env::var("SCALE_FORMATS").unwrap_or_else(|_| "json".into());
    println!(
        "{:>10} {:>12} {:>10} {:>9} {:>12} {:>13} {:>14}",
        "sessions", "format", "packets", "wall s", "ns/packet", "peak RSS", "bytes/session"
    );
    for sessions in [10_000u32, 100_000, 1_000_000].into_iter().filter(|s| *s <= max) {
        let file = data_dir().join(format!("open-{sessions}.pcap"));
        let w = Workload { sessions, duration: Duration::from_secs(60), connect_only: true, ..Default::default() };
        let written = workload::write(&w, std::fs::File::create(&file).unwrap()).unwrap();
        for format in formats.split(',') {
            let c = best_of(1, || analyze_cmd_as(&file, format));
            println!(
                "{sessions:>10} {format:>12} {:>10} {:>9.3} {:>12.0} {:>9.1} MiB {:>14.0}",
                written.packets,
                c.wall.as_secs_f64(),
                c.wall.as_nanos() as f64 / written.packets as f64,
                c.peak_rss_mb,
                c.peak_rss_mb * 1024.0 * 1024.0 / f64::from(sessions)
            );
        }
    }
}
