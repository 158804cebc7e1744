//! `/sessions` on a busy agent: how long the capture thread spends answering one request, with
//! 10k and 100k open sessions. `top` asks `sort=deadline&limit=<rows>` once a refresh; the
//! default listing (`sort=severity`, limit 100) is shown beside it. The time is the whole
//! answer on the capture thread: every open session's record snapshot, the selection, and the
//! JSON the server writes.
//!
//!     cargo bench --bench sessions        (SESSIONS_MAX=N to stop at N open sessions)
#![allow(clippy::disallowed_methods)] // measures real time

mod common;

use common::*;
use mqtt_keepalive::capture::{OfflineReader, PacketSource};
use mqtt_keepalive::pipeline::Pipeline;
use mqtt_keepalive::sink::report::filter::Glob;
use mqtt_keepalive::sink::report::{RecentSessions, SessionOrder, SessionsDocument, SessionsSelection};
use mqtt_keepalive::synth::workload::{self, Workload};
use mqtt_keepalive::tracker::TrackerConfig;
use std::time::{Duration, Instant};

fn main() {
    let max: u32 = std::env::var("SESSIONS_MAX").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    println!("{:>9} {:<34} {:>8} {:>10} {:>12}", "open", "request", "listed", "ms (best)", "JSON bytes");
    for sessions in [10_000u32, 100_000].into_iter().filter(|s| *s <= max) {
        let file = data_dir().join(format!("open-{sessions}.pcap"));
        let w = Workload { sessions, duration: Duration::from_secs(60), connect_only: true, ..Default::default() };
        workload::write(&w, std::fs::File::create(&file).unwrap()).unwrap();
        let mut pipeline = Pipeline::new(TrackerConfig { records: true, ..Default::default() });
        let mut reader = OfflineReader::open(&file).unwrap();
        while let Some(p) = reader.next_packet().unwrap() {
            pipeline.frame(p.ts, p.link, p.data, p.orig_len);
        }
        let open = pipeline.tracker().open_records().count();
        let closed = RecentSessions::new(100);
        let requests = [
            (
                "sort=deadline&limit=40 (top)",
                SessionsSelection { limit: 40, order: SessionOrder::Deadline, ..Default::default() },
            ),
            (
                "sort=deadline&limit=500",
                SessionsSelection { limit: 500, order: SessionOrder::Deadline, ..Default::default() },
            ),
            ("default (severity, limit 100)", SessionsSelection { limit: 100, ..Default::default() }),
            (
                "client_id=device-1* (top's filter)",
                SessionsSelection { limit: 40, order: SessionOrder::Deadline, client_id: Some(Glob::new("device-1*")) },
            ),
        ];
        for (name, selection) in requests {
            let mut best = Duration::MAX;
            let mut listed = 0;
            let mut bytes = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let doc = SessionsDocument::select(pipeline.tracker().open_records(), &selection, &closed);
                let json = serde_json::to_vec(&doc).unwrap();
                best = best.min(t.elapsed());
                listed = doc.sessions.len();
                bytes = json.len();
            }
            println!("{open:>9} {name:<34} {listed:>8} {:>10.1} {bytes:>12}", best.as_secs_f64() * 1e3);
        }
    }
}
