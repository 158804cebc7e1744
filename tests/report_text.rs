//! The text report a person reads (issue 11): captured strings escaped, columns aligned by
//! display width, client ids cut to a fixed width (whole in JSON), start and close times, the
//! Will column and the legend; the filters and the session timeline; the hints about other ports
//! and refused connections.

use mqtt_keepalive::flow::Side;
use mqtt_keepalive::sink::report::terminal::width;
use mqtt_keepalive::synth::{Capture, Conn, Encap, mqtt};
use mqtt_keepalive::time::Timestamp;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// 2026-11-26T12:21:57Z.
const BASE: f64 = 1_795_695_717.0;

fn t(s: f64) -> Timestamp {
    Timestamp::from_secs_f64(BASE + s)
}

const LONG_CJK: &str = "传感器-温度-客厅-一号-二号-三号-四号-五号-六号-七号";
/// Client ids a hostile or careless client could send.
const IDS: [&str; 7] = [
    "\x1b]0;pwned\x07\x1b[2J\x1b[31mred",
    "line1\nline2\r\tend",
    LONG_CJK,
    "",
    "evil\u{202e}gnp.exe",
    "c1\u{9b}31m\u{7f}",
    "plain-🌡",
];

/// One session per client id: CONNECT (the first with a Will), CONNACK, DISCONNECT.
fn hostile_ids_capture() -> Capture {
    let mut cap = Capture::new(Encap::Ethernet);
    for (i, id) in IDS.iter().enumerate() {
        let at = i as f64;
        let client = format!("10.0.0.{}:4000{i}", i + 1).parse().unwrap();
        let mut c = Conn::new(client, "10.0.0.99:1883".parse().unwrap(), 1000, 9000);
        c.handshake(&mut cap, t(at));
        c.send(&mut cap, t(at + 0.1), Side::Client, &mqtt::connect(4, 30, id, i == 0, None));
        c.send(&mut cap, t(at + 0.2), Side::Broker, &mqtt::connack(0, None));
        c.send(&mut cap, t(at + 2.0), Side::Client, &mqtt::disconnect(None));
        c.fin(&mut cap, t(at + 2.0), Side::Client);
    }
    cap.sort();
    cap
}

fn write(dir: &Path, name: &str, cap: &Capture) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, cap.to_pcap()).unwrap();
    path
}

