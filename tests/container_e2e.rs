//! The agent's container image (packaging/container), run as a fleet runs it: built by podman
//! FROM scratch from the binary cargo built for these tests (not a second, tuned build), then run
//! with host networking and only the capabilities its backend needs, beside a real mosquitto,
//! while a real Prometheus scrapes it and evaluates dashboards/alerts.yml and
//! deploy/prometheus/fleet-rules.yml. The eBPF backend runs in the image too, with the host's PID
//! namespace and tracefs, against mosquitto's TLS listener.
//!
//! Where this stops short of a cluster: podman, not a kubelet, starts the container (the same OCI
//! runtime, capabilities, host network and host PID settings the DaemonSet asks for, but no
//! API server, admission or PodSecurity, and no image registry); Prometheus scrapes a static
//! target, not pods a PodMonitor selected; the manifests themselves are only validated
//! (tests/deploy.rs). Needs root, podman (and a runtime that works on the host: CI's setup says
//! which), mosquitto, prometheus and python3; CI installs them.

#![allow(clippy::disallowed_methods)] // waits on real processes (podman, Prometheus) in real time

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman").args(args).stdin(Stdio::null()).output().expect("podman is installed")
}

/// The image, built once per test process from this build's agent binary; removed on drop.
struct Image(String);

impl Image {
    fn build(tag: &str) -> Image {
        let tag = format!("localhost/mqtt-keepalive-test:{tag}-{}", std::process::id());
        let o = Command::new("bash")
            .arg(repo("packaging/container/build.sh"))
            .arg(env!("CARGO_BIN_EXE_mqtt-keepalive"))
            .arg(&tag)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "build.sh: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().last(), Some(tag.as_str()));
        Image(tag)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

/// A detached container, removed (killed) on drop; its log is printed if a test fails.
struct Container(String);

impl Container {
    fn run(name: &str, options: &[&str], image: &Image, args: &[&str]) -> Container {
        let name = format!("mk-test-{name}-{}", std::process::id());
        let _ = podman(&["rm", "-f", "-t", "0", &name]);
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend(options);
        all.push(&image.0);
        all.extend(args);
        let o = podman(&all);
        assert!(o.status.success(), "podman run: {}", String::from_utf8_lossy(&o.stderr));
        Container(name)
    }

    fn logs(&self) -> String {
        let o = podman(&["logs", &self.0]);
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    }

    fn wait_healthy(&self, listen: std::net::SocketAddr) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if matches!(http_get(listen, "/healthz", None), Ok((200, _, _))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the agent in {} is not healthy:\n{}", self.0, self.logs());
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of {}:\n{}", self.0, self.logs());
        }
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

/// The image's entrypoint run to completion (`podman run --rm`): exit code and output.
fn run_once(options: &[&str], image: &Image, args: &[&str]) -> (i32, String) {
    let mut all = vec!["run", "--rm"];
    all.extend(options);
    all.push(&image.0);
    all.extend(args);
    let o = podman(&all);
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
    )
}

#[test]
#[ignore = "needs root and podman"]
fn the_image_holds_the_agent_and_its_libraries_and_nothing_else() {
    let image = Image::build("contents");
    let name = format!("mk-test-contents-{}", std::process::id());
    assert!(podman(&["create", "--name", &name, &image.0]).status.success());
    let tar = podman(&["export", &name]);
    let _ = podman(&["rm", "-f", &name]);
    assert!(tar.status.success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rootfs.tar"), &tar.stdout).unwrap();
    let list = Command::new("tar").arg("tf").arg(dir.path().join("rootfs.tar")).output().unwrap();
    let files: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(|l| l.trim_start_matches("./").to_string())
        .collect();
    // podman adds its own mount points for these; everything else is what build.sh put there.
    let ours: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| !matches!(*f, "etc/hosts" | "etc/resolv.conf" | "etc/hostname" | "run/.containerenv"))
        .collect();
    for expected in ["usr/local/bin/mqtt-keepalive", "etc/passwd", "etc/group", "etc/nsswitch.conf", "lib", "lib64"] {
        assert!(ours.contains(&expected), "{expected} missing from {ours:?}");
    }
    let libraries: Vec<&&str> = ours.iter().filter(|f| f.starts_with("usr/lib")).collect();
    assert!(libraries.iter().any(|f| f.ends_with("/libc.so.6")), "{libraries:?}");
    assert!(libraries.iter().any(|f| f.ends_with("/ld-linux-x86-64.so.2")), "{libraries:?}");
    assert_eq!(ours.len(), 6 + libraries.len(), "unexpected files: {ours:?}");
    assert!(!files.iter().any(|f| f.ends_with("bin/sh") || f.contains("apt") || f.contains("dpkg")), "{files:?}");
    // The Debian packages the libraries came from, named in a label.
    let label =
        podman(&["image", "inspect", "--format", "{{index .Labels \"io.mqtt-keepalive.debian-packages\"}}", &image.0]);
    assert!(String::from_utf8_lossy(&label.stdout).contains("libc6="), "{}", String::from_utf8_lossy(&label.stdout));
    // It runs: the entrypoint is the agent.
    let (code, out) = run_once(&["--network=none", "--cap-drop=all"], &image, &["--version"]);
    assert_eq!((code, out.trim()), (0, format!("mqtt-keepalive {}", env!("CARGO_PKG_VERSION")).as_str()));
}

#[test]
#[ignore = "needs root, podman, mosquitto, prometheus and python3"]
fn the_image_with_only_cap_net_raw_watches_a_real_broker_and_prometheus_scrapes_it() {
    let image = Image::build("afpacket");
    let broker = Mosquitto::start("");
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let args = ["live", "-i", "lo", "--port", &broker.port.to_string(), "--listen", &listen.to_string()];

    // Without CAP_NET_RAW it cannot capture, and says so.
    let (code, out) = run_once(&["--network=host", "--cap-drop=all", "--read-only"], &image, &args);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("permission denied opening a packet socket on lo") && out.contains("CAP_NET_RAW"), "{out}");

    // With CAP_NET_RAW alone (no CAP_NET_ADMIN: the socket buffer stays at the system's
    // maximum), host networking, a read-only root: it works.
    let agent = Container::run(
        "afpacket",
        &["--network=host", "--cap-drop=all", "--cap-add=NET_RAW", "--read-only"],
        &image,
        &args,
    );
    agent.wait_healthy(listen);
    // The fleet recording rules' 30 s group interval made 1 s, so the test need not wait for it.
    let dir = tempfile::tempdir().unwrap();
    let fleet = std::fs::read_to_string(repo("deploy/prometheus/fleet-rules.yml")).unwrap();
    assert!(fleet.contains("interval: 30s"));
    std::fs::write(dir.path().join("fleet-rules.yml"), fleet.replace("interval: 30s", "interval: 1s")).unwrap();
    let rules = [repo("dashboards/alerts.yml"), dir.path().join("fleet-rules.yml")];
    let prom = Prometheus::start(listen, &rules, dir);
    wait_for("the first scrape", Duration::from_secs(30), || prom.value("up{job=\"mqtt-keepalive\"}") == Some(1.0));

    let mut clients = [
        mqtt_client(
            broker.port,
            &["--keepalive", "2", "--client-id", "pinger", "pings:3:1", "sleep:0.5", "disconnect"],
        ),
        // Silent: expires at 3 s, mosquitto closes it.
        mqtt_client(broker.port, &["--keepalive", "2", "--client-id", "silent", "wait-close:20"]),
    ];
    for c in &mut clients {
        assert!(c.wait().unwrap().success());
    }
    // What the agent in the container saw, as Prometheus has it.
    for (expr, what) in [
        ("sum(mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tcp\"})", "two connects"),
        ("sum(mqtt_keepalive_expired_total)", "the silent client's expiry"),
        ("sum(mqtt_keepalive_ping_rtt_seconds_count)", "three ping round trips"),
        ("sum(mqtt_keepalive_closes_total{kind=\"disconnect\",by=\"client\"})", "the pinger's DISCONNECT"),
        ("sum(mqtt_keepalive_closes_total{by=\"broker\"})", "the broker's close of the silent client"),
    ] {
        let want = match what {
            "two connects" => 2.0,
            "three ping round trips" => 3.0,
            _ => 1.0,
        };
        let mut last = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while last != Some(want) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            last = prom.value(expr);
        }
        assert_eq!(last, Some(want), "{what}: {expr}");
    }
    // The fleet recording rules, evaluated over this one agent.
    wait_for("the fleet recording rules", Duration::from_secs(30), || {
        prom.value("job:mqtt_keepalive_agents_up:sum{job=\"mqtt-keepalive\"}") == Some(1.0)
            && prom.value("job:mqtt_keepalive_agents:count") == Some(1.0)
            && prom.value("job:mqtt_keepalive_expired:rate5m").is_some_and(|v| v > 0.0)
            && prom.value("job:mqtt_keepalive_ping_rtt_seconds:p95_5m").is_some_and(|v| v > 0.0 && v < 1.0)
            && prom.value("job:mqtt_keepalive_expired_per_open_session:ratio10m").is_some_and(|v| v > 0.0)
            && prom.value("sum(job_verdict:mqtt_keepalive_enforcement:rate5m)").is_some_and(|v| v > 0.0)
    });
    // The sessions the agent in the container kept, by its own HTTP API.
    let (status, _, sessions) = http_get(listen, "/sessions", None).unwrap();
    assert_eq!(status, 200);
    assert!(sessions.contains("\"silent\"") && sessions.contains("\"pinger\""), "{sessions}");
}

