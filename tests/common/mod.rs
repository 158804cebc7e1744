//! Helpers shared by the integration tests.
#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // waits on real processes and measures real time

use mqtt_keepalive::app::{self, AnalyzeOptions};
use mqtt_keepalive::flow::PortSet;
use mqtt_keepalive::session::{Event, EventKind};
use mqtt_keepalive::sink::Sink;
use mqtt_keepalive::sink::report::{AnalysisReport, SessionRecord};
use mqtt_keepalive::tracker::TrackerConfig;
use std::path::{Path, PathBuf};

/// Path of a file in `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// Every event, in emission order.
#[derive(Default)]
pub struct Collect(pub Vec<Event>);

impl Sink for Collect {
    fn on_event(&mut self, event: &Event) -> std::io::Result<()> {
        self.0.push(event.clone());
        Ok(())
    }
}

/// Analyses files with default rules on `ports`; returns the report and every event.
///
/// Every analysis runs twice: as configured, and with every idle connection parked
/// (`active_limit: 0`); parking must change nothing, so both must give the same report and events.
pub fn analyze_with(files: &[PathBuf], tracker: TrackerConfig, ports: &[u16]) -> (AnalysisReport, Vec<Event>) {
    let run = |tracker: TrackerConfig| {
        let mut events = Collect::default();
        let opts = AnalyzeOptions {
            files: files.to_vec(),
            tracker: TrackerConfig { ports: PortSet::new(ports), ..tracker },
            ports: ports.to_vec(),
            progress: false,
        };
        let report = app::analyze(opts, &mut [&mut events as &mut dyn Sink]).expect("analysis succeeds");
        (report, events.0)
    };
    let (report, events) = run(tracker.clone());
    let (parked, parked_events) = run(TrackerConfig { active_limit: 0, ..tracker });
    assert_eq!(
        serde_json::to_value(&parked).unwrap(),
        serde_json::to_value(&report).unwrap(),
        "parking idle connections changed the report"
    );
    assert!(parked_events == events, "parking idle connections changed the events");
    (report, events)
}

/// Analyses one fixture with default rules.
pub fn analyze_fixture(name: &str) -> (AnalysisReport, Vec<Event>) {
    analyze_with(&[fixture(name)], TrackerConfig::default(), &mqtt_keepalive::tracker::DEFAULT_PORTS)
}

/// Writes capture bytes to a temporary file and analyses it with default rules.
pub fn analyze_bytes(bytes: &[u8]) -> (AnalysisReport, Vec<Event>) {
    analyze_bytes_with(bytes, TrackerConfig::default())
}

pub fn analyze_bytes_with(bytes: &[u8], tracker: TrackerConfig) -> (AnalysisReport, Vec<Event>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.pcap");
    std::fs::write(&path, bytes).unwrap();
    analyze_with(&[path], tracker, &[1883])
}

/// The only session of a report.
pub fn only_session(report: &AnalysisReport) -> &SessionRecord {
    assert_eq!(report.sessions.len(), 1, "expected one session: {}", report.render_text());
    &report.sessions[0]
}

/// Events of one session with the given kind name.
pub fn events_named<'a>(events: &'a [Event], session: u64, name: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.session == session && e.kind.as_str() == name).collect()
}

/// Timestamp (seconds) of the session's CONNECT.
pub fn connect_time(events: &[Event], session: u64) -> f64 {
    events_named(events, session, "connect")[0].ts.as_secs_f64()
}

/// The close event's fields.
pub fn close_of(events: &[Event], session: u64) -> &EventKind {
    &events_named(events, session, "close")[0].kind
}

/// A minimal HTTP/1.0 GET: (status, content type, body).
pub fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<(u16, String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n{accept}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The value of one sample in a Prometheus text exposition (0 when absent).
pub fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// A mosquitto broker on loopback, stopped on drop.
pub struct Mosquitto {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    pub fn start(extra_config: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra_config}\n")).unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is installed");
        let broker = Mosquitto { port, child, _dir: dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("mosquitto did not start on port {port}"); // dropping `broker` stops it
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs fixtures/mqtt_client.py with arguments, in the background.
pub fn mqtt_client(port: u16, args: &[&str]) -> std::process::Child {
    std::process::Command::new("python3")
        .arg(fixture("mqtt_client.py"))
        .args(["--port", &port.to_string()])
        .args(args)
        .spawn()
        .expect("python3 runs the scripted client")
}

/// fixtures/mqtt_client.py over TLS to `port`, trusting `ca`, its secrets appended to
/// `keylog`, in the background.
pub fn tls_client(port: u16, ca: &std::path::Path, keylog: &std::path::Path, args: &[&str]) -> std::process::Child {
    std::process::Command::new("python3")
        .arg(fixture("mqtt_client.py"))
        .args(["--port", &port.to_string(), "--tls"])
        .arg(ca)
        .arg("--keylog")
        .arg(keylog)
        .args(args)
        .spawn()
        .expect("python3 runs the scripted client")
}

/// A child process killed and reaped when dropped (also when a test panics).
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent binary running `live` on `lo`, killed on drop.
pub struct Agent {
    child: std::process::Child,
    pub listen: std::net::SocketAddr,
}

impl Agent {
    pub fn start(ports: &[u16], events: &std::path::Path) -> Agent {
        Agent::start_with(ports, events, &[])
    }

    pub fn start_with(ports: &[u16], events: &std::path::Path, extra: &[&str]) -> Agent {
        let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"));
        cmd.args(["live", "-i", "lo", "--listen", &listen.to_string(), "--events"]).arg(events).args(extra);
        for p in ports {
            cmd.args(["--port", &p.to_string()]);
        }
        let child = cmd.stderr(std::process::Stdio::null()).spawn().unwrap();
        let agent = Agent { child, listen };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if matches!(http_get(listen, "/healthz", None), Ok((200, _, _))) {
                return agent;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("agent not healthy");
    }

    pub fn get(&self, path: &str) -> String {
        let (status, _, body) = http_get(self.listen, path, None).unwrap();
        assert_eq!(status, 200, "{path}");
        body
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A broker that answers CONNECT with CONNACK and then never closes anything.
pub fn fake_broker() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 256];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = std::io::Write::write_all(&mut s, &[0x20, 0x02, 0x00, 0x00]);
            held.push(s);
        }
    });
    port
}

pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// Runs openssl with `args` in `dir`, panicking with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for localhost / 127.0.0.1 in `dir` (as `fixtures/record.sh`
/// makes them); returns the CA certificate's path.
pub fn make_certificates(dir: &Path) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=tls_live test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
    // mosquitto started as root drops to its own user: it must read the directory and the key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    dir.join("ca.crt")
}

/// Whether a TCP socket listens on `port` (IPv4), from `/proc/net/tcp`.
pub fn listening(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        let local_port = fields.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
        local_port == Some(port) && fields.get(3) == Some(&"0A")
    })
}

/// mosquitto with a TLS listener on a loopback port (certificates from [`make_certificates`]
/// in `dir`), killed on drop.
pub struct TlsBroker {
    pub port: u16,
    pub child: Reaped,
}

impl TlsBroker {
    /// `mosquitto` with only a TLS listener on a free port.
    pub fn start(dir: &Path) -> TlsBroker {
        TlsBroker::start_with(dir, Path::new("mosquitto"), free_port(), "")
    }

    /// `program` (mosquitto or a copy of it) with a TLS listener on `port` and `extra_config`
    /// after it (its own `listener` lines add listeners without TLS); the configuration is
    /// `dir/mosquitto-PORT.conf`, the same for a broker started again on the same port.
    pub fn start_with(dir: &Path, program: &Path, port: u16, extra_config: &str) -> TlsBroker {
        let conf = dir.join(format!("mosquitto-{port}.conf"));
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {d}/ca.crt\ncertfile {d}/server.crt\n\
                 keyfile {d}/server.key\n{extra_config}\n"
            ),
        )
        .unwrap();
        let spawn = || {
            std::process::Command::new(program)
                .arg("-c")
                .arg(&conf)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
        };
        // A program copied just now (a broker under another name) may still be open for writing
        // in a child another test thread forked meanwhile, until it execs: ETXTBSY, briefly.
        let mut child = spawn();
        for _ in 0..50 {
            match &child {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    child = spawn();
                }
                _ => break,
            }
        }
        let child = child.expect("mosquitto is installed");
        let broker = TlsBroker { port, child: Reaped(child) };
        // Not by connecting: a bare TCP connection would show in a capture or to an agent.
        wait_for("mosquitto's TLS listener", std::time::Duration::from_secs(5), || listening(port));
        broker
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process (still running: it is reaped only on drop).
        unsafe { libc::kill(self.child.0.id() as i32, signal) };
    }
}

/// A real Prometheus scraping `agent` every second (job `mqtt-keepalive`) with `rule_files`
/// loaded, its data in a temporary directory; killed when dropped.
pub struct Prometheus {
    pub addr: std::net::SocketAddr,
    _child: Reaped,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts it and waits until it is ready. Files that `rule_files` names may live in
    /// `dir`, which it keeps.
    pub fn start(agent: std::net::SocketAddr, rule_files: &[PathBuf], dir: tempfile::TempDir) -> Prometheus {
        let config = dir.path().join("prometheus.yml");
        let rules: Vec<String> = rule_files.iter().map(|p| p.display().to_string()).collect();
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 rule_files: [{}]\n\
                 scrape_configs:\n  - job_name: mqtt-keepalive\n    static_configs: [{{targets: [\"{agent}\"]}}]\n",
                rules.join(", ")
            ),
        )
        .unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus is installed");
        let p = Prometheus { addr, _child: Reaped(child), _dir: dir };
        wait_for("prometheus ready", std::time::Duration::from_secs(30), || {
            matches!(http_get(addr, "/-/ready", None), Ok((200, _, _)))
        });
        p
    }

    /// Runs an instant query; panics unless Prometheus accepts it.
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", urlencode(expr));
        let (status, _, body) = http_get(self.addr, &path, None).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{expr}: {body}"));
        assert_eq!((status, doc["status"].as_str()), (200, Some("success")), "{expr}: {body}");
        doc["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The first sample's value, `None` when the query returns nothing.
    pub fn value(&self, expr: &str) -> Option<f64> {
        self.query(expr).first().and_then(|r| r["value"][1].as_str()?.parse().ok())
    }
}

/// Percent-encodes a query parameter.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
