//! `analyze -f openmetrics` end to end: a fixture's metrics backfilled with the real promtool
//! (`tsdb create-blocks-from openmetrics`), a real Prometheus started on the blocks with the
//! retention the README states for old captures, and the dashboard's panel queries answering,
//! at the capture's own times, the values the JSON report implies. And the equivalence with
//! the live agent: for real traffic (mosquitto, scripted clients) watched live and recorded by
//! tcpdump, the agent's scraped counters at the end equal the backfilled series' last values.
//! Needs prometheus and promtool (Debian `prometheus`); the equivalence test also root,
//! mosquitto, tcpdump and python3. CI installs them.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
}

/// Runs `analyze` and returns its standard output.
fn analyze(args: &[&str]) -> String {
    let o = bin().arg("analyze").args(args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The retention the README states for backfilled captures.
const RETENTION: &str = "10y";

/// A Prometheus on backfilled blocks, scraping nothing.
struct Prometheus {
    addr: std::net::SocketAddr,
    _child: Reaped,
}

impl Prometheus {
    fn on_blocks(data: &Path, dir: &Path) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global: {evaluation_interval: 1m}\nscrape_configs: []\n").unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--storage.tsdb.retention.time={RETENTION}"))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed");
        let p = Prometheus { addr, _child: Reaped(child) };
        wait_for("prometheus ready", Duration::from_secs(30), || {
            matches!(http_get(addr, "/-/ready", None), Ok((200, _, _)))
        });
        p
    }

    /// An instant query at `time` (OpenMetrics seconds); panics unless Prometheus accepts it.
    fn query_at(&self, expr: &str, time: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}&time={time}", urlencode(expr));
        let (status, _, body) = http_get(self.addr, &path, None).unwrap();
        let doc: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{expr}: {body}"));
        assert_eq!((status, doc["status"].as_str()), (200, Some("success")), "{expr}: {body}");
        doc["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of a one-series answer (0 when empty).
    fn value_at(&self, expr: &str, time: &str) -> f64 {
        let r = self.query_at(expr, time);
        assert!(r.len() <= 1, "{expr}: {r:?}");
        r.first().and_then(|r| r["value"][1].as_str()?.parse().ok()).unwrap_or(0.0)
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Unix seconds as an OpenMetrics / Prometheus API time (milliseconds, rounded down).
fn api_time(t: f64) -> String {
    let ms = (t * 1000.0 + 1e-6).floor() as i64;
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

#[test]
#[ignore = "needs prometheus and promtool"]
fn backfilled_fixture_answers_the_dashboard_with_the_json_reports_values_at_the_capture_times() {
    let dir = tempfile::tempdir().unwrap();
    let capture = fixture("many-sessions.pcap");
    let cap = capture.to_str().unwrap();
    let doc: Value = serde_json::from_str(&analyze(&["-f", "json", cap])).unwrap();
    let om = dir.path().join("metrics.om");
    std::fs::write(&om, analyze(&["-f", "openmetrics", "--step", "1s", "--instance", "fixture", cap])).unwrap();
    let data = dir.path().join("data");
    let o = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let prom = Prometheus::on_blocks(&data, dir.path());

    let t0 = doc["capture"]["first_ts"].as_f64().unwrap();
    let last = doc["capture"]["last_ts"].as_f64().unwrap();
    let sessions = doc["sessions"].as_array().unwrap();
    let events: Vec<&Value> = sessions.iter().flat_map(|s| s["events"].as_array().unwrap()).collect();
    let count = |kind: &str, until: f64, filter: &dyn Fn(&Value) -> bool| {
        events.iter().filter(|e| e["kind"] == kind && e["ts"].as_f64().unwrap() <= until && filter(e)).count() as f64
    };
    let any = |_: &Value| true;

    // At every sample time (each second of the capture, and its end), the series hold what the
    // report's events up to then imply.
    let mut times: Vec<f64> = (0..).map(|k| t0 + k as f64).take_while(|t| *t <= last).collect();
    times.push(last);
    for &t in &times {
        let at = api_time(t);
        let sel = "{instance=\"fixture\",job=\"mqtt-keepalive\"}";
        let v = |metric: &str| prom.value_at(&format!("sum(mqtt_keepalive_{metric}{sel})"), &at);
        assert_eq!(v("connects_total"), count("connect", t, &any), "connects at {at}");
        assert_eq!(v("expired_total"), count("keepalive_expired", t, &any), "expiries at {at}");
        assert_eq!(v("closes_total"), count("close", t, &any), "closes at {at}");
        assert_eq!(v("closes_without_disconnect_total"), count("close_without_disconnect", t, &any), "at {at}");
        assert_eq!(v("enforcement_total"), count("enforcement", t, &any), "enforcement at {at}");
        assert_eq!(v("sessions_open"), count("connect", t, &any) - count("close", t, &any), "open at {at}");
    }

    // Every panel of the dashboard, at the end of the capture, as Grafana would ask over it.
    let at = api_time(last);
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("dashboards/mqtt-keepalive.json")).unwrap()).unwrap();
    let mut panels = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__range", "10m")
                .replace("$instance", "fixture");
            assert!(!prom.query_at(&expr, &at).is_empty(), "panel {}: no data for {expr}", panel["title"]);
            panels += 1;
        }
    }
    assert!(panels >= 20);
    // ... with the report's values: the 1m window covers the whole capture, whose counters start at 0.
    let s = &doc["summary"];
    let per_min = |expr: &str| prom.value_at(expr, &at) * 60.0;
    let close = |e: &Value, kind: &str, by: &str| e["close"] == kind && e["by"] == by;
    assert_eq!(
        per_min("sum(rate(mqtt_keepalive_expired_total{instance=~\"fixture\"}[1m]))"),
        s["expired"].as_f64().unwrap()
    );
    assert_eq!(
        per_min("sum(rate(mqtt_keepalive_pings_total{instance=~\"fixture\",direction=\"request\"}[1m]))"),
        s["pings"].as_f64().unwrap()
    );
    assert_eq!(
        per_min("sum(rate(mqtt_keepalive_pings_unanswered_total{instance=~\"fixture\"}[1m]))"),
        s["pings_unanswered"].as_f64().unwrap()
    );
    assert_eq!(
        per_min("sum(rate(mqtt_keepalive_ping_rtt_seconds_count{instance=~\"fixture\"}[1m]))"),
        s["ping_rtt_ms"]["count"].as_f64().unwrap()
    );
    assert_eq!(
        per_min("sum(rate(mqtt_keepalive_capture_packets_total{instance=~\"fixture\"}[1m]))"),
        doc["capture"]["packets"].as_f64().unwrap()
    );
    for (kind, by) in [("fin", "broker"), ("rst", "client"), ("fin", "client"), ("disconnect", "client")] {
        let expr =
            format!("sum(rate(mqtt_keepalive_closes_total{{instance=~\"fixture\",kind=\"{kind}\",by=\"{by}\"}}[1m]))");
        assert_eq!(per_min(&expr), count("close", last, &|e| close(e, kind, by)), "{kind} by {by}");
    }
    for (verdict, n) in s["enforcement"].as_object().unwrap() {
        let expr =
            format!("sum(rate(mqtt_keepalive_enforcement_total{{instance=~\"fixture\",verdict=\"{verdict}\"}}[1m]))");
        assert_eq!(per_min(&expr), n.as_f64().unwrap(), "{verdict}");
    }
    // The effective keepalive panel: sessions per bucket over the range.
    let buckets = prom.query_at(
        "sum by (le) (increase(mqtt_keepalive_effective_keepalive_seconds_bucket{instance=~\"fixture\"}[10m]))",
        &at,
    );
    let by_le: BTreeMap<String, f64> = buckets
        .iter()
        .map(|b| (b["metric"]["le"].as_str().unwrap().to_string(), b["value"][1].as_str().unwrap().parse().unwrap()))
        .collect();
    for (le, n) in &by_le {
        let bound: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
        let want = sessions.iter().filter(|s| s["effective_keepalive_s"].as_f64().is_some_and(|k| k <= bound)).count();
        assert_eq!(*n, want as f64, "effective keepalive <= {le}");
    }
    assert_eq!(by_le["+Inf"], sessions.len() as f64);
    // The alert rules' expressions at the end of the capture: firing exactly as the report implies
    // (`up` is not backfilled: no scrape happened).
    let rules: String = std::fs::read_to_string(repo("dashboards/alerts.yml")).unwrap();
    let enforcement = |v: &str| s["enforcement"][v].as_f64().unwrap_or(0.0);
    let mut alerts = 0;
    for block in rules.split("- alert: ").skip(1) {
        let name = block.lines().next().unwrap().trim();
        let expr: String = block
            .split("expr: |")
            .nth(1)
            .unwrap()
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("          "))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let expected = match name {
            "MqttKeepaliveExpiryRateHigh" => s["expired"].as_f64().unwrap() > 0.0,
            "MqttPingsUnanswered" => s["pings_unanswered"].as_f64().unwrap() > 0.0,
            "MqttBrokerEnforcesKeepaliveLate" => {
                enforcement("late") / (enforcement("late") + enforcement("on_time")).max(1.0) > 0.5
            }
            "MqttBrokerNotEnforcingKeepalive" => enforcement("not_enforced") > 0.0,
            "MqttKeepaliveCaptureDropping" | "MqttKeepaliveAgentDown" => false,
            other => panic!("untested alert {other}"),
        };
        assert_eq!(!prom.query_at(&expr, &at).is_empty(), expected, "{name}: {expr}");
        alerts += 1;
    }
    assert_eq!(alerts, 6);
    // Before the capture there is nothing; the instance label is the one given.
    assert!(prom.query_at("mqtt_keepalive_connects_total", &api_time(t0 - 600.0)).is_empty());
    assert!(
        !prom.query_at("mqtt_keepalive_expired_total{instance=\"fixture\",job=\"mqtt-keepalive\"}", &at).is_empty()
    );
}

