//! The Kubernetes manifests (deploy/kubernetes): rendered by render.py from values, for each
//! backend, and every rendered document validated offline and strictly by validate.py -
//! DaemonSet, Service and ConfigMap against the Kubernetes OpenAPI schemas of the PyPI package
//! kubernetes-validate (oldest and newest version it ships), PodMonitor and PrometheusRule against
//! prometheus-operator's CRD schemas kept in deploy/kubernetes/schemas/. What a cluster alone
//! decides (admission, PodSecurity, whether the CRDs are installed, the pods running) is not
//! tested here; tests/container_e2e.rs runs the image itself.
//! Needs python3 with PyYAML and kubernetes-validate (`pip install kubernetes-validate`); CI
//! installs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn python(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("python3")
        .args(args)
        .current_dir(repo(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is installed");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// render.py's output for the defaults overridden by `values` (YAML text; empty: defaults).
fn render(values: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let mut args = vec!["deploy/kubernetes/render.py"];
    let file = file.to_str().unwrap();
    if !values.is_empty() {
        args.extend(["--values", file]);
    }
    let o = python(&args, b"");
    assert!(o.status.success(), "render.py: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// validate.py on a YAML stream: (exit code, stdout).
fn validate(manifests: &str) -> (i32, String) {
    let o = python(&["deploy/kubernetes/validate.py", "-"], manifests.as_bytes());
    assert!(o.stderr.is_empty(), "validate.py: {}", String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), String::from_utf8(o.stdout).unwrap())
}

/// The documents of a YAML stream, as JSON (PyYAML reads it, as kubectl would).
fn documents(manifests: &str) -> Vec<serde_json::Value> {
    let o = python(
        &["-c", "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"],
        manifests.as_bytes(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn strings(v: &serde_json::Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str()).collect()).unwrap_or_default()
}

const BACKENDS: [(&str, &str); 4] = [
    ("defaults (afpacket)", ""),
    ("afpacket,ebpf (examples/tls-broker.yaml)", include_str!("../deploy/kubernetes/examples/tls-broker.yaml")),
    ("ebpf alone", "backend: ebpf\nports: [8883]\nprocess: mosquitto\n"),
    (
        "afpacket, other namespace and ports, no prometheus-operator objects",
        "namespace: mqtt\nname: ka\nports: [1883, 8883, 1884]\ninterface: eth0\nmetricsPort: 19883\n\
         podMonitor: false\nprometheusRule: false\nextraArgs: [--keep-closed, '5000']\n\
         tolerations: [{operator: Exists}]\nnodeSelector: {role: broker}\n",
    ),
];

#[test]
#[ignore = "needs python3 with PyYAML and kubernetes-validate"]
fn the_committed_manifests_are_what_render_py_writes_for_the_defaults() {
    let committed = std::fs::read_to_string(repo("deploy/kubernetes/mqtt-keepalive.yaml")).unwrap();
    assert!(
        render("") == committed,
        "deploy/kubernetes/mqtt-keepalive.yaml is stale: python3 deploy/kubernetes/render.py > deploy/kubernetes/mqtt-keepalive.yaml"
    );
    let kustomization = std::fs::read_to_string(repo("deploy/kubernetes/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("resources:\n  - mqtt-keepalive.yaml\n"));
}

#[test]
#[ignore = "needs python3 with PyYAML and kubernetes-validate"]
fn every_rendered_manifest_validates_against_the_kubernetes_and_crd_schemas() {
    for (what, values) in BACKENDS {
        let manifests = render(values);
        let (code, out) = validate(&manifests);
        assert_eq!(code, 0, "{what}:\n{out}");
        let docs = documents(&manifests);
        assert!(out.contains(&format!("{} valid, 0 invalid", docs.len())), "{what}: {out}");
        // Two Kubernetes versions (the oldest and newest schemas kubernetes-validate ships) and both CRDs.
        let versions = out.split("(Kubernetes ").nth(1).and_then(|s| s.split(';').next()).unwrap_or_default();
        assert_eq!(versions.split(", ").count(), 2, "{out}");
        assert!(out.contains("CRDs PodMonitor, PrometheusRule)"), "{out}");
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        if values.contains("podMonitor: false") {
            assert_eq!(kinds, ["DaemonSet", "Service", "ConfigMap"], "{what}");
        } else {
            assert_eq!(kinds, ["DaemonSet", "Service", "PodMonitor", "PrometheusRule", "ConfigMap"], "{what}");
        }
    }
}

#[test]
#[ignore = "needs python3 with PyYAML and kubernetes-validate"]
fn each_backend_gets_only_its_capabilities_and_namespaces() {
    for (what, values) in BACKENDS {
        let docs = documents(&render(values));
        let ds = kind(&docs, "DaemonSet");
        let pod = &ds["spec"]["template"]["spec"];
        let agent = &pod["containers"][0];
        let sc = &agent["securityContext"];
        let args = strings(&agent["args"]);
        let backend = args[args.iter().position(|a| *a == "--backend").unwrap() + 1];
        let mut want: Vec<&str> = Vec::new();
        if backend.contains("afpacket") {
            want.extend(["NET_RAW", "NET_ADMIN"]);
        }
        if backend.contains("ebpf") {
            want.extend(["BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"]);
        }
        assert_eq!(strings(&sc["capabilities"]["add"]), want, "{what}");
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{what}");
        assert_eq!((sc["privileged"].as_bool(), sc["allowPrivilegeEscalation"].as_bool()), (Some(false), Some(false)));
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(pod["hostNetwork"], true, "{what}");
        // The host PID namespace only where eBPF must find the broker's processes.
        assert_eq!(pod["hostPID"].as_bool().unwrap_or(false), backend.contains("ebpf"), "{what}");
        // ... and the node's tracefs, read-only, with it.
        let tracefs =
            pod["volumes"].as_array().is_some_and(|v| v.iter().any(|v| v["hostPath"]["path"] == "/sys/kernel/tracing"));
        assert_eq!(tracefs, backend.contains("ebpf"), "{what}");
        if tracefs {
            assert_eq!(agent["volumeMounts"][0]["readOnly"], true);
        }
        assert_eq!(args.contains(&"--interface"), backend.contains("afpacket"), "{what}: {args:?}");
        assert_eq!(args.contains(&"--process"), backend.contains("ebpf"), "{what}: {args:?}");
        // The broker ports from the values, and the metrics port everywhere it is named.
        let port = if values.contains("metricsPort: 19883") { 19883 } else { 9883 };
        assert!(args.contains(&format!("0.0.0.0:{port}").as_str()), "{what}: {args:?}");
        assert_eq!(agent["ports"][0]["containerPort"], port);
        assert_eq!(agent["ports"][0]["hostPort"], port);
        assert_eq!(kind(&docs, "Service")["spec"]["ports"][0]["port"], port);
        let ports: Vec<&str> = args.windows(2).filter(|w| w[0] == "--port").map(|w| w[1]).collect();
        let expected: Vec<&str> = match what {
            w if w.starts_with("ebpf") => vec!["8883"],
            w if w.contains("other namespace") => vec!["1883", "8883", "1884"],
            _ => vec!["1883"],
        };
        assert_eq!(ports, expected, "{what}");
        if what.contains("other namespace") {
            assert!(docs.iter().all(|d| d["metadata"]["namespace"] == "mqtt"));
            assert_eq!(args[args.len() - 2..], ["--keep-closed", "5000"]);
            assert_eq!(pod["nodeSelector"]["role"], "broker");
        }
    }
}

#[test]
#[ignore = "needs python3 with PyYAML and kubernetes-validate"]
fn the_prometheus_rule_and_dashboard_are_the_repositorys_files() {
    let docs = documents(&render(""));
    let rules = documents(&std::fs::read_to_string(repo("dashboards/alerts.yml")).unwrap());
    let fleet = documents(&std::fs::read_to_string(repo("deploy/prometheus/fleet-rules.yml")).unwrap());
    let mut groups = rules[0]["groups"].as_array().unwrap().clone();
    groups.extend(fleet[0]["groups"].as_array().unwrap().iter().cloned());
    assert_eq!(kind(&docs, "PrometheusRule")["spec"]["groups"], serde_json::Value::Array(groups));
    let cm = kind(&docs, "ConfigMap");
    assert_eq!(
        cm["data"]["mqtt-keepalive.json"].as_str().unwrap(),
        std::fs::read_to_string(repo("dashboards/mqtt-keepalive.json")).unwrap()
    );
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    // The scrape's job label is the name the alert rules expect (up{job="mqtt-keepalive"}).
    let pm = kind(&docs, "PodMonitor");
    assert_eq!(pm["spec"]["jobLabel"], "app.kubernetes.io/name");
    assert_eq!(
        kind(&docs, "DaemonSet")["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        "mqtt-keepalive"
    );
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "metrics");
}

#[test]
#[ignore = "needs python3 with PyYAML and kubernetes-validate"]
fn the_validator_rejects_what_a_cluster_would() {
    let good = render(include_str!("../deploy/kubernetes/examples/tls-broker.yaml"));
    for (from, to, expect) in [
        ("hostNetwork: true", "hostNetworks: true", "'hostNetworks' was unexpected"),
        ("            - SYS_ADMIN\n", "            - 21\n", "21 is not of type 'string'"),
        ("podMetricsEndpoints:", "podMetricEndpoints:", "'podMetricEndpoints' was unexpected"),
        ("jobLabel: app.kubernetes.io/name", "jobLabel: 5", "5 is not of type 'string'"),
        ("  - alert: MqttPingsUnanswered", "  - alrt: MqttPingsUnanswered", "'alrt' was unexpected"),
        ("  name: mqtt-keepalive-dashboard", "  nme: mqtt-keepalive-dashboard", "'nme' was unexpected"),
        (
            "  namespace: monitoring\n  labels:\n    app.kubernetes.io/name: mqtt-keepalive\n    app.kubernetes.io/component: agent\nspec:\n  jobLabel",
            "  namespace: monitoring\n  labls: {}\nspec:\n  jobLabel",
            "metadata: Additional properties are not allowed ('labls'",
        ),
    ] {
        assert!(good.contains(from), "{from}");
        let (code, out) = validate(&good.replacen(from, to, 1));
        assert_eq!(code, 1, "{to}: {out}");
        assert!(out.contains(expect), "{to}: expected {expect:?} in\n{out}");
        assert!(out.contains("4 valid, 1 invalid"), "{out}");
    }
}

#[test]
#[ignore = "needs python3 with PyYAML"]
fn render_refuses_bad_values_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (values, expect) in [
        ("backend: pcap\n", "backend must be one of afpacket, ebpf, afpacket,ebpf"),
        ("ports: [1883, 70000]\n", "ports must be a list of TCP ports"),
        ("ports: []\n", "ports must name at least one broker port"),
        ("bakend: ebpf\n", "unknown values bakend"),
        ("- a list\n", "values must be a mapping"),
    ] {
        let file = dir.path().join("v.yaml");
        std::fs::write(&file, values).unwrap();
        let o = python(&["deploy/kubernetes/render.py", "--values", file.to_str().unwrap()], b"");
        assert_eq!(o.status.code(), Some(2), "{values}");
        assert!(o.stdout.is_empty());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(expect) && !err.contains("Traceback"), "{values}: {err}");
    }
}
