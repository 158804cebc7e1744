//! Writes a synthetic broker workload as a pcap file (see `mqtt_keepalive::synth::workload`).
//!
//!     cargo run --release --example gen-capture -- --sessions 2000 --minutes 10 --out /tmp/bench.pcap
//!     cargo run --release --example gen-capture -- --sessions 1000000 --connect-only --out /tmp/1m.pcap

use mqtt_keepalive::synth::workload::{self, Workload};
use std::time::Duration;

fn main() {
    let mut w = Workload::default();
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--sessions" => w.sessions = val().parse().unwrap_or_else(|_| usage("--sessions N")),
            "--minutes" => {
                w.duration =
                    Duration::from_secs_f64(val().parse::<f64>().unwrap_or_else(|_| usage("--minutes M")) * 60.0)
            }
            "--publish-interval" => {
                w.publish_interval_s = val().parse().unwrap_or_else(|_| usage("--publish-interval S"))
            }
            "--silent-share" => w.silent_share = val().parse().unwrap_or_else(|_| usage("--silent-share F")),
            "--seed" => w.seed = val().parse().unwrap_or_else(|_| usage("--seed N")),
            "--connect-only" => w.connect_only = true,
            "--out" => out = Some(val()),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let out = out.unwrap_or_else(|| usage("--out FILE is required"));
    let file = std::fs::File::create(&out).unwrap_or_else(|e| usage(&format!("{out}: {e}")));
    let written = workload::write(&w, file).unwrap_or_else(|e| usage(&format!("{out}: {e}")));
    eprintln!(
        "{out}: {} packets, {:.1} MB, {} sessions ({} closed for silence)",
        written.packets,
        written.bytes as f64 / 1e6,
        w.sessions,
        written.silent
    );
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "gen-capture: {msg}\nusage: gen-capture --out FILE [--sessions N] [--minutes M] [--publish-interval S] [--silent-share F] [--seed N] [--connect-only]"
    );
    std::process::exit(2)
}
