//! MQTT over TLS and WebSocket on real captures (`fixtures/tls/`: mosquitto over TLS 1.2 and
//! 1.3 with the clients' key logs; `fixtures/ws/`: aedes over ws:// and wss://): transport
//! detection, decryption with `--tls-keylog`, the same verdicts as over plain TCP, what is
//! knowable without keys, and tshark's reading of the same captures.

mod common;

use mqtt_keepalive::app::{self, AnalyzeOptions};
use mqtt_keepalive::flow::PortSet;
use mqtt_keepalive::layer::LayerConfig;
use mqtt_keepalive::layer::tls::KeyLog;
use mqtt_keepalive::tracker::TrackerConfig;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(dir).join(name)
}

/// The JSON sessions of one capture analysed on `ports`, with the key log beside it if `keys`.
fn sessions(dir: &str, name: &str, ports: &[u16], keys: bool) -> Vec<Value> {
    let path = fixture(dir, &format!("{name}.pcap"));
    let keylog = keys.then(|| Arc::new(KeyLog::open(&fixture(dir, &format!("{name}.keys"))).unwrap()));
    let tracker = TrackerConfig { layers: LayerConfig { keylog }, ..TrackerConfig::default() };
    // Parking changes nothing (checked by the common helper) but TLS and WebSocket sessions are
    // never parked: run the library directly.
    let opts = AnalyzeOptions {
        files: vec![path],
        tracker: TrackerConfig { ports: PortSet::new(ports), ..tracker },
        ports: ports.to_vec(),
        progress: false,
    };
    let report = app::analyze(opts, &mut []).unwrap();
    let v = serde_json::to_value(&report).unwrap();
    let s = v["sessions"].as_array().unwrap().clone();
    assert_eq!(s.len(), 1, "{name}: one session");
    s
}

fn verdict(s: &Value) -> (Value, Value, Value, Value, Value) {
    (
        s["expired"].clone(),
        s["close"]["by"].clone(),
        s["enforcement"]["verdict"].clone(),
        s["effective_keepalive_s"].clone(),
        s["will"].clone(),
    )
}

