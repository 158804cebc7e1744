//! The binary as users run it: formats, standard input, exit codes, closed pipes, secrets.

mod common;

use common::fixture;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

#[test]
fn text_report_of_the_classic_experiment() {
    let o = run(&["analyze", fixture("classic-keepalive5-silent.pcap").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("silent-5"), "{text}");
    assert!(text.contains("fin by broker"), "{text}");
    assert!(text.contains("late (+2.0 s)"), "{text}");
    assert!(text.contains("1 expired"), "{text}");
}

#[test]
fn text_table_lists_the_most_severe_sessions_first_up_to_top() {
    let path = fixture("many-sessions.pcap");
    let all = stdout(&run(&["analyze", "--top", "0", path.to_str().unwrap()]));
    let top5 = stdout(&run(&["analyze", "--top", "5", path.to_str().unwrap()]));
    let rows = |t: &str| -> Vec<String> {
        let cells = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" "); // widths follow the rows
        t.lines()
            .skip_while(|l| !l.starts_with("ID  CLIENT"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(cells)
            .collect()
    };
    assert_eq!(rows(&all).len(), 30, "{all}");
    assert_eq!(rows(&top5), rows(&all)[..5], "the same head of the table");
    assert!(top5.starts_with("30 MQTT sessions in"), "{top5}");
    assert!(top5.lines().next().unwrap().contains("the 5 most severe listed"), "{top5}");
    assert!(!all.lines().next().unwrap().contains("most severe listed"), "{all}");
    let summary = |t: &str| t.lines().find(|l| l.starts_with("Summary:")).map(String::from);
    assert_eq!(summary(&top5), summary(&all), "the summary counts every session");
}

#[test]
fn json_document_is_versioned_and_complete() {
    let o = run(&["analyze", "--format", "json", fixture("many-sessions.pcap").to_str().unwrap()]);
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["format"], "mqtt-keepalive/analyze");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 30);
    let s = &doc["sessions"][0];
    for key in [
        "client",
        "broker",
        "client_id",
        "protocol",
        "keepalive_s",
        "effective_keepalive_s",
        "will",
        "started",
        "ended",
        "pingreq",
        "pingresp",
        "ping_rtt_ms",
        "max_silence_s",
        "expired",
        "close",
        "enforcement",
        "events",
    ] {
        assert!(s.get(key).is_some(), "session field {key} missing");
    }
    for key in ["packets", "bytes", "truncated_packets"] {
        assert!(doc["capture"].get(key).is_some(), "capture field {key} missing");
    }
    for key in ["gaps", "non_mqtt_flows", "malformed"] {
        assert!(doc["tcp"].get(key).is_some(), "tcp field {key} missing");
    }
    assert_eq!(doc["mqtt_packets"]["connect"], 30);
    assert_eq!(doc["summary"]["expired"], 8);
}

