//! The live agent end to end: a real mosquitto on loopback (and one capping keepalives at 10 s),
//! real client processes running the scenarios, the agent capturing `lo`, and its /metrics and
//! /sessions scraped over HTTP. A fake broker that never closes anything shows that an expiry is
//! reported on the clock while no packets flow. A tcpdump capture of the same traffic, analysed
//! offline, must give the same verdicts as the live run.
//! Needs root (packet capture), mosquitto, tcpdump and python3; CI installs them.

mod common;

use common::*;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
#[ignore = "needs root, mosquitto, tcpdump and python3"]
fn live_agent_reports_real_scenarios_and_matches_offline_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start("");
    let capped = Mosquitto::start("max_keepalive 10");
    let fake = fake_broker();
    let ports = [broker.port, capped.port, fake];
    let events_path = dir.path().join("events.jsonl");
    let pcap_path = dir.path().join("same-traffic.pcap");
    let filter = ports.iter().map(|p| format!("tcp port {p}")).collect::<Vec<_>>().join(" or ");
    let tcpdump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "--immediate-mode", "-w"])
        .arg(&pcap_path)
        .arg(&filter)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut tcpdump = Reaped(tcpdump);
    let agent = Agent::start(&ports, &events_path);
    std::thread::sleep(Duration::from_millis(1000)); // let tcpdump open

    // A silent client of a broker that never closes: expired on the clock, no packet needed.
    let mut quiet = Reaped(mqtt_client(fake, &["--keepalive", "1", "--client-id", "never-closed", "sleep:60"]));
    wait_for("the expiry of a silent client nobody closes", Duration::from_secs(5), || {
        sample(&agent.get("/metrics"), "mqtt_keepalive_expired_total{transport=\"tcp\"}") >= 1.0
    });

    let mut clients = vec![
        mqtt_client(
            broker.port,
            &["--keepalive", "2", "--client-id", "healthy", "pings:3:2", "sleep:0.5", "disconnect"],
        ),
        mqtt_client(broker.port, &["--keepalive", "2", "--client-id", "silent", "--will", "wait-close:20"]),
        mqtt_client(
            broker.port,
            &["--keepalive", "10", "--client-id", "vanishing", "--will", "publish:a/b:x", "sleep:1", "rst"],
        ),
        mqtt_client(capped.port, &["--version", "5", "--keepalive", "60", "--client-id", "capped", "wait-close:30"]),
    ];
    for c in &mut clients {
        assert!(c.wait().unwrap().success());
    }
    std::thread::sleep(Duration::from_millis(500));

    let metrics = agent.get("/metrics");
    let m = |series: &str| sample(&metrics, series);
    assert_eq!(m("mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tcp\"}"), 4.0, "{metrics}");
    assert_eq!(m("mqtt_keepalive_connects_total{protocol=\"5.0\",transport=\"tcp\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_expired_total{transport=\"tcp\"}"), 3.0, "silent, capped and never-closed");
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"request\"}"), 3.0);
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"response\"}"), 3.0);
    assert_eq!(m("mqtt_keepalive_ping_rtt_seconds_count"), 3.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"fin\",by=\"broker\",transport=\"tcp\"}"), 2.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"rst\",by=\"client\",transport=\"tcp\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"disconnect\",by=\"client\",transport=\"tcp\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_closes_without_disconnect_total"), 3.0);
    assert_eq!(
        m("mqtt_keepalive_enforcement_total{verdict=\"on_time\"}")
            + m("mqtt_keepalive_enforcement_total{verdict=\"late\"}"),
        2.0
    );
    assert_eq!(m("mqtt_keepalive_effective_keepalive_seconds_count"), 5.0);
    assert_eq!(m("mqtt_keepalive_sessions_open"), 1.0, "the never-closed one");
    assert!(m("mqtt_keepalive_silence_ratio_count") >= 5.0);
    assert!(m("mqtt_keepalive_capture_packets_total") > 40.0);
    assert_eq!(m("mqtt_keepalive_capture_dropped_packets_total"), 0.0);
    assert!(metrics.contains("# TYPE mqtt_keepalive_expired_total counter"), "Prometheus text format by default");
    let (_, content_type, om) =
        http_get(agent.listen, "/metrics", Some("application/openmetrics-text;version=1.0.0")).unwrap();
    assert!(content_type.starts_with("application/openmetrics-text") && om.ends_with("# EOF\n"));
    assert!(!metrics.contains("never-closed"), "no client ids in labels by default");

    let doc: serde_json::Value = serde_json::from_str(&agent.get("/sessions")).unwrap();
    let live: Vec<&serde_json::Value> = doc["sessions"].as_array().unwrap().iter().collect();
    let by_id = |id: &str| *live.iter().find(|s| s["client_id"] == id).unwrap_or_else(|| panic!("{id} in /sessions"));
    assert_eq!(by_id("capped")["effective_keepalive_s"], 10);
    assert_eq!(by_id("never-closed")["close"]["kind"], "open");
    assert_eq!(by_id("never-closed")["expired"], true);
    // `open` counts the open sessions; `?limit=1` lists only the most severe of them.
    let open: Vec<&&serde_json::Value> = live.iter().filter(|s| s["close"]["kind"] == "open").collect();
    assert_eq!(doc["open"], open.len(), "{doc}");
    let one: serde_json::Value = serde_json::from_str(&agent.get("/sessions?limit=1")).unwrap();
    let listed: Vec<&serde_json::Value> =
        one["sessions"].as_array().unwrap().iter().filter(|s| s["close"]["kind"] == "open").collect();
    assert_eq!((one["open"].clone(), listed.len()), (doc["open"].clone(), 1));
    assert_eq!(listed[0]["client_id"], "never-closed", "the expired, never closed session is the most severe");

    let status = agent.stop();
    assert!(status.success(), "SIGTERM ends the agent with status 0: {status:?}");
    let _ = quiet.0.kill();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
    tcpdump.0.wait().unwrap();

    // The events were flushed, and the expiry carries its deadline as timestamp.
    let events: Vec<serde_json::Value> =
        std::fs::read_to_string(&events_path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let connect_ts = events.iter().find(|e| e["kind"] == "connect" && e["client_id"] == "never-closed").unwrap()["ts"]
        .as_f64()
        .unwrap();
    let session =
        events.iter().find(|e| e["kind"] == "connect" && e["client_id"] == "never-closed").unwrap()["session"].clone();
    let expiry = events.iter().find(|e| e["kind"] == "keepalive_expired" && e["session"] == session).unwrap();
    assert!((expiry["ts"].as_f64().unwrap() - (connect_ts + 1.5)).abs() < 1e-5);

    // Offline analysis of the same traffic gives the same verdicts.
    let (report, _) = analyze_with(&[pcap_path], Default::default(), &ports);
    for s in &report.sessions {
        let id = s.client_id.as_deref().unwrap_or_else(|| panic!("{}", serde_json::to_string(s).unwrap()));
        let l = by_id(id);
        let offline = serde_json::to_value(s).unwrap();
        for field in ["protocol", "keepalive_s", "effective_keepalive_s", "pingreq", "pingresp", "expired", "will"] {
            assert_eq!(offline[field], l[field], "{id}: {field}");
        }
        if id != "never-closed" {
            assert_eq!(offline["close"]["kind"], l["close"]["kind"], "{id}");
            assert_eq!(offline["close"]["by"], l["close"]["by"], "{id}");
            assert_eq!(offline["enforcement"]["verdict"], l["enforcement"]["verdict"], "{id}");
        }
    }
    assert_eq!(report.sessions.len(), 5);
}