#[test]
#[ignore = "needs root, podman, mosquitto with TLS, openssl, python3 and a kernel with uprobes and BTF"]
fn the_image_runs_the_ebpf_backend_with_its_capabilities_and_the_host_pid_namespace() {
    let image = Image::build("ebpf");
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let broker = TlsBroker::start(dir.path());
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let pid = broker.pid().to_string();
    let args = [
        "live",
        "--backend",
        "ebpf",
        "--port",
        &broker.port.to_string(),
        "--pid",
        &pid,
        "--listen",
        &listen.to_string(),
    ];
    let tracefs = "--volume=/sys/kernel/tracing:/sys/kernel/tracing:ro";
    let caps = "--cap-add=BPF,PERFMON,SYS_ADMIN,SYS_PTRACE";

    // Without CAP_SYS_ADMIN, or in its own PID namespace, it refuses with the reason.
    let (code, out) = run_once(
        &["--network=host", "--pid=host", "--cap-drop=all", "--cap-add=BPF,PERFMON,SYS_PTRACE", "--read-only", tracefs],
        &image,
        &args,
    );
    assert!(code != 0 && out.contains("missing: CAP_SYS_ADMIN"), "{code}: {out}");
    let (code, out) = run_once(&["--network=host", "--cap-drop=all", caps, "--read-only", tracefs], &image, &args);
    assert!(code != 0 && out.contains(&pid), "{code}: {out}");

    let agent = Container::run(
        "ebpf",
        &["--network=host", "--pid=host", "--cap-drop=all", caps, "--read-only", tracefs],
        &image,
        &args,
    );
    agent.wait_healthy(listen);
    let keylog = dir.path().join("keys.log");
    let mut client = tls_client(
        broker.port,
        &ca,
        &keylog,
        &["--keepalive", "5", "--client-id", "tls-pinger", "pings:2:0.5", "sleep:0.5", "disconnect"],
    );
    assert!(client.wait().unwrap().success());
    // The MQTT inside TLS, read by the probes from the container: CONNECT, two ping round trips
    // and the DISCONNECT of a TLS session.
    wait_for("the TLS session's close", Duration::from_secs(20), || {
        let (_, _, metrics) = http_get(listen, "/metrics", None).unwrap();
        sample(&metrics, "mqtt_keepalive_closes_total{kind=\"disconnect\",by=\"client\",transport=\"tls\"}") == 1.0
    });
    let (_, _, metrics) = http_get(listen, "/metrics", None).unwrap();
    assert_eq!(
        sample(&metrics, "mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tls\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "mqtt_keepalive_ping_rtt_seconds_count"), 2.0, "{metrics}");
    assert!(agent.logs().contains("eBPF probes attached"), "{}", agent.logs());
}