#[test]
fn tls_with_keys_gives_the_verdicts_of_plain_tcp() {
    // The seed experiment over TLS 1.3 and 1.2 and over plain TCP: expired, closed by the
    // broker late (mosquitto's close over TLS starts with its close_notify), Will expected.
    let (plain, _) = common::analyze_fixture("classic-keepalive5-silent.pcap");
    let plain = serde_json::to_value(&plain.sessions[0]).unwrap();
    assert_eq!(plain["close"]["kind"], "fin");
    for name in ["tls13-keepalive5-silent", "tls12-keepalive5-silent"] {
        let s = &sessions("tls", name, &[8883], true)[0];
        assert_eq!(verdict(s), verdict(&plain), "{name}");
        assert_eq!(
            (s["transport"].as_str(), s["close"]["kind"].as_str()),
            (Some("tls"), Some("close_notify")),
            "{name}"
        );
        assert_eq!(s["tls"]["decrypted"], true, "{name}");
        assert!(s["client_id"].as_str().unwrap().ends_with("silent-5"), "{name}");
        let lag = s["enforcement"]["lag_s"].as_f64().unwrap();
        assert!((1.5..3.0).contains(&lag), "{name}: mosquitto closes about 2 s late: {lag}");
        assert_eq!(s["tls"]["version"], if name.starts_with("tls13") { "1.3" } else { "1.2" });
    }
    // MQTT 5 Server Keep Alive inside TLS: 60 declared, 10 in force, closed on time.
    let s = &sessions("tls", "tls13-mqtt5-server-keepalive", &[8883], true)[0];
    assert_eq!(
        (s["protocol"].as_str(), s["keepalive_s"].as_u64(), s["effective_keepalive_s"].as_u64()),
        (Some("5.0"), Some(60), Some(10))
    );
    assert_eq!((s["expired"].as_bool(), s["enforcement"]["verdict"].as_str()), (Some(true), Some("on_time")));
    // Healthy pings with each AEAD suite, then DISCONNECT.
    for name in ["tls13-healthy-pings", "tls12-aes256-healthy-pings", "tls12-chacha-healthy-pings"] {
        let s = &sessions("tls", name, &[8883], true)[0];
        assert_eq!(
            (s["pingreq"].as_u64(), s["pingresp"].as_u64(), s["pings_unanswered"].as_u64()),
            (Some(3), Some(3), Some(0)),
            "{name}"
        );
        assert_eq!((s["expired"].as_bool(), s["close"]["kind"].as_str()), (Some(false), Some("disconnect")), "{name}");
        assert!(s["ping_rtt_ms"]["max"].as_f64().unwrap() < 10.0, "{name}: round trips on loopback");
    }
    // A killed client: its FIN comes first (mosquitto's fatal decode_error alert after it).
    let s = &sessions("tls", "tls13-client-killed", &[8883], true)[0];
    assert_eq!(
        (s["close"]["kind"].as_str(), s["close"]["by"].as_str(), s["will"].as_bool()),
        (Some("fin"), Some("client"), Some(true))
    );
    let alerts: Vec<&Value> = s["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "tls_alert").collect();
    assert!(alerts.iter().any(|a| a["alert"] == "decode_error" && a["side"] == "broker"), "{alerts:?}");
}

#[test]
fn tls_without_keys_is_still_a_session_with_what_is_knowable() {
    let s = &sessions("tls", "tls13-healthy-pings", &[8883], false)[0];
    assert_eq!(s["transport"], "tls");
    assert_eq!(
        (s["tls"]["decrypted"].as_bool(), s["tls"]["encrypted_reason"].as_str()),
        (Some(false), Some("no_key_log"))
    );
    assert_eq!((s["tls"]["sni"].as_str(), s["tls"]["alpn"][0].as_str()), (Some("localhost"), Some("mqtt")));
    assert_eq!(s["tls"]["suite"], "TLS_CHACHA20_POLY1305_SHA256");
    assert_eq!(s["client_id"], Value::Null, "the CONNECT is encrypted");
    // Pings inferred from 2-byte records (the three pings, and the DISCONNECT and close_notify,
    // which are that size too); the keepalive inferred from their cadence; no expiry verdict.
    assert!(s["pingreq"].as_u64().unwrap() >= 3 && s["pingresp"].as_u64().unwrap() >= 3, "{s}");
    assert_eq!(s["inferred_keepalive_s"], 2);
    assert_eq!((s["expired"].as_bool(), s["enforcement"].is_null()), (Some(false), true));
    // The silent client: its CONNECT record is its last activity; the broker's FIN closes.
    let s = &sessions("tls", "tls13-keepalive5-silent", &[8883], false)[0];
    assert_eq!(
        (s["close"]["kind"].as_str(), s["close"]["by"].as_str(), s["pingreq"].as_u64()),
        (Some("fin"), Some("broker"), Some(0))
    );
    assert!(s["max_silence_s"].as_f64().unwrap() > 9.0);
}

#[test]
fn websocket_sessions_over_ws_and_wss() {
    let s = &sessions("ws", "ws-keepalive5-silent", &[8080], false)[0];
    assert_eq!(s["transport"], "websocket");
    assert_eq!(
        (s["websocket"]["path"].as_str(), s["websocket"]["protocol"].as_str(), s["websocket"]["status"].as_u64()),
        (Some("/mqtt"), Some("mqtt"), Some(101))
    );
    // aedes closes a silent WebSocket client with a bare FIN at 1.5 x keepalive.
    assert_eq!(
        (s["expired"].as_bool(), s["close"]["kind"].as_str(), s["close"]["by"].as_str()),
        (Some(true), Some("fin"), Some("broker"))
    );
    assert_eq!(s["enforcement"]["verdict"], "on_time");
    // A close frame before the TCP close is a close of its own kind, with its status code.
    let s = &sessions("ws", "ws-close-frame", &[8080], false)[0];
    assert_eq!(
        (s["close"]["kind"].as_str(), s["close"]["by"].as_str(), s["close"]["reason_code"].as_u64()),
        (Some("ws_close"), Some("client"), Some(1000))
    );
    // A WebSocket ping and its pong are reported, from their sides.
    let s = &sessions("ws", "ws-ping", &[8080], false)[0];
    let control: Vec<(String, String)> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "ws_control")
        .map(|e| (e["side"].as_str().unwrap().into(), e["frame"].as_str().unwrap().into()))
        .collect();
    assert_eq!(control, [("client".into(), "ping".into()), ("broker".into(), "pong".into())]);
    // wss: WebSocket inside TLS, decrypted with the broker's key log.
    for name in ["wss-keepalive5-silent", "wss-healthy-pings", "wss12-close-frame"] {
        let s = &sessions("ws", name, &[8443], true)[0];
        assert_eq!(
            (s["transport"].as_str(), s["tls"]["decrypted"].as_bool()),
            (Some("websocket+tls"), Some(true)),
            "{name}"
        );
        assert_eq!(s["websocket"]["path"], "/mqtt", "{name}");
    }
    let s = &sessions("ws", "wss-keepalive5-silent", &[8443], true)[0];
    assert_eq!((s["expired"].as_bool(), s["enforcement"]["verdict"].as_str()), (Some(true), Some("on_time")));
}