#[test]
#[ignore = "needs root"]
fn setup_errors_are_clear_and_exit_2() {
    let bin = env!("CARGO_BIN_EXE_mqtt-keepalive");
    let o = Command::new(bin).args(["live", "-i", "no-such-if0", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no-such-if0") && err.contains("lo"), "{err}");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let o = Command::new(bin)
        .args(["live", "-i", "lo", "--listen", &taken.local_addr().unwrap().to_string()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot listen"));
    // Without CAP_NET_RAW (an unprivileged user, no capabilities): the message names the fix.
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            bin,
            "live",
            "-i",
            "lo",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CAP_NET_RAW") && err.contains("setcap cap_net_raw"), "{err}");
}

#[test]
#[ignore = "needs root, mosquitto and python3"]
fn capture_threads_count_every_session_once_and_answer_sessions_together() {
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let broker = Mosquitto::start("");
    let agent = Agent::start_with(&[broker.port], &events_path, &["--capture-threads", "3"]);
    std::thread::sleep(Duration::from_millis(300));
    let mut clients = Vec::new();
    for i in 0..12 {
        let id = format!("healthy-{i}");
        clients.push(mqtt_client(
            broker.port,
            &["--keepalive", "2", "--client-id", &id, "pings:1:0.2", "sleep:0.2", "disconnect"],
        ));
    }
    for i in 0..4 {
        let id = format!("silent-{i}");
        clients.push(mqtt_client(broker.port, &["--keepalive", "1", "--client-id", &id, "wait-close:20"]));
    }
    let mut open: Vec<_> = (0..3)
        .map(|i| {
            Reaped(mqtt_client(broker.port, &["--keepalive", "60", "--client-id", &format!("open-{i}"), "sleep:30"]))
        })
        .collect();
    for c in &mut clients {
        assert!(c.wait().unwrap().success());
    }
    std::thread::sleep(Duration::from_millis(500));
    let metrics = agent.get("/metrics");
    let m = |series: &str| sample(&metrics, series);
    assert_eq!(m("mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tcp\"}"), 19.0, "{metrics}");
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"request\"}"), 12.0);
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"response\"}"), 12.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"disconnect\",by=\"client\",transport=\"tcp\"}"), 12.0);
    assert_eq!(m("mqtt_keepalive_expired_total{transport=\"tcp\"}"), 4.0);
    assert_eq!(m("mqtt_keepalive_closes_without_disconnect_total"), 4.0);
    assert_eq!(m("mqtt_keepalive_sessions_open"), 3.0);
    assert_eq!(m("mqtt_keepalive_capture_dropped_packets_total"), 0.0);
    // Every thread's sessions in one document: the open ones counted and listed, the closed ones.
    let doc: serde_json::Value = serde_json::from_str(&agent.get("/sessions")).unwrap();
    assert_eq!(doc["open"], 3, "{doc}");
    let ids: std::collections::BTreeSet<String> =
        doc["sessions"].as_array().unwrap().iter().map(|s| s["client_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 19, "{ids:?}");
    // Session ids are unique across threads.
    let session_ids: std::collections::BTreeSet<u64> =
        doc["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert_eq!(session_ids.len(), 19, "{session_ids:?}");
    let one: serde_json::Value = serde_json::from_str(&agent.get("/sessions?limit=1")).unwrap();
    let listed = one["sessions"].as_array().unwrap().iter().filter(|s| s["close"]["kind"] == "open").count();
    assert_eq!((one["open"].clone(), listed), (doc["open"].clone(), 1));
    assert!(agent.stop().success());
    for c in &mut open {
        let _ = c.0.kill();
    }
    // The threads' events share one file, line by line.
    let events = std::fs::read_to_string(&events_path).unwrap();
    let connects = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["kind"] == "connect")
        .count();
    assert_eq!(connects, 19);
}

#[cfg(feature = "libpcap")]
#[test]
#[ignore = "needs root, mosquitto and python3"]
fn libpcap_backend_gives_the_same_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start("");
    let agent = Agent::start_with(&[broker.port], &dir.path().join("events.jsonl"), &["--backend", "libpcap"]);
    std::thread::sleep(Duration::from_millis(300));
    let mut clients = vec![
        mqtt_client(
            broker.port,
            &["--keepalive", "2", "--client-id", "healthy", "pings:2:2", "sleep:0.5", "disconnect"],
        ),
        mqtt_client(broker.port, &["--keepalive", "2", "--client-id", "silent", "wait-close:20"]),
    ];
    for c in &mut clients {
        assert!(c.wait().unwrap().success());
    }
    std::thread::sleep(Duration::from_millis(500));
    let metrics = agent.get("/metrics");
    assert_eq!(sample(&metrics, "mqtt_keepalive_expired_total{transport=\"tcp\"}"), 1.0, "{metrics}");
    assert_eq!(sample(&metrics, "mqtt_keepalive_pings_total{direction=\"response\"}"), 2.0);
    assert_eq!(sample(&metrics, "mqtt_keepalive_closes_total{kind=\"fin\",by=\"broker\",transport=\"tcp\"}"), 1.0);
    assert!(agent.stop().success());
}
