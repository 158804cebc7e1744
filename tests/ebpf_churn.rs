//! TLS churn through the eBPF backend, counted exactly (issue #19): mosquitto with a TLS listener,
//! the agent `live --backend ebpf --pid <mosquitto>`, tcpdump recording the broker port, and
//! benches/churn-clients.py --tls for 40 s at 50 connections a second (keepalive 1-3 s, 0-3 pings
//! each, endings DISCONNECT, close_notify + FIN, RST by abort right after the last PINGRESP, and
//! silence until mosquitto closes). Every connect, close (by kind and side), close without
//! DISCONNECT, PINGREQ and answered PINGREQ the clients counted must be the live agent's
//! `/metrics` figure and the figure `analyze --tls-keylog` gives for the recording (the one
//! latitude: a PINGREQ a client sent just as mosquitto closed it for a keepalive overrun may or
//! may not have been read, so it may or may not count, the same live and offline): a record put
//! in the wrong order (a client's RST before the PINGRESP the broker had already written) shows
//! as an unanswered ping and fails this test. The short version of `benches/tls-churn.sh`.
//! Needs root (eBPF, packet capture), mosquitto, openssl, tcpdump and python3.
#![allow(clippy::disallowed_methods)] // waits on real processes

mod common;

use common::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Seconds of churn, connections a second, at most this many open.
const SECONDS: &str = "40";
const RATE: &str = "50";
const MOST: &str = "500";

/// Every series of a Prometheus / OpenMetrics exposition with its latest sample (by timestamp,
/// for `analyze -f openmetrics`), keyed by name and labels (without `instance` and `job`).
fn series(text: &str) -> HashMap<(String, BTreeMap<String, String>), f64> {
    let mut latest: HashMap<(String, BTreeMap<String, String>), (f64, f64)> = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').unwrap_or_else(|| panic!("a sample line: {line}"));
                (&line[..open], &line[open + 1..close], &line[close + 1..])
            }
            None => {
                let (name, rest) = line.split_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
                (name, "", rest)
            }
        };
        let mut fields = rest.split_whitespace();
        let value: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("a value: {line}"));
        let ts: f64 = fields.next().map_or(0.0, |t| t.parse().unwrap());
        let labels: BTreeMap<String, String> = labels
            .split("\",")
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once("=\"").unwrap_or_else(|| panic!("a label: {kv} in {line}"));
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .filter(|(k, _)| k != "instance" && k != "job")
            .collect();
        let entry = latest.entry((name.to_string(), labels)).or_insert((ts, value));
        if ts >= entry.0 {
            *entry = (ts, value);
        }
    }
    latest.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