#[test]
fn json_is_streamed_one_session_per_line_and_equals_the_library_report() {
    let path = fixture("many-sessions.pcap");
    let o = run(&["analyze", "--format", "json", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (report, _) = common::analyze_fixture("many-sessions.pcap");
    let mut bytes = Vec::new();
    report.write_json(&mut bytes).unwrap();
    assert_eq!(stdout(&o), String::from_utf8(bytes).unwrap(), "the CLI streams what the library holds");
    let text = stdout(&o);
    let session_lines: Vec<&str> = text.lines().filter(|l| l.starts_with(r#"{"id":"#)).collect();
    assert_eq!(session_lines.len(), 30);
    for line in session_lines {
        let one: serde_json::Value = serde_json::from_str(line.trim_end_matches(',')).unwrap();
        assert!(one["close"]["kind"].is_string(), "{line}");
    }
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["sessions"].as_array().unwrap().len(), report.sessions.len());
}

#[test]
fn jsonl_is_one_event_per_line_in_time_order() {
    let o = run(&["analyze", "-f", "jsonl", fixture("many-sessions.pcap").to_str().unwrap()]);
    assert!(o.status.success());
    let events: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(events.len() > 100);
    let ts: Vec<f64> = events.iter().map(|e| e["ts"].as_f64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(events.iter().filter(|e| e["kind"] == "keepalive_expired").count(), 8);
    assert!(events.iter().all(|e| e["client"].is_string() && e["broker"].is_string()));
}

#[test]
fn standard_input_is_read_with_a_dash() {
    let capture = std::fs::read(fixture("healthy-pings.pcap")).unwrap();
    let mut child =
        bin().args(["analyze", "-f", "json", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&capture).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["sessions"][0]["client_id"], "pinger");
    assert_eq!(doc["capture"]["files"][0], "-");
}

#[test]
fn a_closed_output_pipe_is_not_an_error() {
    let mut child = bin()
        .args(["analyze", "-f", "jsonl", fixture("many-sessions.pcap").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take()); // like `| head -c 10`
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "exit {status:?}, stderr {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unusable_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"this is not a capture file at all, just some words\n").unwrap();
    let short = dir.path().join("short.pcap");
    std::fs::write(&short, &std::fs::read(fixture("healthy-pings.pcap")).unwrap()[..10]).unwrap();
    let usb = dir.path().join("usb.pcap");
    let mut bytes = Vec::new();
    mqtt_keepalive::synth::write_pcap_header(&mut bytes, mqtt_keepalive::capture::LinkType(189), 65535);
    std::fs::write(&usb, &bytes).unwrap();
    let missing = dir.path().join("missing.pcap");
    for (path, what) in [
        (&empty, "empty file"),
        (&text, "not a pcap or pcapng capture"),
        (&short, "ends inside its capture header"),
        (&usb, "link type USB_LINUX is not supported"),
        (&missing, "cannot open"),
    ] {
        let o = run(&["analyze", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{what}");
        let err = stderr(&o);
        assert!(err.contains(path.to_str().unwrap()) && err.contains(what), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(o.stdout.is_empty());
    }
    // A good file first does not hide a bad one later: nothing is analysed until all open.
    let o = run(&["analyze", fixture("healthy-pings.pcap").to_str().unwrap(), text.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_file_cut_mid_record_is_analysed_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pcap");
    let bytes = std::fs::read(fixture("classic-keepalive5-silent.pcap")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let o = run(&["analyze", "-f", "json", cut.to_str().unwrap()]);
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["capture"]["truncated_files"], 1);
    assert_eq!(doc["capture"]["packets"], 9);
    assert_eq!(doc["sessions"][0]["expired"], true);
    assert!(stderr(&o).contains("ends inside a packet record"));
}

#[test]
fn passwords_never_appear_in_any_output() {
    let path = fixture("any-sll2.pcapng");
    // The fixture really carries the password on the wire.
    let raw = std::fs::read(&path).unwrap();
    let password = b"S3cr3t-Passw0rd";
    assert!(raw.windows(password.len()).any(|w| w == password));
    for format in ["text", "json", "jsonl"] {
        let o =
            bin().args(["analyze", "-f", format, path.to_str().unwrap()]).env("RUST_LOG", "trace").output().unwrap();
        assert!(o.status.success());
        for stream in [&o.stdout, &o.stderr] {
            let s = String::from_utf8_lossy(stream);
            assert!(!s.contains("S3cr3t"), "{format}: {s}");
        }
        assert!(String::from_utf8_lossy(&o.stdout).contains("with-credentials"), "{format}");
    }
}

#[test]
fn port_option_selects_the_broker_ports() {
    let path = fixture("healthy-pings.pcap");
    let o = run(&["analyze", "-f", "json", "--port", "8883", path.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 0);
    assert!(doc["capture"]["other_tcp_segments"].as_u64().unwrap() > 0);
    let o = run(&["analyze", "-f", "json", "-p", "8883", "-p", "1883", path.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(doc["settings"]["ports"], serde_json::json!([8883, 1883]));
}

#[test]
#[ignore = "needs script(1) from util-linux for a pseudo-terminal"]
fn a_progress_bar_shows_on_a_terminal_for_large_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.pcap");
    let w = mqtt_keepalive::synth::workload::Workload { sessions: 200, ..Default::default() };
    mqtt_keepalive::synth::workload::write(&w, std::fs::File::create(&big).unwrap()).unwrap();
    assert!(std::fs::metadata(&big).unwrap().len() > 16 << 20);
    let on_terminal = |file: &std::path::Path, extra: &str| {
        // script(1) gives the command a terminal; its stdout goes to /dev/null inside.
        let cmd = format!("{} analyze {extra} {} > /dev/null", env!("CARGO_BIN_EXE_mqtt-keepalive"), file.display());
        let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(on_terminal(&big, "").contains("big.pcap ["), "a bar naming the file");
    assert!(!on_terminal(&big, "--no-progress").contains('['));
    assert!(!on_terminal(&fixture("healthy-pings.pcap"), "").contains('['), "small files get no bar");
    // Not a terminal: no bar even for a large file.
    let o = run(&["analyze", big.to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains('['));
}

/// A silent client (keepalive 2) across two captures split at `split` s, as a rotating tcpdump
/// writes them: (the whole capture, the first part, the second part).
fn rotated_capture(split: f64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use mqtt_keepalive::flow::Side;
    use mqtt_keepalive::synth::{Capture, Conn, Encap, mqtt};
    let t = mqtt_keepalive::time::Timestamp::from_secs_f64;
    let mut cap = Capture::new(Encap::Ethernet);
    let mut c = Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 1, 2);
    c.handshake(&mut cap, t(0.0));
    c.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 2, "rotated", true, None));
    c.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(0, None));
    c.send(&mut cap, t(2.0), Side::Client, &mqtt::pingreq());
    c.send(&mut cap, t(2.01), Side::Broker, &mqtt::pingresp());
    c.fin(&mut cap, t(6.0), Side::Broker);
    let part = |keep: &dyn Fn(f64) -> bool| {
        let mut p = cap.clone();
        p.frames.retain(|(ts, _)| keep(ts.as_secs_f64()));
        p.to_pcap()
    };
    (cap.to_pcap(), part(&|ts| ts < split), part(&|ts| ts >= split))
}

fn sessions(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    doc["sessions"].clone()
}

#[test]
fn rotated_files_given_out_of_order_are_read_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, first, second) = rotated_capture(1.0);
    let [w, a, b] = ["whole.pcap", "cap-1.pcap", "cap-0.pcap"].map(|n| dir.path().join(n));
    std::fs::write(&w, whole).unwrap();
    std::fs::write(&a, second).unwrap(); // the later part has the earlier name
    std::fs::write(&b, first).unwrap();
    let expected = sessions(&run(&["analyze", "-f", "json", w.to_str().unwrap()]));
    assert_eq!(expected[0]["expired"], true, "{expected}");
    let o = run(&["analyze", "-f", "json", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(sessions(&o), expected, "the same verdicts as the whole capture");
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["capture"]["files"], serde_json::json!([b.to_str().unwrap(), a.to_str().unwrap()]));
    assert!(doc["capture"]["warnings"].to_string().contains("in the order of their first packets"), "{doc}");
    assert!(stderr(&o).contains("in the order of their first packets"), "{}", stderr(&o));
}

#[test]
fn the_same_file_twice_is_read_once() {
    let path = fixture("many-sessions.pcap");
    let p = path.to_str().unwrap();
    let once = run(&["analyze", "-f", "json", p]);
    let twice = run(&["analyze", "-f", "json", p, p]);
    assert_eq!(sessions(&twice), sessions(&once));
    assert!(stderr(&twice).contains("given twice: read once"), "{}", stderr(&twice));
    let doc: serde_json::Value = serde_json::from_slice(&twice.stdout).unwrap();
    assert_eq!(
        doc["capture"]["packets"],
        serde_json::from_slice::<serde_json::Value>(&once.stdout).unwrap()["capture"]["packets"]
    );
}

#[test]
fn overlapping_captures_are_warned_about_in_text_too() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, first, _) = rotated_capture(1.0);
    let [a, b] = ["a.pcap", "b.pcap"].map(|n| dir.path().join(n));
    std::fs::write(&a, whole).unwrap(); // 0 .. 6 s
    std::fs::write(&b, first).unwrap(); // 0 .. 0.2 s: starts together, read after a
    let o = run(&["analyze", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("overlaps the capture before it"), "{}", stderr(&o));
    assert!(stdout(&o).contains("overlaps the capture before it"), "{}", stdout(&o));
}

#[test]
fn timestamps_going_backwards_in_one_file_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let mut cap = mqtt_keepalive::synth::Capture::new(mqtt_keepalive::synth::Encap::Ethernet);
    let t = mqtt_keepalive::time::Timestamp::from_secs_f64;
    let mut c = mqtt_keepalive::synth::Conn::new("10.0.0.1:1".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 1, 2);
    c.handshake(&mut cap, t(5.0));
    c.send(&mut cap, t(4.0), mqtt_keepalive::flow::Side::Client, &mqtt_keepalive::synth::mqtt::pingreq());
    let path = dir.path().join("back.pcap");
    std::fs::write(&path, cap.to_pcap()).unwrap();
    let o = run(&["analyze", "-f", "json", path.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["capture"]["warnings"].to_string().contains("timestamps go backwards: 1 packets"), "{doc}");
}

#[test]
fn gzipped_captures_are_read_directly_whatever_their_name() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let plain_path = fixture("any-sll2.pcapng");
    let plain = run(&["analyze", "-f", "json", plain_path.to_str().unwrap()]);
    for name in ["capture.pcapng.gz", "misnamed.pcapng"] {
        let path = dir.path().join(name);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&std::fs::read(&plain_path).unwrap()).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let o = run(&["analyze", "-f", "json", path.to_str().unwrap()]);
        assert_eq!(sessions(&o), sessions(&plain), "{name}");
    }
    let gz_pcap = dir.path().join("classic.pcap.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(fixture("classic-keepalive5-silent.pcap")).unwrap()).unwrap();
    std::fs::write(&gz_pcap, gz.finish().unwrap()).unwrap();
    let o = run(&["analyze", gz_pcap.to_str().unwrap()]);
    assert!(stdout(&o).contains("late (+2.0 s)"), "{}", stdout(&o));
    // From standard input too.
    let mut child =
        bin().args(["analyze", "-f", "json", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&std::fs::read(&gz_pcap).unwrap()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(sessions(&o)[0]["client_id"], "silent-5");
}

#[test]
fn a_directory_is_refused_as_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["analyze", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is a directory"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn arguments_that_make_no_sense_exit_2_saying_what_is_accepted() {
    let capture = fixture("healthy-pings.pcap");
    for (option, value, says) in [
        ("--ping-timeout", "0", "must be longer than 0"),
        ("--flow-timeout", "0s", "must be longer than 0"),
        ("--port", "0", "0 is not in 1..=65535"),
        ("--ping-timeout", "soon", "500ms, 10s, 2m"),
    ] {
        let o = run(&["analyze", option, value, capture.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{option} {value}");
        assert!(stderr(&o).contains(says) && stderr(&o).contains(option), "{option} {value}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn standard_input_from_a_file_beside_other_files_is_read_whole_in_the_order_given() {
    let classic = std::fs::File::open(fixture("classic-keepalive5-silent.pcap")).unwrap();
    let o = bin()
        .args(["analyze", "-f", "json", "-", fixture("healthy-pings.pcap").to_str().unwrap()])
        .stdin(Stdio::from(classic))
        .output()
        .unwrap();
    let ids: Vec<serde_json::Value> = sessions(&o).as_array().unwrap().iter().map(|s| s["client_id"].clone()).collect();
    assert!(ids.contains(&"silent-5".into()) && ids.contains(&"pinger".into()), "{ids:?} {}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["capture"]["files"][0], "-");
    assert_eq!(doc["capture"]["packets"], 10 + 24, "every packet of both: {}", doc["capture"]);
}
