//! The live agent on MQTT over TLS, end to end: a real mosquitto with a TLS listener (a CA and a
//! server certificate made here with openssl), the agent capturing `lo` with `--tls-keylog` on a
//! key log file that does not exist yet, and real TLS 1.3 and 1.2 clients appending their secrets
//! to it as they connect. The sessions must be decrypted (client ids and keepalives from the
//! CONNECT inside TLS), the silent clients expire on the clock and are closed by mosquitto's
//! close_notify, the healthy ones' pings and round trips are counted, a client whose secrets went
//! to another file stays encrypted with its reason, and no secret appears in any output.
//! Needs root (packet capture), mosquitto, openssl and python3; CI installs them.
#![allow(clippy::disallowed_methods)] // waits on real processes and compares with the real-time clock

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The agent on `lo` following `keylog`, its stderr (at trace level) kept in `stderr`.
struct TlsAgent {
    child: Reaped,
    listen: std::net::SocketAddr,
}

impl TlsAgent {
    fn start(port: u16, keylog: &Path, events: &Path, stderr: &Path) -> TlsAgent {
        let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
            .args(["live", "-i", "lo", "--port", &port.to_string(), "--listen", &listen.to_string()])
            .arg("--tls-keylog")
            .arg(keylog)
            .arg("--events")
            .arg(events)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        let agent = TlsAgent { child: Reaped(child), listen };
        wait_for("the agent's /healthz", Duration::from_secs(10), || {
            matches!(http_get(listen, "/healthz", None), Ok((200, _, _)))
        });
        agent
    }

    fn get(&self, path: &str) -> String {
        let (status, _, body) = http_get(self.listen, path, None).unwrap();
        assert_eq!(status, 200, "{path}");
        body
    }

    /// The sessions with `broker` in `/sessions`, open and recently closed (`lo` is shared:
    /// other traffic may be captured too).
    fn sessions(&self, broker: u16) -> Vec<Value> {
        let doc: Value = serde_json::from_str(&self.get("/sessions")).unwrap();
        let broker = format!("127.0.0.1:{broker}");
        doc["sessions"].as_array().unwrap().iter().filter(|s| s["broker"] == broker.as_str()).cloned().collect()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: signalling our own child process (still running: it is reaped only on drop).
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGTERM) };
        self.child.0.wait().unwrap()
    }
}

fn by_id<'a>(sessions: &'a [Value], id: &str) -> &'a Value {
    sessions.iter().find(|s| s["client_id"] == id).unwrap_or_else(|| panic!("{id} in /sessions: {sessions:?}"))
}

/// The secrets (third field) of every line of a key log but comments, in lower-case hex.
fn secrets(keylog: &Path) -> Vec<String> {
    std::fs::read_to_string(keylog)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|s| s.to_ascii_lowercase())
        .collect()
}

const TLS12: [&str; 4] = ["--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"];

