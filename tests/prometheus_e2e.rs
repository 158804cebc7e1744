//! The dashboard and alert rules, proven against a real Prometheus scraping a real agent that
//! watches real scenario traffic (mosquitto, scripted clients, and a fake broker that neither
//! answers pings nor closes anything). Every panel expression and every alert expression is
//! run through the Prometheus HTTP API: each must be valid, and return data where the scenario
//! implies it. `promtool check rules` must pass.
//! Needs root, mosquitto, prometheus (with promtool) and python3; CI installs them.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A dashboard expression with Grafana's variables replaced as Grafana would for "All".
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m").replace("$__range", "10m").replace("$instance", ".*")
}

#[test]
#[ignore = "needs prometheus (promtool)"]
fn promtool_accepts_the_rules() {
    let o = Command::new("promtool").arg("check").arg("rules").arg(repo("dashboards/alerts.yml")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("SUCCESS: 6 rules found"));
}

#[test]
fn dashboard_is_complete_for_a_new_operator() {
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("dashboards/mqtt-keepalive.json")).unwrap()).unwrap();
    let vars: Vec<&str> =
        dash["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(vars, ["datasource", "instance"]);
    let panels = dash["panels"].as_array().unwrap();
    let text = serde_json::to_string(&dash).unwrap();
    for metric in [
        "sessions_open",
        "connects_total",
        "effective_keepalive_seconds_bucket",
        "ping_rtt_seconds_bucket",
        "pings_unanswered_total",
        "expired_total",
        "closes_total",
        "enforcement_total",
        "enforcement_lag_seconds_bucket",
        "silence_ratio_bucket",
        "capture_packets_total",
        "capture_dropped_packets_total",
        "stream_gaps_total",
        "malformed_packets_total",
    ] {
        assert!(text.contains(&format!("mqtt_keepalive_{metric}")), "no panel uses {metric}");
    }
    for p in panels {
        assert!(p["description"].as_str().is_some_and(|d| d.len() > 30), "panel {} needs a description", p["title"]);
        assert_eq!(p["datasource"]["uid"], "${datasource}");
        for t in p["targets"].as_array().unwrap() {
            assert!(
                t["expr"].as_str().unwrap().contains("instance=~\"$instance\""),
                "{}: filter by instance",
                p["title"]
            );
        }
    }
}

#[test]
#[ignore = "needs root, mosquitto, prometheus and python3"]
fn every_panel_and_alert_expression_is_valid_and_has_data_against_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start("");
    let fake = fake_broker();
    let agent = Agent::start(&[broker.port, fake], &dir.path().join("events.jsonl"));
    let prom = Prometheus::start(agent.listen, &[repo("dashboards/alerts.yml")], tempfile::tempdir().unwrap());
    wait_for("the first scrape", Duration::from_secs(20), || prom.value("up{job=\"mqtt-keepalive\"}") == Some(1.0));

    let mut clients = vec![
        mqtt_client(
            broker.port,
            &["--keepalive", "2", "--client-id", "healthy", "pings:3:2", "sleep:0.5", "disconnect"],
        ),
        mqtt_client(broker.port, &["--keepalive", "2", "--client-id", "silent", "--will", "wait-close:20"]),
        mqtt_client(broker.port, &["--keepalive", "10", "--client-id", "vanishing", "publish:a/b:x", "sleep:1", "rst"]),
        mqtt_client(
            broker.port,
            &["--version", "5", "--keepalive", "5", "--client-id", "v5", "publish:a:b", "sleep:1", "disconnect"],
        ),
        // The fake broker never answers PINGREQ: unanswered pings.
        mqtt_client(fake, &["--keepalive", "1", "--client-id", "unheard", "pings:3:0.8", "sleep:1.5", "fin"]),
        // ... and never closes an expired client, which then goes on: not enforced.
        mqtt_client(
            fake,
            &["--keepalive", "1", "--client-id", "resumer", "sleep:3", "publish:a:b", "sleep:0.5", "fin"],
        ),
    ];
    for c in &mut clients {
        assert!(c.wait().unwrap().success());
    }
    std::thread::sleep(Duration::from_secs(3)); // a few more scrapes

    // Every panel expression: valid, with data.
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("dashboards/mqtt-keepalive.json")).unwrap()).unwrap();
    let mut checked = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = substitute(target["expr"].as_str().unwrap());
            let result = prom.query(&expr);
            assert!(!result.is_empty(), "panel {:?}: no data for {expr}", panel["title"]);
            checked += 1;
        }
    }
    assert!(checked >= 20);
    // Values the scenario implies.
    for (expr, what) in [
        ("sum(increase(mqtt_keepalive_expired_total[10m]))", "expiries"),
        ("sum(increase(mqtt_keepalive_pings_unanswered_total[10m]))", "unanswered pings"),
        ("sum(increase(mqtt_keepalive_connects_total{protocol=\"5.0\"}[10m]))", "MQTT 5 connects"),
        ("sum(increase(mqtt_keepalive_closes_total{kind=\"rst\",by=\"client\"}[10m]))", "client resets"),
        ("sum(increase(mqtt_keepalive_enforcement_total{verdict=\"not_enforced\"}[10m]))", "not enforced"),
        ("sum(rate(mqtt_keepalive_ping_rtt_seconds_count[1m]))", "ping round trips"),
    ] {
        assert!(prom.value(expr).is_some_and(|v| v > 0.0), "{what}: {expr}");
    }

    // Every alert rule: loaded healthy, and its expression returns data exactly when the scenario
    // implies it should fire (before its `for:` duration).
    let (_, _, body) = http_get(prom.addr, "/api/v1/rules", None).unwrap();
    let rules: serde_json::Value = serde_json::from_str(&body).unwrap();
    let rules: Vec<&serde_json::Value> =
        rules["data"]["groups"].as_array().unwrap().iter().flat_map(|g| g["rules"].as_array().unwrap()).collect();
    assert_eq!(rules.len(), 6);
    let late = prom.value("sum(mqtt_keepalive_enforcement_total{verdict=\"late\"})").unwrap_or(0.0);
    let on_time = prom.value("sum(mqtt_keepalive_enforcement_total{verdict=\"on_time\"})").unwrap_or(0.0);
    for rule in rules {
        let name = rule["name"].as_str().unwrap();
        assert_eq!(rule["health"], "ok", "{name}: {}", rule["lastError"]);
        let expected = match name {
            "MqttKeepaliveExpiryRateHigh" | "MqttPingsUnanswered" | "MqttBrokerNotEnforcingKeepalive" => true,
            // mosquitto decides this one: late when most of its closes were.
            "MqttBrokerEnforcesKeepaliveLate" => late / (late + on_time).max(1.0) > 0.5,
            "MqttKeepaliveCaptureDropping" | "MqttKeepaliveAgentDown" => false,
            other => panic!("untested alert {other}"),
        };
        let result = prom.query(rule["query"].as_str().unwrap());
        assert_eq!(!result.is_empty(), expected, "{name}: {result:?}");
    }
    assert!(agent.stop().success());
}