/// tshark, given the same key logs, sees the same client ids, keepalives and ping counts.
#[test]
#[ignore = "needs tshark"]
fn tls_sessions_agree_with_tshark() {
    for entry in std::fs::read_dir(fixture("tls", "")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "pcap") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let keys = fixture("tls", &format!("{name}.keys"));
        let out = std::process::Command::new("tshark")
            .arg("-r")
            .arg(&path)
            .args(["-o", &format!("tls.keylog_file:{}", keys.display())])
            .args([
                "-Y",
                "mqtt",
                "-T",
                "fields",
                "-E",
                "occurrence=a",
                "-e",
                "mqtt.msgtype",
                "-e",
                "mqtt.clientid",
                "-e",
                "mqtt.kalive",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let (mut pingreq, mut pingresp, mut client_id, mut keepalive) = (0, 0, None, None);
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            for t in f[0].split(',') {
                match t {
                    "12" => pingreq += 1,
                    "13" => pingresp += 1,
                    _ => {}
                }
            }
            if f[0].split(',').any(|t| t == "1") {
                client_id = f.get(1).map(|s| s.to_string());
                keepalive = f.get(2).and_then(|s| s.parse::<u64>().ok());
            }
        }
        let s = &sessions("tls", &name, &[8883], true)[0];
        assert_eq!(s["client_id"].as_str(), client_id.as_deref(), "{name}");
        assert_eq!(s["keepalive_s"].as_u64(), keepalive, "{name}");
        assert_eq!((s["pingreq"].as_u64(), s["pingresp"].as_u64()), (Some(pingreq), Some(pingresp)), "{name}");
    }
}

/// A capture that starts after the TLS handshake: the records still say TLS, the handshake was
/// not seen, and the session is one joined mid-stream.
#[test]
fn tls_joined_mid_stream_is_recognised_by_its_records() {
    use mqtt_keepalive::capture::{OfflineReader, PacketSource};
    let mut reader = OfflineReader::open(&fixture("tls", "tls13-healthy-pings.pcap")).unwrap();
    let mut frames = Vec::new();
    while let Some(p) = reader.next_packet().unwrap() {
        frames.push((p.ts, p.link, p.data.to_vec()));
    }
    let link = frames[0].1;
    let mut bytes = Vec::new();
    mqtt_keepalive::synth::write_pcap_header(&mut bytes, link, 65535);
    // The handshake and CONNECT/CONNACK are in the first 12 frames; keep the rest.
    for (ts, _, data) in &frames[12..] {
        mqtt_keepalive::synth::write_pcap_record(&mut bytes, *ts, data, 65535);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tls")).unwrap();
    std::fs::write(dir.path().join("tls").join("cut.pcap"), &bytes).unwrap();
    let opts = AnalyzeOptions {
        files: vec![dir.path().join("tls").join("cut.pcap")],
        tracker: TrackerConfig { ports: PortSet::new(&[8883]), ..TrackerConfig::default() },
        ports: vec![8883],
        progress: false,
    };
    let report = serde_json::to_value(app::analyze(opts, &mut []).unwrap()).unwrap();
    let s = &report["sessions"][0];
    assert_eq!((s["transport"].as_str(), s["mid_stream"].as_bool()), (Some("tls"), Some(true)), "{s}");
    // Without the handshake the suite is unknown: no record size says "ping", but every client
    // record is still activity (a ping every 2 s: the longest silence is about 2 s).
    assert_eq!(s["tls"]["encrypted_reason"], "handshake_not_seen");
    let silence = s["max_silence_s"].as_f64().unwrap();
    assert!(silence < 2.5, "{silence}");
}

fn analyze_cli(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("analyze")
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn the_table_names_transports_when_they_differ_and_no_secret_is_ever_printed() {
    let keys = "fixtures/tls/tls13-healthy-pings.keys";
    let files = ["fixtures/ws/ws-ping.pcap", "fixtures/tls/tls13-healthy-pings.pcap"];
    let text = analyze_cli(&["-p", "8080", "-p", "8883", "--tls-keylog", keys, files[0], files[1]]);
    let header = text.lines().find(|l| l.starts_with("ID  CLIENT")).unwrap();
    assert!(header.starts_with("ID  CLIENT           TRANSPORT  CLIENT ID"), "{text}");
    assert!(text.contains("  websocket  ws-pinger-frames") && text.contains("  tls        tls-pinger"), "{text}");
    // One transport: no column. Without keys: pings marked as inferred.
    let plain = analyze_cli(&["fixtures/classic-keepalive5-silent.pcap"]);
    assert!(!plain.contains("TRANSPORT"), "{plain}");
    let no_keys = analyze_cli(&["fixtures/tls/tls13-healthy-pings.pcap"]);
    assert!(no_keys.contains(" ~4/5 "), "{no_keys}");
    // The key log's secrets appear in no output.
    let secrets: Vec<String> = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(keys))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_lowercase))
        .filter(|s| s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert!(secrets.len() >= 4, "the key log has secrets");
    for format in ["text", "json", "jsonl", "html"] {
        let out = analyze_cli(&["-f", format, "--tls-keylog", keys, files[1]]).to_lowercase();
        assert!(out.contains("tls-pinger"), "{format}: decrypted");
        for secret in &secrets {
            assert!(!out.contains(secret.as_str()) && !out.contains(&secret[..16]), "{format} shows key material");
        }
    }
}