/// The last value of every series of a backfill, by series without its instance and job labels.
fn last_values(om: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in om.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.rsplitn(3, ' ');
        let (_ts, value, series) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let labels = series.find(",instance=").or(series.find("{instance=")).unwrap();
        let bare = &series[..labels];
        let key = if bare.contains('{') { format!("{bare}}}") } else { bare.to_string() };
        out.insert(key, value.parse().unwrap());
    }
    out
}

/// Every sample of a Prometheus text exposition, by series.
fn exposition_values(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[test]
#[ignore = "needs root, mosquitto, tcpdump and python3"]
fn the_live_agents_counters_at_the_end_equal_the_backfilled_series_last_values() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start("");
    let pcap = dir.path().join("traffic.pcap");
    let tcpdump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "--immediate-mode", "-w"])
        .arg(&pcap)
        .arg(format!("tcp port {}", broker.port))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut tcpdump = Reaped(tcpdump);
    let agent = Agent::start(&[broker.port], &dir.path().join("events.jsonl"));
    std::thread::sleep(Duration::from_millis(1000)); // let tcpdump open
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
        mqtt_client(
            broker.port,
            &["--version", "5", "--keepalive", "5", "--client-id", "v5", "publish:a:b", "sleep:1", "disconnect"],
        ),
    ];
    for c in &mut clients {
        assert!(c.wait().unwrap().success());
    }
    std::thread::sleep(Duration::from_millis(1500)); // the last packets reach both captures
    let live = exposition_values(&agent.get("/metrics"));
    assert!(agent.stop().success());
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
    tcpdump.0.wait().unwrap();

    let port = broker.port.to_string();
    let backfill = last_values(&analyze(&["-f", "openmetrics", "-p", &port, pcap.to_str().unwrap()]));
    assert_eq!(live.get("mqtt_keepalive_expired_total{transport=\"tcp\"}"), Some(&1.0), "the scenario: {live:?}");
    let mut compared = 0;
    for (series, value) in &live {
        let counter = series.contains("_total") || series.contains("_count") || series.contains("_bucket");
        // Packets: the agent and tcpdump start and stop capturing at different moments.
        if !counter || series.starts_with("mqtt_keepalive_capture_") {
            continue;
        }
        // Histograms of times (round trips, lags, silences) count each observation in a bucket by
        // its value, and the agent and tcpdump stamp the same packet a few microseconds apart:
        // an observation on a bucket's edge may fall on either side. Their counts are exact.
        let timed = ["ping_rtt_seconds_bucket", "enforcement_lag_seconds_bucket", "silence_ratio_bucket"];
        if timed.iter().any(|t| series.contains(t)) {
            let got = backfill.get(series).copied().unwrap_or(f64::NAN);
            assert!((got - value).abs() <= 1.0, "{series}: {got} vs {value}");
        } else {
            assert_eq!(backfill.get(series), Some(value), "{series}");
        }
        compared += 1;
    }
    assert!(compared > 50, "{compared} series compared");
    assert_eq!(backfill["mqtt_keepalive_sessions_open"], live["mqtt_keepalive_sessions_open"]);
    // Each observation may differ by the two stampings' skew. Under CI load the live agent's
    // round trips have come out up to 53 us longer per ping than the capture's (seen twice on
    // 2026-12-04, cause not yet found; the issue notes say so): 250 us an observation, still far
    // below a wrong round trip or lag.
    for sum in ["mqtt_keepalive_ping_rtt_seconds_sum", "mqtt_keepalive_enforcement_lag_seconds_sum"] {
        let count = live[&sum.replace("_sum", "_count")].max(1.0);
        assert!(
            (backfill[sum] - live[sum]).abs() < 250e-6 * count,
            "{sum}: {} vs {} over {count} observations",
            backfill[sum],
            live[sum]
        );
    }
}