fn analyze(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"));
    cmd.arg("analyze").arg("--no-progress").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn text(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The table's rows: from the header to the first blank line.
fn table(text: &str) -> Vec<&str> {
    text.lines().skip_while(|l| !l.starts_with("ID  CLIENT ")).take_while(|l| !l.is_empty()).collect()
}

#[test]
fn hostile_client_ids_are_escaped_and_cannot_break_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ids.pcap", &hostile_ids_capture());
    let out = text(&analyze(&[path.to_str().unwrap()], &[]));
    for bad in ['\x1b', '\x07', '\r', '\t', '\u{202e}', '\u{9b}', '\u{7f}'] {
        assert!(!out.contains(bad), "{bad:?} reached the terminal:\n{out}");
    }
    let rows = table(&out);
    assert_eq!(rows.len(), 1 + IDS.len(), "one line per session, none broken:\n{out}");
    assert!(out.contains("\\x1b]0;pwned\\x07\\x1b[2J…"), "{out}");
    assert!(out.contains("line1\\nline2\\r\\tend"), "{out}");
    assert!(out.contains("evil\\u{202e}gnp.exe"), "{out}");
    assert!(out.contains("c1\\x9b31m\\x7f"), "{out}");
    assert!(rows.iter().any(|r| r.split("  ").any(|cell| cell.trim() == "\"\"")), "empty id shows as \"\": {out}");
}

#[test]
fn columns_line_up_by_display_width_and_long_ids_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ids.pcap", &hostile_ids_capture());
    let out = text(&analyze(&[path.to_str().unwrap()], &[]));
    let rows = table(&out);
    // Every row's START cell begins in the header's START column, whatever the id's width.
    let column = |line: &str, needle: &str| width(&line[..line.find(needle).unwrap()]);
    let start = column(rows[0], "START");
    for row in &rows[1..] {
        assert_eq!(column(row, "12:2"), start, "misaligned row:\n{out}");
    }
    let widest_id = mqtt_keepalive::sink::report::text::MAX_CLIENT_ID_WIDTH;
    assert_eq!(start, width("ID  10.0.0.1:40000  ") + widest_id + 2, "the id column is cut to {widest_id}:\n{out}");
    let cut = rows.iter().find(|r| r.contains("传感器")).unwrap();
    assert!(cut.contains('…') && !cut.contains(LONG_CJK), "the long id is cut: {cut}");
    assert!(out.contains("plain-🌡"), "{out}");
    // JSON keeps every id whole.
    let json = analyze(&["-f", "json", path.to_str().unwrap()], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let ids: Vec<&str> = doc["sessions"].as_array().unwrap().iter().map(|s| s["client_id"].as_str().unwrap()).collect();
    for id in IDS {
        assert!(ids.contains(&id), "{id:?} not whole in JSON: {ids:?}");
    }
}

#[test]
fn times_will_column_and_legend() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ids.pcap", &hostile_ids_capture());
    let out = text(&analyze(&[path.to_str().unwrap()], &[]));
    assert!(out.lines().next().unwrap().contains("from 2026-11-26 12:21:57.000 UTC"), "{out}");
    let rows = table(&out);
    assert!(rows[0].contains("START") && rows[0].contains("CLOSED") && rows[0].contains("WILL"), "{out}");
    let first = rows.iter().find(|r| r.contains("pwned")).unwrap();
    assert!(first.contains("12:21:57.000"), "start time: {first}");
    assert!(first.contains("12:21:59.000"), "close time: {first}");
    let will = |r: &str| r.split_whitespace().filter(|c| *c == "yes").count();
    assert_eq!(will(first), 1, "the first client has a Will: {first}");
    assert!(rows[1..].iter().filter(|r| !r.contains("pwned")).all(|r| will(r) == 0), "{out}");
    for key in ["4/5", "~5?", "60->10", "early"] {
        assert!(out.contains(key), "the legend explains {key}:\n{out}");
    }
    // --local: the zone of TZ (nine hours ahead of UTC here).
    let local = text(&analyze(&["--local", path.to_str().unwrap()], &[("TZ", "UTC-9")]));
    assert!(local.lines().next().unwrap().contains("2026-11-26 21:21:57.000 local time (UTC+09:00)"), "{local}");
    assert!(table(&local).iter().any(|r| r.contains("21:21:59.000")), "{local}");
    // JSON: RFC 3339 beside the Unix seconds.
    let json = analyze(&["-f", "json", path.to_str().unwrap()], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let s = &doc["sessions"][0];
    assert_eq!(s["started_utc"], "2026-11-26T12:21:57.000000Z", "{s}");
    assert_eq!(s["ended_utc"], "2026-11-26T12:21:59.000000Z", "{s}");
    assert_eq!(s["started"].as_f64(), Some(BASE));
}

/// A healthy session on `port`.
fn session_on(cap: &mut Capture, port: u16, client_port: u16, at: f64) {
    session_as(cap, port, client_port, at, "dev");
}

/// A healthy session of client `id` on `port`: three pings answered in 10 ms, then left open.
fn session_as(cap: &mut Capture, port: u16, client_port: u16, at: f64, id: &str) {
    let mut c = Conn::new(
        format!("10.0.0.1:{client_port}").parse().unwrap(),
        format!("10.0.0.9:{port}").parse().unwrap(),
        1,
        2,
    );
    c.handshake(cap, t(at));
    c.send(cap, t(at + 0.1), Side::Client, &mqtt::connect(4, 10, id, false, None));
    c.send(cap, t(at + 0.2), Side::Broker, &mqtt::connack(0, None));
    for i in 1..4 {
        c.send(cap, t(at + f64::from(i)), Side::Client, &mqtt::pingreq());
        c.send(cap, t(at + f64::from(i) + 0.01), Side::Broker, &mqtt::pingresp());
    }
}

#[test]
fn a_forgotten_port_is_named_with_the_hint() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Capture::new(Encap::Ethernet);
    session_on(&mut cap, 8884, 40000, 0.0);
    session_on(&mut cap, 8884, 40001, 0.5);
    session_on(&mut cap, 22, 40002, 0.7);
    cap.sort();
    let path = write(dir.path(), "tls-port.pcap", &cap);
    let o = analyze(&[path.to_str().unwrap()], &[]);
    let (out, err) = (text(&o), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(out.starts_with("0 MQTT sessions"), "{out}");
    assert!(
        out.contains("Other ports: 33 TCP segments not on a broker port (--port); busiest: 8884 (22), 22 (11)"),
        "{out}"
    );
    for shown in [&out, &err] {
        assert!(shown.contains("no MQTT session on ports 1883, 8883") && shown.contains("--port 8884"), "{shown}");
    }
    let json = analyze(&["-f", "json", path.to_str().unwrap()], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["capture"]["other_tcp_ports"][0], serde_json::json!({"port": 8884, "segments": 22}));
    // Given the right port, the sessions are there and the hint is gone.
    let o = analyze(&["--port", "8884", path.to_str().unwrap()], &[]);
    assert!(text(&o).starts_with("2 MQTT sessions") && !text(&o).contains("warning"), "{}", text(&o));
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn connections_refused_by_max_flows_are_counted_once_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = Capture::new(Encap::Ethernet);
    for i in 0..5u16 {
        session_on(&mut cap, 1883, 40000 + i, f64::from(i) * 0.01);
    }
    cap.sort();
    let path = write(dir.path(), "full.pcap", &cap);
    let o = analyze(&["--max-flows", "2", path.to_str().unwrap()], &[]);
    let (out, err) = (text(&o), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(out.starts_with("2 MQTT sessions"), "{out}");
    assert!(
        out.contains("Refused: 3 connections (30 segments) not tracked, the table was full (--max-flows)"),
        "{out}"
    );
    for shown in [&out, &err] {
        assert!(shown.contains("warning: 3 connections were not tracked"), "{shown}");
    }
    let json = analyze(&["-f", "json", "--max-flows", "2", path.to_str().unwrap()], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["tcp"]["connections_rejected"], 3);
}

/// Sessions of sensor-1 (at 0 s), sensor-2 (10 s), pump\x1b (20 s) and gate (30 s).
fn fleet(dir: &Path) -> PathBuf {
    let mut cap = Capture::new(Encap::Ethernet);
    for (i, id) in ["sensor-1", "sensor-2", "pump\x1b", "gate"].into_iter().enumerate() {
        session_as(&mut cap, 1883, 40000 + i as u16, 10.0 * i as f64, id);
    }
    cap.sort();
    write(dir, "fleet.pcap", &cap)
}

#[test]
fn client_id_and_time_filters_choose_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let path = fleet(dir.path());
    let file = path.to_str().unwrap();
    let ids = |out: &str| -> Vec<String> {
        table(out)[1..].iter().map(|r| r.split_whitespace().nth(2).unwrap().to_string()).collect()
    };
    let out = text(&analyze(&["--client-id", "sensor-*", file], &[]));
    assert!(out.starts_with("2 MQTT sessions matching --client-id sensor-* in"), "{out}");
    assert_eq!(ids(&out), ["sensor-1", "sensor-2"]);
    assert!(
        out.contains("Summary: 2 sessions") && out.contains("0 of 6 pings unanswered"),
        "the summary is theirs: {out}"
    );
    assert_eq!(ids(&text(&analyze(&["--client-id", "?ump*", file], &[]))), ["pump\\x1b"]);
    // Sessions still going at --since and begun by --until; RFC 3339 or Unix seconds.
    let out = text(&analyze(&["--since", "2026-11-26T12:22:10Z", "--until", &format!("{}", BASE + 25.0), file], &[]));
    assert_eq!(ids(&out), ["sensor-2", "pump\\x1b"], "{out}");
    let json = analyze(&["-f", "json", "--since", "2026-11-26T13:22:25+01:00", file], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let chosen: Vec<&str> =
        doc["sessions"].as_array().unwrap().iter().map(|s| s["client_id"].as_str().unwrap()).collect();
    assert_eq!((chosen, doc["summary"]["sessions"].as_u64()), (vec!["gate"], Some(1)));
    // Every JSON-lines event carries its session's client id; filtered by pattern and time.
    let lines = text(&analyze(&["-f", "jsonl", "--client-id", "gate", file], &[]));
    let events: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 11, "{lines}");
    assert_eq!((events[0]["kind"].as_str(), events[1]["kind"].as_str()), (Some("session_start"), Some("transport")));
    assert!(events[1].as_object().unwrap()["client_id"].is_null(), "null before CONNECT");
    assert!(events[3..].iter().all(|e| e["client_id"] == "gate" && e["session"] == 3), "{lines}");
    // A time that is not one says what is.
    let bad = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .args(["analyze", "--since", "yesterday", file])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("RFC 3339"), "{}", String::from_utf8_lossy(&bad.stderr));
}

#[test]
fn session_prints_its_full_timeline_with_pings() {
    let dir = tempfile::tempdir().unwrap();
    let path = fleet(dir.path());
    let out = text(&analyze(&["--session", "2", path.to_str().unwrap()], &[]));
    assert!(out.starts_with("Session 2: client 10.0.0.1:40002, broker 10.0.0.9:1883; times UTC"), "{out}");
    let kinds: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("TIME"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    let pings = ["pingreq", "pingresp"].repeat(3);
    let want: Vec<&str> =
        ["session_start", "transport", "connect", "connack"].into_iter().chain(pings).chain(["session_end"]).collect();
    assert_eq!(kinds, want, "{out}");
    assert!(out.contains("2026-11-26 12:22:18.000  1.000       pingreq"), "{out}");
    let rtt: f64 = out.split("round trip ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!((rtt - 10.0).abs() < 0.01, "the round trip, from the event stream: {out}");
    assert!(out.contains("client id pump\\x1b,") && !out.contains('\x1b'), "escaped: {out}");
    assert!(out.contains("1 MQTT session matching --session 2 in"), "then its row: {out}");
    let missing = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .args(["analyze", "--session", "9", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no session 9 in the capture"));
}
