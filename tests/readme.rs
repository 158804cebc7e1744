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
    assert!(readme.contains("cargo run --profile quick -- analyze fixtures/classic-keepalive5-silent.pcap"));
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
    assert_eq!(names.len(), 23, "{names:?}");
    assert!(readme.contains("| `mqtt_keepalive_client_expired_total` |"), "the opt-in per-client metric");
    for name in names {
        assert!(readme.contains(&format!("| `{name}` |")), "README metrics table misses {name}");
    }
}

#[test]
fn every_path_the_readme_names_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut named = 0;
    for word in readme.split(|c: char| c.is_whitespace() || "`()[],;:\"'".contains(c)) {
        let word = word.trim_end_matches('.');
        let top = ["src/", "tests/", "benches/", "fixtures/", "dashboards/", "packaging/", "deploy/", "fuzz/", ".ci/"];
        if !top.iter().any(|t| word.starts_with(t)) || word.contains('*') {
            continue;
        }
        named += 1;
        assert!(root.join(word).exists(), "README names {word}, which is not in the tree");
    }
    assert!(named > 20, "the README's paths were found ({named})");
}

#[test]
fn readme_installs_before_it_uses_the_bare_command_and_pipes_with_tcpdump_u() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let install = readme.find("cargo install --path .").expect("an install step");
    // The first command line (outside the quick start's `cargo run`) naming the binary.
    let first_use = readme
        .match_indices("mqtt-keepalive ")
        .map(|(i, _)| i)
        .find(|&i| readme[..i].ends_with('\n') || readme[..i].ends_with('`') || readme[..i].ends_with("| "))
        .expect("the README uses the command");
    assert!(install < first_use, "install at {install}, first use at {first_use}");
    for line in readme.lines().filter(|l| l.contains("tcpdump") && l.contains("-w -") && l.contains("analyze")) {
        assert!(line.contains(" -U "), "a pipe from tcpdump needs -U: {line}");
    }
}