#[test]
#[ignore = "needs root, mosquitto, openssl"]
fn live_agent_decrypts_tls_with_a_key_log_written_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let broker = TlsBroker::start(dir.path());
    let keylog = dir.path().join("keys.log");
    let elsewhere = dir.path().join("elsewhere.log");
    let events_path = dir.path().join("events.jsonl");
    let stderr_path = dir.path().join("agent.stderr");
    let agent = TlsAgent::start(broker.port, &keylog, &events_path, &stderr_path);
    assert!(!keylog.exists(), "the key log does not exist when the agent starts");

    // Healthy clients, TLS 1.3 and 1.2: pings every second, then DISCONNECT and close_notify.
    let mut healthy = [
        tls_client(
            broker.port,
            &ca,
            &keylog,
            &["--keepalive", "2", "--client-id", "tls13-healthy", "pings:3:1", "sleep:0.5", "disconnect"],
        ),
        tls_client(
            broker.port,
            &ca,
            &keylog,
            &[
                &TLS12[..],
                &["--keepalive", "2", "--client-id", "tls12-healthy", "pings:2:1", "sleep:0.5", "disconnect"],
            ]
            .concat(),
        ),
    ];
    for c in &mut healthy {
        assert!(c.wait().unwrap().success());
    }

    // The seed experiment, TLS 1.3 and 1.2: keepalive 2, never a ping; mosquitto closes them.
    // mosquitto is stopped (SIGSTOP) once both CONNECTs are read, so that no packet at all flows
    // when the deadlines pass: the expiries must come from the agent's clock.
    let mut silent = [
        tls_client(
            broker.port,
            &ca,
            &keylog,
            &["--keepalive", "2", "--client-id", "tls13-silent", "--will", "wait-close:30"],
        ),
        tls_client(
            broker.port,
            &ca,
            &keylog,
            &[&TLS12[..], &["--keepalive", "2", "--client-id", "tls12-silent", "wait-close:30"]].concat(),
        ),
    ];
    let open_silent = |agent: &TlsAgent| {
        let s = agent.sessions(broker.port);
        let connected =
            |id| s.iter().any(|x| x["client_id"] == id && x["close"]["kind"] == "open" && x["protocol"] == "3.1.1");
        connected("tls13-silent") && connected("tls12-silent")
    };
    wait_for("both silent clients' CONNECTs, decrypted", Duration::from_secs(10), || open_silent(&agent));
    std::thread::sleep(Duration::from_millis(300)); // mosquitto's CONNACKs
    broker.signal(libc::SIGSTOP);
    wait_for("both expiries while the broker is stopped", Duration::from_secs(8), || {
        let s = agent.sessions(broker.port);
        ["tls13-silent", "tls12-silent"].iter().all(|id| by_id(&s, id)["expired"] == true)
    });
    let during = agent.sessions(broker.port);
    for id in ["tls13-silent", "tls12-silent"] {
        assert_eq!(by_id(&during, id)["close"]["kind"], "open", "{id}: expired on the clock, before any close");
    }
    broker.signal(libc::SIGCONT);
    for c in &mut silent {
        assert!(c.wait().unwrap().success(), "mosquitto closed the silent client");
    }
    std::thread::sleep(Duration::from_millis(1500)); // the last packets through the agent

    let sessions = agent.sessions(broker.port);
    for id in ["tls13-healthy", "tls12-healthy", "tls13-silent", "tls12-silent"] {
        let s = by_id(&sessions, id);
        assert_eq!(
            (s["transport"].as_str(), s["tls"]["decrypted"].as_bool(), s["keepalive_s"].as_u64()),
            (Some("tls"), Some(true), Some(2)),
            "{id}: {s}"
        );
        assert_eq!(s["tls"]["version"], if id.starts_with("tls13") { "1.3" } else { "1.2" }, "{id}");
        assert_eq!(s["mid_stream"], false, "{id}");
    }
    for (id, pings) in [("tls13-healthy", 3), ("tls12-healthy", 2)] {
        let s = by_id(&sessions, id);
        assert_eq!(
            (s["pingreq"].as_u64(), s["pingresp"].as_u64(), s["pings_unanswered"].as_u64()),
            (Some(pings), Some(pings), Some(0)),
            "{id}: {s}"
        );
        let rtt = s["ping_rtt_ms"]["max"].as_f64().unwrap();
        assert!(rtt > 0.0 && rtt < 500.0, "{id}: round trips on loopback: {rtt}");
        assert_eq!(
            (s["expired"].as_bool(), s["close"]["kind"].as_str(), s["close"]["by"].as_str()),
            (Some(false), Some("disconnect"), Some("client")),
            "{id}"
        );
    }
    for (id, will) in [("tls13-silent", true), ("tls12-silent", false)] {
        let s = by_id(&sessions, id);
        assert_eq!(
            (s["expired"].as_bool(), s["pingreq"].as_u64(), s["will"].as_bool()),
            (Some(true), Some(0), Some(will)),
            "{id}: {s}"
        );
        assert_eq!(
            (s["close"]["kind"].as_str(), s["close"]["by"].as_str()),
            (Some("close_notify"), Some("broker")),
            "{id}: {s}"
        );
        let verdict = s["enforcement"]["verdict"].as_str().unwrap();
        assert!(verdict == "on_time" || verdict == "late", "{id}: {verdict}");
    }

    let metrics = agent.get("/metrics");
    let m = |series: &str| sample(&metrics, series);
    assert_eq!(m("mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tls\"}"), 4.0, "{metrics}");
    assert_eq!(m("mqtt_keepalive_expired_total{transport=\"tls\"}"), 2.0);
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"request\"}"), 5.0);
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"response\"}"), 5.0);
    assert_eq!(m("mqtt_keepalive_ping_rtt_seconds_count"), 5.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"close_notify\",by=\"broker\",transport=\"tls\"}"), 2.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"disconnect\",by=\"client\",transport=\"tls\"}"), 2.0);
    assert_eq!(m("mqtt_keepalive_effective_keepalive_seconds_count"), 4.0);
    assert_eq!(m("mqtt_keepalive_sessions_open"), 0.0);

    // A client writing its secrets to another file: a TLS session the agent cannot decrypt.
    let mut other = tls_client(
        broker.port,
        &ca,
        &elsewhere,
        &["--keepalive", "10", "--client-id", "keys-elsewhere", "sleep:0.5", "disconnect"],
    );
    assert!(other.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(1500));
    let after = agent.sessions(broker.port);
    assert_eq!(after.len(), 5, "{after:?}");
    let s = after.iter().find(|s| s["client_id"].is_null()).expect("the undecrypted session has no client id");
    assert_eq!(
        (s["transport"].as_str(), s["tls"]["decrypted"].as_bool(), s["tls"]["encrypted_reason"].as_str()),
        (Some("tls"), Some(false), Some("no_key_log_line")),
        "{s}"
    );
    assert_eq!((s["tls"]["sni"].as_str(), s["keepalive_s"].as_u64()), (Some("localhost"), None), "{s}");
    assert!(!after.iter().any(|s| s["client_id"] == "keys-elsewhere"), "its CONNECT was not read");

    let status = agent.stop();
    assert!(status.success(), "SIGTERM ends the agent with status 0: {status:?}");
    drop(broker);

    // The events: expiries stamped with their deadlines (CONNECT + 1.5 x 2 s), before the
    // broker's close_notify.
    let events_text = std::fs::read_to_string(&events_path).unwrap();
    let events: Vec<Value> = events_text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for id in ["tls13-silent", "tls12-silent"] {
        let connect = events.iter().find(|e| e["kind"] == "connect" && e["client_id"] == id).unwrap();
        let of = |kind: &str| {
            events
                .iter()
                .position(|e| e["kind"] == kind && e["session"] == connect["session"])
                .unwrap_or_else(|| panic!("{id}: {kind}"))
        };
        let (expired, close) = (&events[of("keepalive_expired")], &events[of("close")]);
        let deadline = connect["ts"].as_f64().unwrap() + 3.0;
        assert!((expired["ts"].as_f64().unwrap() - deadline).abs() < 1e-5, "{id}: {expired}");
        assert!(of("keepalive_expired") < of("close") && close["ts"].as_f64().unwrap() > deadline, "{id}");
        assert_eq!((close["close"].as_str(), close["by"].as_str()), (Some("close_notify"), Some("broker")), "{close}");
    }

    // No key material in any output.
    let mut all_secrets = secrets(&keylog);
    all_secrets.extend(secrets(&elsewhere));
    // Three TLS 1.3 clients (five lines each, with EXPORTER_SECRET) and two TLS 1.2 ones (one).
    assert_eq!(all_secrets.len(), 3 * 5 + 2, "every client wrote its secrets");
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!stderr.is_empty(), "trace logging is on");
    let outputs = [
        ("events", events_text.to_ascii_lowercase()),
        ("/sessions", serde_json::to_string(&after).unwrap().to_ascii_lowercase()),
        ("/metrics", metrics.to_ascii_lowercase()),
        ("stderr", stderr.to_ascii_lowercase()),
    ];
    for secret in &all_secrets {
        for (name, text) in &outputs {
            assert!(!text.contains(&secret[..16]), "{name} holds key material");
        }
    }
}