/// The sum of the series `name` whose labels include every one of `want`.
fn total(series: &HashMap<(String, BTreeMap<String, String>), f64>, name: &str, want: &[(&str, &str)]) -> u64 {
    series
        .iter()
        .filter(|((n, labels), _)| {
            n == name && want.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| *v)
        .sum::<f64>() as u64
}

/// Each count as (name, the lowest and the highest the clients allow, reported in `series`).
/// Exact, but for a PINGREQ a client sent just as the broker closed it (a keepalive overrun on a
/// machine too loaded to keep time): the broker may or may not have read it.
fn counts(
    clients: &serde_json::Value,
    s: &HashMap<(String, BTreeMap<String, String>), f64>,
) -> Vec<(String, u64, u64, u64)> {
    let c = |k: &str| clients[k].as_u64().unwrap_or_else(|| panic!("{k} in {clients}"));
    let p = "mqtt_keepalive_";
    // Silent clients, and clients the broker closed before they ended.
    let by_broker = c("silent_closed_by_broker") + c("closed_by_broker_early");
    let maybe = c("pingreq_at_broker_close");
    let closes = |want: &[(&str, &str)]| total(s, &format!("{p}closes_total"), want);
    let exact = |name: &str, v: u64, got: u64| (name.to_string(), v, v, got);
    vec![
        exact("connections", c("connects"), total(s, &format!("{p}connects_total"), &[])),
        exact("DISCONNECT closes", c("disconnect"), closes(&[("kind", "disconnect")])),
        exact(
            "orderly closes by clients (close_notify + FIN)",
            c("fin"),
            closes(&[("kind", "close_notify"), ("by", "client")]) + closes(&[("kind", "fin"), ("by", "client")]),
        ),
        exact("RST closes by clients (aborts)", c("rst"), closes(&[("kind", "rst"), ("by", "client")])),
        exact("closes by the broker (silent clients, overruns)", by_broker, closes(&[("by", "broker")])),
        exact(
            "closes without DISCONNECT",
            c("fin") + c("rst") + by_broker,
            total(s, &format!("{p}closes_without_disconnect_total"), &[]),
        ),
        (
            "PINGREQ".into(),
            c("pingreq") - maybe,
            c("pingreq"),
            total(s, &format!("{p}pings_total"), &[("direction", "request")]),
        ),
        exact("answered pings", c("pingresp"), total(s, &format!("{p}pings_total"), &[("direction", "response")])),
        (
            "pings unanswered".into(),
            c("pingreq") - c("pingresp") - maybe,
            c("pingreq") - c("pingresp"),
            total(s, &format!("{p}pings_unanswered_total"), &[]),
        ),
        exact("sessions open at the end", 0, total(s, &format!("{p}sessions_open"), &[])),
    ]
}

/// The parser reads both expositions as the agent writes them.
#[test]
fn series_reads_prometheus_and_openmetrics_samples() {
    let live = "# TYPE x counter\nmqtt_keepalive_pings_total{direction=\"request\"} 7\n\
                mqtt_keepalive_closes_total{kind=\"rst\",by=\"client\",transport=\"tls\"} 2\n\
                mqtt_keepalive_closes_total{kind=\"rst\",by=\"broker\",transport=\"tls\"} 1\nmqtt_keepalive_sessions_open 0\n";
    let s = series(live);
    assert_eq!(total(&s, "mqtt_keepalive_pings_total", &[("direction", "request")]), 7);
    assert_eq!(total(&s, "mqtt_keepalive_closes_total", &[("kind", "rst")]), 3);
    assert_eq!(total(&s, "mqtt_keepalive_closes_total", &[("by", "client")]), 2);
    let offline = "a_total{k=\"v\",instance=\"x.pcap\",job=\"mqtt-keepalive\"} 1 100.5\n\
                   a_total{k=\"v\",instance=\"x.pcap\",job=\"mqtt-keepalive\"} 4 200.5\n# EOF\n";
    assert_eq!(total(&series(offline), "a_total", &[("k", "v")]), 4, "the latest sample");
}

#[test]
#[ignore = "needs root (eBPF, packet capture), mosquitto, tcpdump and python3"]
fn ebpf_agent_counts_tls_churn_exactly_as_the_clients_and_a_decrypted_capture() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let broker = TlsBroker::start_with(dir.path(), Path::new("mosquitto"), free_port(), "max_connections -1");
    let port = broker.port.to_string();
    let keylog = dir.path().join("keys.log");
    let pcap = dir.path().join("churn.pcap");
    let tcpdump_err = dir.path().join("tcpdump.stderr");
    let tcpdump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "-B", "65536", "-w"])
        .arg(&pcap)
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&tcpdump_err).unwrap())
        .spawn()
        .expect("tcpdump is installed");
    let tcpdump = Reaped(tcpdump);

    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent_err = dir.path().join("agent.stderr");
    let agent = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .args(["live", "--backend", "ebpf", "--port", &port, "--pid", &broker.pid().to_string(), "--listen"])
        .arg(listen.to_string())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&agent_err).unwrap())
        .spawn()
        .unwrap();
    let mut agent = Reaped(agent);
    let stderr = || std::fs::read_to_string(&agent_err).unwrap_or_default();
    wait_for("the eBPF agent's probes and /healthz", Duration::from_secs(20), || {
        if let Ok(Some(status)) = agent.0.try_wait() {
            panic!("the agent exited with {status}: {}", stderr());
        }
        stderr().contains("eBPF probes attached") && matches!(http_get(listen, "/healthz", None), Ok((200, _, _)))
    });
    wait_for("tcpdump listening", Duration::from_secs(10), || {
        std::fs::read_to_string(&tcpdump_err).unwrap_or_default().contains("listening on")
    });

    let generator = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/churn-clients.py");
    let out = Command::new("python3")
        .arg(&generator)
        .args([&port, RATE, MOST, SECONDS, "--tls"])
        .arg(&ca)
        .arg("--keylog")
        .arg(&keylog)
        .args(["--pings", "0-3", "--seed", "19"])
        .output()
        .expect("python3 runs the churn clients");
    assert!(out.status.success(), "churn clients: {}", String::from_utf8_lossy(&out.stderr));
    let clients: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        clients["failed"],
        0,
        "every client did what it drew: {clients}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(clients["connects"].as_u64().unwrap() > 500, "churn: {clients}");
    for ending in ["disconnect", "fin", "rst", "rst_after_pingresp", "silent_closed_by_broker"] {
        assert!(clients[ending].as_u64().unwrap() > 0, "{ending} among the endings: {clients}");
    }

    // Every connection closed at the clients; the agent has reported them all once its reorder
    // window has passed.
    let metrics = || {
        let (status, _, body) = http_get(listen, "/metrics", None).unwrap();
        assert_eq!(status, 200);
        body
    };
    let connects = clients["connects"].as_u64().unwrap() as f64;
    wait_for("the agent to close every session", Duration::from_secs(20), || {
        let m = metrics();
        sample(&m, "mqtt_keepalive_sessions_open") == 0.0
            && total(&series(&m), "mqtt_keepalive_connects_total", &[]) as f64 >= connects
    });
    std::thread::sleep(Duration::from_secs(2));
    let live_text = metrics();
    let live = series(&live_text);
    // SAFETY: signalling our own child process (still running: it is reaped only on drop).
    unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
    let mut tcpdump = tcpdump;
    tcpdump.0.wait().unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .args(["analyze", "--tls-keylog"])
        .arg(&keylog)
        .args(["--port", &port, "-f", "openmetrics", "--step", "1h"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success(), "analyze: {}", String::from_utf8_lossy(&out.stderr));
    let offline = series(&String::from_utf8(out.stdout).unwrap());

    let mut table = format!("{:<48} {:>13} {:>8} {:>8}\n", "count", "clients", "live", "offline");
    let mut mismatches = Vec::new();
    for ((name, lo, hi, live), (_, _, _, off)) in counts(&clients, &live).into_iter().zip(counts(&clients, &offline)) {
        let fine = live == off && (lo..=hi).contains(&live);
        let done = if lo == hi { lo.to_string() } else { format!("{lo}..{hi}") };
        table += &format!("{name:<48} {done:>13} {live:>8} {off:>8} {}\n", if fine { "ok" } else { "DIFF" });
        if !fine {
            mismatches.push(name);
        }
    }
    let extra =
        ["ebpf_records_total", "capture_dropped_packets_total", "ebpf_lost_bytes_total", "ebpf_unbound_calls_total"]
            .map(|s| format!("{s} {}", sample(&live_text, &format!("mqtt_keepalive_{s}"))))
            .join(", ");
    eprintln!("{table}agent: {extra}");
    assert!(
        mismatches.is_empty(),
        "counts differ: {mismatches:?}\n{table}agent: {extra}\nclients: {clients}\ntcpdump: {}",
        std::fs::read_to_string(&tcpdump_err).unwrap_or_default()
    );
    drop(agent);
    drop(broker);
}
