//! The README's quick start stays true: its quoted output is what the command prints.

use std::process::Command;

#[test]
fn readme_shows_the_real_output_of_the_quick_start_command() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = readme
        .split("<!-- classic-output:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- classic-output:end -->").next())
        .expect("README has the classic-output block");
    let quoted = block.trim().trim_start_matches("```text").trim_end_matches("```").trim();
    assert!(readme.contains("cargo run --release -- analyze fixtures/classic-keepalive5-silent.pcap"));
    let out = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["analyze", "fixtures/classic-keepalive5-silent.pcap"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), quoted);
}

#[test]
fn readme_metrics_table_lists_every_exposed_metric() {
    use mqtt_keepalive::sink::metrics::Metrics;
    use prometheus_client::registry::Registry;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut registry = Registry::default();
    let _metrics = Metrics::new(&mut registry, 5);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let exposed = mqtt_keepalive::sink::metrics::openmetrics_to_prometheus(&text);
    let names: Vec<&str> =
        exposed.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(names.len(), 19, "{names:?}");
    assert!(readme.contains("| `mqtt_keepalive_client_expired_total` |"), "the opt-in per-client metric");
    for name in names {
        assert!(readme.contains(&format!("| `{name}` |")), "README metrics table misses {name}");
    }
}
