//! Golden outputs: the versioned contracts (the text table, the JSON document, the JSON-lines
//! events, and the live agent's `/sessions` document) of a real multi-session capture, byte for
//! byte. Any change to them fails here, loudly; when a change is meant, regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff of `tests/golden/`.

mod common;

use common::fixture;
use mqtt_keepalive::capture::{OfflineReader, PacketSource};
use mqtt_keepalive::pipeline::Pipeline;
use mqtt_keepalive::sink::RecordSink;
use mqtt_keepalive::sink::report::{RecentSessions, SessionRecord, SessionsDocument};
use mqtt_keepalive::time::Timestamp;
use mqtt_keepalive::tracker::TrackerConfig;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const CAPTURE: &str = "many-sessions.pcap";

/// Compares `actual` with the golden file `name` (or writes it, with `UPDATE_GOLDEN=1`).
fn golden(name: &str, actual: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 makes it)", path.display()));
    if expected != actual {
        let (e, a) = (String::from_utf8_lossy(&expected), String::from_utf8_lossy(actual));
        let line =
            e.lines().zip(a.lines()).position(|(x, y)| x != y).unwrap_or(e.lines().count().min(a.lines().count()));
        panic!(
            "{name} changed at line {}:\n  golden: {:?}\n  now:    {:?}\n(if meant: UPDATE_GOLDEN=1 cargo test --test golden, and review the diff)",
            line + 1,
            e.lines().nth(line),
            a.lines().nth(line)
        );
    }
}

fn analyze(format: &str) -> Vec<u8> {
    // The file is named relative to the repository so the output does not depend on where it is.
    let out = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["analyze", "--no-progress", "-f", format, &format!("fixtures/{CAPTURE}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.len() > 1000, "a multi-session report, not an empty one");
    out.stdout
}

#[test]
fn text_table() {
    golden("many-sessions.txt", &analyze("text"));
}

#[test]
fn json_document() {
    let json = analyze("json");
    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(doc["sessions"].as_array().map(Vec::len), Some(30));
    golden("many-sessions.json", &json);
}

#[test]
fn json_lines_events() {
    golden("many-sessions.jsonl", &analyze("jsonl"));
}

/// `/sessions` as the live agent would answer it five seconds into the capture (some sessions
/// closed, most open), through the same pipeline.
#[test]
fn sessions_document() {
    let mut reader = OfflineReader::open(&fixture(CAPTURE)).unwrap();
    let mut pipeline = Pipeline::new(TrackerConfig::default());
    let mut closed = RecentSessions::new(1000);
    let mut at: Option<Timestamp> = None;
    while let Some(p) = reader.next_packet().unwrap() {
        let cut = *at.get_or_insert(p.ts.saturating_add(Duration::from_secs(5)));
        if p.ts > cut {
            break;
        }
        pipeline.frame(p.ts, p.link, p.data, p.orig_len);
        pipeline.drain(&mut [&mut RecordSink(|r: &SessionRecord| closed.push(r.clone()))]).unwrap();
    }
    let doc = SessionsDocument::new(pipeline.tracker().open_records(), 1000, &closed);
    assert!(doc.open > 10 && doc.sessions.len() > doc.open as usize, "open and closed sessions both listed");
    let mut json = serde_json::to_vec_pretty(&doc).unwrap();
    json.push(b'\n');
    golden("many-sessions.sessions.json", &json);
}
