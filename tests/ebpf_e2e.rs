//! The eBPF backend end to end, as root, against a real mosquitto with a TLS listener (a CA and
//! a server certificate made here with openssl) and real TLS clients (fixtures/mqtt_client.py,
//! which also writes its secrets to a key log, and mosquitto_sub). The agent reads the MQTT
//! inside TLS from mosquitto's libssl calls, with no keys: the seed experiment (a silent client
//! expired on the clock, then closed by the broker), healthy pings and their round trips, a
//! DISCONNECT, a client killed, MQTT 5 Server Keep Alive, a connection older than the agent, a
//! broker restarted under the agent, both ways of tying SSL calls to sockets, both backends in
//! one agent, and the setup errors. A tcpdump capture of the same traffic, decrypted offline
//! with the clients' key log, must give the same verdicts.
//! Needs root (eBPF, packet capture), mosquitto (mosquitto_sub), openssl, tcpdump and python3.
#![allow(clippy::disallowed_methods)] // waits on real processes and compares with the real-time clock

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

/// `live --backend ebpf` on one broker port, its events in `DIR/NAME.jsonl` and its stderr in
/// `DIR/NAME.stderr`; killed on drop.
struct EbpfAgent {
    child: Reaped,
    listen: std::net::SocketAddr,
    events: PathBuf,
    stderr: PathBuf,
}

impl EbpfAgent {
    /// Starts the agent with `extra` arguments and waits until its probes are attached.
    fn start(dir: &Path, name: &str, args: &[&str]) -> EbpfAgent {
        Self::start_env(dir, name, args, &[])
    }

    /// [`EbpfAgent::start`] with environment variables.
    fn start_env(dir: &Path, name: &str, args: &[&str], env: &[(&str, &str)]) -> EbpfAgent {
        let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let events = dir.join(format!("{name}.jsonl"));
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
            .envs(env.iter().copied())
            .args(["live", "--listen", &listen.to_string(), "--events"])
            .arg(&events)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut agent = EbpfAgent { child: Reaped(child), listen, events, stderr };
        wait_for("the eBPF agent's probes and /healthz", Duration::from_secs(20), || {
            if let Ok(Some(status)) = agent.child.0.try_wait() {
                panic!("the agent exited with {status}: {}", agent.stderr());
            }
            agent.stderr().contains("eBPF probes attached")
                && matches!(http_get(listen, "/healthz", None), Ok((200, _, _)))
        });
        agent
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn get(&self, path: &str) -> String {
        let (status, _, body) = http_get(self.listen, path, None).unwrap();
        assert_eq!(status, 200, "{path}");
        body
    }

    fn metric(&self, series: &str) -> f64 {
        sample(&self.get("/metrics"), series)
    }

    /// Waits until `/sessions` satisfies `f`; panics with them if it does not within 10 s.
    fn wait_sessions(&self, what: &str, mut f: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.sessions();
            if f(&s) {
                return s;
            }
            if std::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}: {s:#?}\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `/sessions`: open and recently closed.
    fn sessions(&self) -> Vec<Value> {
        let doc: Value = serde_json::from_str(&self.get("/sessions")).unwrap();
        doc["sessions"].as_array().unwrap().clone()
    }

    /// Stops the agent (SIGTERM): its exit status and every event it wrote.
    fn stop(mut self) -> (ExitStatus, Vec<Value>) {
        // SAFETY: signalling our own child process (still running: it is reaped only on drop).
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGTERM) };
        let status = self.child.0.wait().unwrap();
        let text = std::fs::read_to_string(&self.events).unwrap();
        (status, text.lines().map(|l| serde_json::from_str(l).unwrap()).collect())
    }
}

/// [`tls_client`], killed and reaped on drop.
fn tls_reaped(port: u16, ca: &Path, keylog: &Path, args: &[&str]) -> Reaped {
    Reaped(tls_client(port, ca, keylog, args))
}

fn wait_success(client: &mut Reaped, what: &str) {
    let status = client.0.wait().unwrap();
    assert!(status.success(), "{what}: {status}");
}

/// The session number of the client whose CONNECT carried `id`.
fn session_of(events: &[Value], id: &str) -> Option<Value> {
    events.iter().find(|e| e["kind"] == "connect" && e["client_id"] == id).map(|e| e["session"].clone())
}

/// The events of one session.
fn of_session<'a>(events: &'a [Value], session: &Value) -> Vec<&'a Value> {
    events.iter().filter(|e| e["session"] == *session).collect()
}

/// The first event of `kind` of a session.
fn first<'a>(events: &[&'a Value], kind: &str) -> Option<&'a Value> {
    events.iter().copied().find(|e| e["kind"] == kind)
}

fn count(events: &[&Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

fn by_client_id<'a>(sessions: &'a [Value], id: &str) -> &'a Value {
    sessions.iter().find(|s| s["client_id"] == id).unwrap_or_else(|| panic!("{id} in /sessions: {sessions:#?}"))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The seed experiment and the common closes, decrypted nowhere: a silent client (keepalive 5)
/// expires on the clock while mosquitto is stopped, and mosquitto closes it once it runs again; a
/// healthy client pings with round trips and DISCONNECTs; a client is killed (its kernel sends
/// the FIN); an MQTT 5 client asking for 60 s gets Server Keep Alive 10. A tcpdump capture of the same traffic, analysed
/// with the key log, gives the same verdicts per connection.
#[test]
#[ignore = "needs root (eBPF)"]
fn ebpf_agent_reports_tls_sessions_as_a_decrypted_capture_does() {
    tls_sessions_as_a_decrypted_capture(Probes::Inner);
}

/// The same with the probes on the exported SSL functions (the placement where a libssl's
/// inner functions are not found).
#[test]
#[ignore = "needs root (eBPF)"]
fn ebpf_agent_on_the_exported_ssl_functions_reports_as_a_decrypted_capture_does() {
    tls_sessions_as_a_decrypted_capture(Probes::Exported);
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Probes {
    Inner,
    Exported,
}

fn tls_sessions_as_a_decrypted_capture(probes: Probes) {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let broker = TlsBroker::start_with(dir.path(), Path::new("mosquitto"), free_port(), "max_keepalive 10");
    let port = broker.port.to_string();
    let keylog = dir.path().join("keys.log");
    let pcap = dir.path().join("same-traffic.pcap");
    let tcpdump_err = dir.path().join("tcpdump.stderr");
    let tcpdump = Command::new("tcpdump")
        .args(["-i", "lo", "-U", "--immediate-mode", "-w"])
        .arg(&pcap)
        .arg(format!("tcp port {port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&tcpdump_err).unwrap())
        .spawn()
        .expect("tcpdump is installed");
    let mut tcpdump = Reaped(tcpdump);
    let env: &[(&str, &str)] =
        if probes == Probes::Exported { &[(mqtt_keepalive::capture::ebpf::EXPORTED_PROBES_ENV, "1")] } else { &[] };
    let agent = EbpfAgent::start_env(
        dir.path(),
        "agent",
        &["--backend", "ebpf", "--port", &port, "--pid", &broker.pid().to_string()],
        env,
    );
    let placement = match probes {
        Probes::Inner => "probing libssl's inner read and write functions",
        Probes::Exported => "probing libssl's exported SSL_read",
    };
    assert!(agent.stderr().contains(placement), "{probes:?}: {}", agent.stderr());
    wait_for("tcpdump listening", Duration::from_secs(10), || {
        std::fs::read_to_string(&tcpdump_err).unwrap_or_default().contains("listening on")
    });

    let mut silent = tls_reaped(
        broker.port,
        &ca,
        &keylog,
        &["--keepalive", "5", "--client-id", "silent", "--will", "wait-close:40"],
    );
    let mut healthy = tls_reaped(
        broker.port,
        &ca,
        &keylog,
        &["--keepalive", "5", "--client-id", "healthy", "pings:3:1", "sleep:0.5", "disconnect"],
    );
    let mut capped = tls_reaped(
        broker.port,
        &ca,
        &keylog,
        &["--version", "5", "--keepalive", "60", "--client-id", "capped", "ping", "sleep:0.5", "disconnect"],
    );
    let mut killed =
        tls_reaped(broker.port, &ca, &keylog, &["--keepalive", "5", "--client-id", "killed", "--will", "sleep:60"]);

    // The killed client: SIGKILL once mosquitto has answered its CONNECT.
    wait_for("the CONNACKs of killed and silent", Duration::from_secs(10), || {
        let s = agent.sessions();
        ["killed", "silent"].iter().all(|id| s.iter().any(|x| x["client_id"] == *id && x["connack_code"] == 0))
    });
    std::thread::sleep(Duration::from_millis(300));
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    wait_success(&mut healthy, "healthy");
    wait_success(&mut capped, "capped");
    let s = agent.wait_sessions("the killed client's close", |s| by_client_id(s, "killed")["close"]["kind"] != "open");
    let killed_close = &by_client_id(&s, "killed")["close"];
    assert_eq!((killed_close["kind"].as_str(), killed_close["by"].as_str()), (Some("fin"), Some("client")), "{s:#?}");

    // mosquitto stopped: no packet at all flows when the silent client's deadline passes; its
    // expiry must come from the agent's clock.
    let stopped_at = unix_now();
    broker.signal(libc::SIGSTOP);
    let silent_now = by_client_id(&agent.sessions(), "silent").clone();
    assert_eq!((silent_now["expired"].as_bool(), silent_now["close"]["kind"].as_str()), (Some(false), Some("open")));
    assert!(stopped_at < silent_now["started"].as_f64().unwrap() + 7.0, "stopped before mosquitto could close it");
    wait_for("the silent client's expiry while mosquitto is stopped", Duration::from_secs(10), || {
        agent.metric("mqtt_keepalive_expired_total{transport=\"tls\"}") >= 1.0
    });
    let expiry_seen = unix_now();
    let during = by_client_id(&agent.sessions(), "silent").clone();
    assert_eq!((during["expired"].as_bool(), during["close"]["kind"].as_str()), (Some(true), Some("open")), "{during}");
    assert_eq!(agent.metric("mqtt_keepalive_sessions_expired_open"), 1.0);
    // mosquitto resumes 1.5 s after the deadline: its close is late, in both analyses.
    let deadline = silent_now["started"].as_f64().unwrap() + 7.5;
    std::thread::sleep(Duration::from_secs_f64((deadline + 1.5 - unix_now()).max(0.0)));
    broker.signal(libc::SIGCONT);
    wait_success(&mut silent, "mosquitto closed the silent client");
    wait_for("the silent client's close", Duration::from_secs(5), || {
        by_client_id(&agent.sessions(), "silent")["close"]["kind"] != "open"
    });
    std::thread::sleep(Duration::from_millis(300)); // the last packets into tcpdump's file

    let metrics = agent.get("/metrics");
    let m = |series: &str| sample(&metrics, series);
    assert_eq!(m("mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tls\"}"), 3.0, "{metrics}");
    assert_eq!(m("mqtt_keepalive_connects_total{protocol=\"5.0\",transport=\"tls\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"request\"}"), 4.0, "healthy's 3, capped's 1");
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"response\"}"), 4.0);
    assert_eq!(m("mqtt_keepalive_ping_rtt_seconds_count"), 4.0);
    assert!(m("mqtt_keepalive_ping_rtt_seconds_sum") > 0.0);
    assert_eq!(m("mqtt_keepalive_pings_unanswered_total"), 0.0);
    assert_eq!(m("mqtt_keepalive_expired_total{transport=\"tls\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"close_notify\",by=\"broker\",transport=\"tls\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"fin\",by=\"client\",transport=\"tls\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"disconnect\",by=\"client\",transport=\"tls\"}"), 2.0);
    assert_eq!(m("mqtt_keepalive_closes_without_disconnect_total"), 2.0, "silent and killed");
    assert_eq!(m("mqtt_keepalive_enforcement_total{verdict=\"late\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_effective_keepalive_seconds_count"), 4.0);
    assert_eq!(m("mqtt_keepalive_effective_keepalive_seconds_sum"), 3.0 * 5.0 + 10.0);
    assert_eq!(m("mqtt_keepalive_sessions_open"), 0.0);
    assert_eq!(m("mqtt_keepalive_sessions_expired_open"), 0.0);
    assert_eq!(m("mqtt_keepalive_capture_dropped_packets_total"), 0.0);
    let live = agent.sessions();
    assert_eq!(live.len(), 4, "{live:#?}");

    // SAFETY: signalling our own child process.
    unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
    tcpdump.0.wait().unwrap();
    let (status, events) = agent.stop();
    assert!(status.success(), "SIGTERM ends the agent with status 0: {status:?}");
    let session = |id: &str| of_session(&events, &session_of(&events, id).unwrap_or_else(|| panic!("{id}'s CONNECT")));
    for e in &events {
        assert_ne!(e["kind"], "gap", "no plaintext lost: {e}");
        assert_ne!(e["kind"], "malformed", "{e}");
    }

    // 1. The seed experiment: expired at CONNECT + 7.5 s, on the clock (seen within a second of
    //    the deadline while mosquitto was stopped), then closed by mosquitto, late: with its TLS
    //    close_notify (SSL_shutdown), as the decrypted capture below reports it.
    let s = session("silent");
    let connect = first(&s, "connect").unwrap();
    assert_eq!((connect["keepalive_s"].as_u64(), connect["will"].as_bool()), (Some(5), Some(true)));
    assert_eq!(first(&s, "session_start").unwrap()["mid_stream"], false);
    assert_eq!(first(&s, "transport").unwrap()["transport"], "tls");
    let expired = first(&s, "keepalive_expired").expect("the silent client expired");
    let last_activity = expired["last_activity"].as_f64().unwrap();
    assert_eq!(last_activity, connect["ts"].as_f64().unwrap(), "its CONNECT was its last activity");
    assert!(
        (expired["ts"].as_f64().unwrap() - (last_activity + 7.5)).abs() < 1e-5,
        "stamped with the deadline: {expired}"
    );
    let deadline = last_activity + 7.5;
    assert!(
        expiry_seen >= deadline && expiry_seen < deadline + 1.0,
        "the expiry was reported {:.3} s after its deadline, while no packet flowed",
        expiry_seen - deadline
    );
    let close = first(&s, "close").unwrap();
    assert_eq!((close["close"].as_str(), close["by"].as_str()), (Some("close_notify"), Some("broker")), "{close}");
    assert!(close["ts"].as_f64().unwrap() > deadline + 1.4, "mosquitto closed only once resumed: {close}");
    let kinds: Vec<&str> = s.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    let at = |k: &str| kinds.iter().position(|x| *x == k).unwrap_or_else(|| panic!("{k} in {kinds:?}"));
    assert!(at("keepalive_expired") < at("close"), "{kinds:?}");
    assert_eq!(first(&s, "close_without_disconnect").unwrap()["will_expected"], true);
    let enforcement = first(&s, "enforcement").unwrap();
    assert_eq!(enforcement["verdict"], "late", "the broker enforced the deadline, late: {enforcement}");
    assert!(enforcement["lag_s"].as_f64().unwrap() > 1.4);
    assert_eq!(count(&s, "pingreq"), 0);

    // 2. Healthy pings with round trips.
    let s = session("healthy");
    assert_eq!((count(&s, "pingreq"), count(&s, "pingresp")), (3, 3));
    for e in s.iter().filter(|e| e["kind"] == "pingresp") {
        let rtt = e["rtt_ms"].as_f64().unwrap();
        assert!(rtt > 0.0 && rtt < 500.0, "a round trip on loopback: {e}");
    }
    assert!(first(&s, "keepalive_expired").is_none());
    // 3. DISCONNECT.
    let close = first(&s, "close").unwrap();
    assert_eq!((close["close"].as_str(), close["by"].as_str()), (Some("disconnect"), Some("client")), "{close}");
    assert!(first(&s, "close_without_disconnect").is_none());

    // 4. Killed: its kernel closes the socket with a FIN; the Will is due.
    let s = session("killed");
    let close = first(&s, "close").unwrap();
    assert_eq!((close["close"].as_str(), close["by"].as_str()), (Some("fin"), Some("client")), "{close}");
    let cwd = first(&s, "close_without_disconnect").unwrap();
    assert_eq!((cwd["close"].as_str(), cwd["will_expected"].as_bool()), (Some("fin"), Some(true)), "{cwd}");

    // 5. MQTT 5 Server Keep Alive: 60 asked, 10 given.
    let s = session("capped");
    assert_eq!(first(&s, "connect").unwrap()["protocol"], "5.0");
    assert_eq!(first(&s, "connect").unwrap()["keepalive_s"], 60);
    let connack = first(&s, "connack").unwrap();
    assert_eq!(
        (connack["code"].as_u64(), connack["server_keepalive_s"].as_u64(), connack["effective_keepalive_s"].as_u64()),
        (Some(0), Some(10), Some(10)),
        "{connack}"
    );
    assert_eq!(by_client_id(&live, "capped")["expiry_s"], 15.0);

    // 9. The same traffic captured by tcpdump and decrypted with the key log.
    let out = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .args(["analyze", "--tls-keylog"])
        .arg(&keylog)
        .args(["--port", &port, "-f", "json"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success(), "analyze: {}", String::from_utf8_lossy(&out.stderr));
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    let offline = offline["sessions"].as_array().unwrap();
    assert_eq!(offline.len(), 4, "{offline:#?}");
    for o in offline {
        let l = live
            .iter()
            .find(|l| l["client"] == o["client"])
            .unwrap_or_else(|| panic!("{} (client port) not seen by the eBPF agent", o["client"]));
        let id = l["client_id"].as_str().unwrap();
        assert_eq!((o["transport"].as_str(), l["transport"].as_str()), (Some("tls"), Some("tls")), "{id}");
        assert_eq!(o["tls"]["decrypted"], true, "{id}: {o}");
        for field in [
            "client_id",
            "protocol",
            "keepalive_s",
            "server_keepalive_s",
            "effective_keepalive_s",
            "expiry_s",
            "will",
            "connack_code",
            "mid_stream",
            "pingreq",
            "pingresp",
            "pings_unanswered",
            "expired",
        ] {
            assert_eq!(o[field], l[field], "{id}: {field}");
        }
        assert_eq!(o["close"]["kind"], l["close"]["kind"], "{id}: close kind");
        assert_eq!(o["close"]["by"], l["close"]["by"], "{id}: who closed");
        assert_eq!(o["enforcement"]["verdict"], l["enforcement"]["verdict"], "{id}: enforcement");
        let (o_end, l_end) = (o["ended"].as_f64().unwrap(), l["ended"].as_f64().unwrap());
        assert!((o_end - l_end).abs() < 0.05, "{id}: the same close time: {o_end} / {l_end}");
    }
    let ids: Vec<&str> = offline.iter().filter_map(|o| o["client_id"].as_str()).collect();
    assert_eq!(ids.len(), 4, "every session decrypted: {ids:?}");
    drop(broker);
}

/// An event without what depends on the moment it was read: its time, its session number and
/// the durations measured from times.
fn shape(e: &Value) -> Value {
    let mut e = e.clone();
    let o = e.as_object_mut().unwrap();
    for k in ["ts", "session", "rtt_ms", "after_silence_s", "max_silence_s", "last_packet", "last_activity", "lag_s"] {
        o.remove(k);
    }
    e
}

/// A connection open before the agent starts is joined mid-stream: its pings are seen, its
/// client id is unknown, its DISCONNECT closes it (scenario 6). Two agents on the same broker,
/// the default binding (the socket tracepoints on this kernel) and `--ebpf-binding syscalls`,
/// give the same events (scenario 8).
#[test]
#[ignore = "needs root (eBPF)"]
fn ebpf_agents_join_an_older_connection_and_both_bindings_agree() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let broker = TlsBroker::start(dir.path());
    let port = broker.port.to_string();
    let keylog = dir.path().join("keys.log");
    let mut early = tls_reaped(
        broker.port,
        &ca,
        &keylog,
        &["--keepalive", "5", "--client-id", "early", "pings:7:1", "sleep:0.5", "disconnect"],
    );
    wait_for("the early client's TLS handshake", Duration::from_secs(10), || {
        std::fs::read_to_string(&keylog).unwrap_or_default().contains("CLIENT_TRAFFIC_SECRET_0")
    });
    std::thread::sleep(Duration::from_millis(300)); // its CONNECT and CONNACK, before any agent

    let pid = broker.pid().to_string();
    let base = ["--backend", "ebpf", "--port", &port, "--pid", &pid];
    let default = EbpfAgent::start(dir.path(), "default", &base);
    let syscalls = EbpfAgent::start(dir.path(), "syscalls", &[&base[..], &["--ebpf-binding", "syscalls"]].concat());
    let default_binding = if Path::new("/sys/kernel/tracing/events/sock/sock_recv_length").exists() {
        "binding=SockTracepoints"
    } else {
        "binding=Syscalls"
    };
    assert!(default.stderr().contains(default_binding), "{}", default.stderr());
    assert!(syscalls.stderr().contains("binding=Syscalls"), "{}", syscalls.stderr());
    for agent in [&default, &syscalls] {
        assert!(agent.stderr().contains("joined=1"), "the early connection is handed over: {}", agent.stderr());
    }

    let mut healthy = tls_reaped(
        broker.port,
        &ca,
        &keylog,
        &["--keepalive", "5", "--client-id", "fresh", "pings:2:1", "sleep:0.5", "disconnect"],
    );
    wait_success(&mut healthy, "fresh");
    wait_success(&mut early, "early");
    let mut records = Vec::new();
    for agent in [&default, &syscalls] {
        records.push(
            agent.wait_sessions("both sessions closed", |s| {
                s.len() == 2 && s.iter().all(|x| x["close"]["kind"] != "open")
            }),
        );
    }
    let (default_stderr, syscalls_stderr) = (default.stderr(), syscalls.stderr());
    let (default_status, default_events) = default.stop();
    let (syscalls_status, syscalls_events) = syscalls.stop();
    assert!(default_status.success() && syscalls_status.success());
    let logs = [default_events, syscalls_events];

    for ((events, sessions), stderr) in logs.iter().zip(&records).zip([&default_stderr, &syscalls_stderr]) {
        // The early connection: joined mid-stream, no client id, its pings and its DISCONNECT.
        let starts: Vec<&Value> = events.iter().filter(|e| e["kind"] == "session_start").collect();
        assert_eq!(starts.len(), 2, "{stderr}");
        let joined = starts.iter().find(|e| e["mid_stream"] == true).expect("one session joined mid-stream");
        let s = of_session(events, &joined["session"]);
        assert!(s.iter().all(|e| e["client_id"].is_null()), "no CONNECT seen: no client id");
        assert!(first(&s, "connect").is_none() && first(&s, "connack").is_none());
        assert_eq!(first(&s, "transport").unwrap()["transport"], "tls");
        let pings = count(&s, "pingreq");
        assert!(pings >= 4, "the pings after the join: {pings}");
        assert_eq!(count(&s, "pingresp"), pings);
        assert!(s.iter().filter(|e| e["kind"] == "pingresp").all(|e| e["rtt_ms"].as_f64().unwrap() > 0.0), "{s:?}");
        assert!(first(&s, "keepalive_expired").is_none(), "no verdict without a known keepalive");
        let close = first(&s, "close").unwrap();
        assert_eq!((close["close"].as_str(), close["by"].as_str()), (Some("disconnect"), Some("client")), "{close}");
        let record = sessions.iter().find(|r| r["mid_stream"] == true).unwrap();
        assert_eq!(
            (record["client_id"].as_str(), record["keepalive_s"].as_u64(), record["expired"].as_bool()),
            (None, None, Some(false)),
            "{record}"
        );
        assert_eq!(record["pingreq"].as_u64(), Some(pings as u64));
        assert_eq!(record["client"], joined["client"]);
        // The fresh one, seen from its start.
        let s = of_session(events, &session_of(events, "fresh").expect("fresh's CONNECT"));
        assert_eq!((count(&s, "pingreq"), count(&s, "pingresp")), (2, 2));
        assert_eq!(first(&s, "session_start").unwrap()["mid_stream"], false);
    }

    // Both bindings: the same events, within milliseconds of each other. The early session's
    // events before the later agent attached are the first agent's alone, and so are the marks
    // of each agent's first plaintext of it (resync, tls_keys: when each first read it).
    let joined_at = |events: &[Value]| {
        events.iter().find(|e| e["kind"] == "session_start" && e["mid_stream"] == true).unwrap()["ts"].as_f64().unwrap()
    };
    let both_from = joined_at(&logs[0]).max(joined_at(&logs[1])) + 0.05;
    let comparable = |events: &[Value]| -> Vec<Value> {
        let joined = events.iter().find(|e| e["kind"] == "session_start" && e["mid_stream"] == true).unwrap();
        events
            .iter()
            .filter(|e| {
                e["session"] != joined["session"]
                    || (e["ts"].as_f64().unwrap() > both_from
                        && !["resync", "tls_keys", "session_end"].contains(&e["kind"].as_str().unwrap()))
            })
            .cloned()
            .collect()
    };
    let (a, b) = (comparable(&logs[0]), comparable(&logs[1]));
    assert_eq!(a.iter().map(shape).collect::<Vec<_>>(), b.iter().map(shape).collect::<Vec<_>>());
    for (x, y) in a.iter().zip(&b) {
        let dt = (x["ts"].as_f64().unwrap() - y["ts"].as_f64().unwrap()).abs();
        assert!(dt < 0.02, "{x} / {y}");
    }
    assert!(a.iter().filter(|e| e["kind"] == "pingreq").count() >= 5, "pings of both sessions compared: {a:#?}");
}

/// mosquitto (a copy of it with a name of its own) killed and started again under an agent
/// following it by name: the old connections' closes are reported, and a client of the new
/// process is seen with its client id (scenario 7).
#[test]
#[ignore = "needs root (eBPF)"]
fn ebpf_agent_follows_a_restarted_broker_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let name = format!("mqr-{}", std::process::id()); // /proc/PID/comm holds 15 characters
    let program = dir.path().join(&name);
    std::fs::copy("/usr/sbin/mosquitto", &program).expect("mosquitto is /usr/sbin/mosquitto");
    let port = free_port();
    let broker = TlsBroker::start_with(dir.path(), &program, port, "");
    let old_pid = broker.pid();
    let agent =
        EbpfAgent::start(dir.path(), "agent", &["--backend", "ebpf", "--port", &port.to_string(), "--process", &name]);
    assert!(agent.stderr().contains(&format!("pids=[{old_pid}]")), "{}", agent.stderr());
    let keylog = dir.path().join("keys.log");
    let mut old = [
        tls_reaped(port, &ca, &keylog, &["--keepalive", "60", "--client-id", "before-1", "--will", "wait-close:30"]),
        tls_reaped(port, &ca, &keylog, &["--keepalive", "60", "--client-id", "before-2", "wait-close:30"]),
    ];
    wait_for("the old clients' CONNACKs", Duration::from_secs(10), || {
        let s = agent.sessions();
        ["before-1", "before-2"].iter().all(|id| s.iter().any(|x| x["client_id"] == *id && x["connack_code"] == 0))
    });

    drop(broker); // SIGKILL: the kernel closes its sockets
    for c in &mut old {
        wait_success(c, "the broker's death closed the connection");
    }
    wait_for("the old connections' closes", Duration::from_secs(5), || {
        let s = agent.sessions();
        ["before-1", "before-2"].iter().all(|id| by_client_id(&s, id)["close"]["kind"] != "open")
    });
    let s = agent.sessions();
    for id in ["before-1", "before-2"] {
        let r = by_client_id(&s, id);
        assert_eq!((r["close"]["kind"].as_str(), r["close"]["by"].as_str()), (Some("fin"), Some("broker")), "{r}");
        assert_eq!(r["expired"], false);
    }

    let restarted = std::time::Instant::now();
    let broker = TlsBroker::start_with(dir.path(), &program, port, "");
    assert_ne!(broker.pid(), old_pid);
    wait_for("the agent finds the new broker process", Duration::from_secs(5), || {
        agent.stderr().lines().any(|l| l.contains("broker process found") && l.contains(&broker.pid().to_string()))
    });
    assert!(restarted.elapsed() < Duration::from_secs(4), "found again within a second or so");
    let mut after = tls_reaped(
        port,
        &ca,
        &keylog,
        &["--keepalive", "5", "--client-id", "after-restart", "pings:2:1", "sleep:0.5", "disconnect"],
    );
    wait_success(&mut after, "after-restart");
    wait_for("the new session's close", Duration::from_secs(5), || {
        agent.sessions().iter().any(|x| x["client_id"] == "after-restart" && x["close"]["kind"] != "open")
    });
    let s = agent.sessions();
    let r = by_client_id(&s, "after-restart");
    assert_eq!(
        (r["protocol"].as_str(), r["keepalive_s"].as_u64(), r["mid_stream"].as_bool(), r["transport"].as_str()),
        (Some("3.1.1"), Some(5), Some(false), Some("tls")),
        "{r}"
    );
    assert_eq!((r["pingreq"].as_u64(), r["pingresp"].as_u64()), (Some(2), Some(2)), "{r}");
    assert_eq!((r["close"]["kind"].as_str(), r["close"]["by"].as_str()), (Some("disconnect"), Some("client")), "{r}");
    assert_eq!(s.len(), 3, "{s:#?}");

    let metrics = agent.get("/metrics");
    let m = |series: &str| sample(&metrics, series);
    assert_eq!(m("mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tls\"}"), 3.0, "{metrics}");
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"fin\",by=\"broker\",transport=\"tls\"}"), 2.0);
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"disconnect\",by=\"client\",transport=\"tls\"}"), 1.0);
    assert_eq!(m("mqtt_keepalive_closes_without_disconnect_total"), 2.0);
    assert_eq!(m("mqtt_keepalive_sessions_open"), 0.0);
    assert!(agent.stop().0.success());
}

/// Packet capture and eBPF in one agent: a plain MQTT listener captured on `lo`, the TLS
/// listener of the same mosquitto read through its libssl; each connection is one session. Then
/// a real client, mosquitto_sub, on each listener: it sends DISCONNECT and closes at once, and the
/// eBPF backend must report that DISCONNECT as packet capture does.
#[test]
#[ignore = "needs root (eBPF)"]
fn afpacket_and_ebpf_backends_in_one_agent() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let plain = free_port();
    let broker =
        TlsBroker::start_with(dir.path(), Path::new("mosquitto"), free_port(), &format!("listener {plain} 127.0.0.1"));
    let (tls, pid) = (broker.port.to_string(), broker.pid().to_string());
    let agent = EbpfAgent::start(
        dir.path(),
        "agent",
        &[
            "--backend",
            "afpacket,ebpf",
            "-i",
            "lo",
            "--port",
            &plain.to_string(),
            "--port",
            &tls,
            "--ebpf-port",
            &tls,
            "--pid",
            &pid,
        ],
    );
    let steps = ["--keepalive", "5", "ping", "sleep:0.3", "disconnect"];
    let mut clients = [
        Reaped(mqtt_client(plain, &[&["--client-id", "plain-client"], &steps[..]].concat())),
        tls_reaped(
            broker.port,
            &ca,
            &dir.path().join("keys.log"),
            &[&["--client-id", "tls-client"], &steps[..]].concat(),
        ),
    ];
    for c in &mut clients {
        wait_success(c, "client");
    }
    let ours = |s: &Value| s["broker"] == format!("127.0.0.1:{plain}") || s["broker"] == format!("127.0.0.1:{tls}");
    wait_for("both sessions closed", Duration::from_secs(5), || {
        let s: Vec<Value> = agent.sessions().into_iter().filter(ours).collect();
        s.len() == 2 && s.iter().all(|x| x["close"]["kind"] != "open")
    });
    let s: Vec<Value> = agent.sessions().into_iter().filter(ours).collect();
    for (id, transport, port) in [("plain-client", "tcp", plain.to_string()), ("tls-client", "tls", tls.clone())] {
        let r = by_client_id(&s, id);
        assert_eq!(
            (r["transport"].as_str(), r["broker"].as_str()),
            (Some(transport), Some(&*format!("127.0.0.1:{port}")))
        );
        assert_eq!((r["pingreq"].as_u64(), r["pingresp"].as_u64()), (Some(1), Some(1)), "{r}");
        assert_eq!(
            (r["close"]["kind"].as_str(), r["close"]["by"].as_str()),
            (Some("disconnect"), Some("client")),
            "{r}"
        );
    }
    let metrics = agent.get("/metrics");
    assert_eq!(
        sample(&metrics, "mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tcp\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tls\"}"), 1.0);
    assert!(sample(&metrics, "mqtt_keepalive_capture_packets_total") > 0.0, "packets captured on the plain port");

    // mosquitto_sub takes the retained $SYS/broker/version and DISCONNECTs, on each listener.
    for (id, port, tls) in [("sub-plain", plain.to_string(), false), ("sub-tls", tls.clone(), true)] {
        let mut cmd = Command::new("mosquitto_sub");
        if tls {
            cmd.arg("--cafile").arg(&ca);
        }
        let status = cmd
            .args(["-h", "localhost", "-p", &port, "-k", "5", "-i", id, "-t", "$SYS/broker/version", "-C", "1"])
            .stdout(Stdio::null())
            .status()
            .expect("mosquitto_sub is installed");
        assert!(status.success(), "{id}: {status}");
    }
    let s = agent.wait_sessions("both mosquitto_sub sessions closed", |s| {
        ["sub-plain", "sub-tls"]
            .iter()
            .all(|id| s.iter().any(|x| x["client_id"] == *id && x["close"]["kind"] != "open"))
    });
    let plain_close = &by_client_id(&s, "sub-plain")["close"];
    assert_eq!(
        (plain_close["kind"].as_str(), plain_close["by"].as_str()),
        (Some("disconnect"), Some("client")),
        "packet capture: mosquitto_sub's DISCONNECT, then its FIN"
    );
    let tls_close = &by_client_id(&s, "sub-tls")["close"];
    assert_eq!(
        (tls_close["kind"].as_str(), tls_close["by"].as_str()),
        (Some("disconnect"), Some("client")),
        "eBPF: the same DISCONNECT, read by mosquitto through SSL_read just after the FIN reached its socket"
    );
    assert!(agent.stop().0.success());
}

/// Setup errors: exit status 2 and a message naming what is wrong (scenario 10).
#[test]
#[ignore = "needs root (eBPF)"]
fn ebpf_setup_errors_name_the_process() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
            .args(["live", "--backend", "ebpf", "--port", &free_port().to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, stderr) = run(&["--process", "no-such-broker-xyz"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no running process named no-such-broker-xyz"), "{stderr}");
    assert!(!stderr.contains("probes attached"), "{stderr}");

    let sleep = Reaped(Command::new("sleep").arg("100").spawn().unwrap());
    let pid = sleep.0.id();
    let (code, stderr) = run(&["--pid", &pid.to_string()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("process {pid} (sleep) does not map libssl")), "{stderr}");
    assert!(stderr.contains("Covered:") && stderr.contains("mosquitto"), "names the brokers covered: {stderr}");
    assert!(!stderr.contains("probes attached"), "{stderr}");
}

/// A blocking MQTT-over-TLS client in this process (rustls: it never enters the probed libssl)
/// for the loops below, which need many connections fast.
struct RustlsClient {
    tls: rustls::ClientConnection,
    sock: std::net::TcpStream,
}

fn rustls_config(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

impl RustlsClient {
    /// Connects, sends CONNECT (keepalive 60, clean session) and reads the CONNACK.
    fn connect(config: &std::sync::Arc<rustls::ClientConfig>, port: u16, client_id: &str) -> RustlsClient {
        let sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let tls = rustls::ClientConnection::new(config.clone(), "localhost".try_into().unwrap()).unwrap();
        let mut c = RustlsClient { tls, sock };
        let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 60];
        body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        body.extend_from_slice(client_id.as_bytes());
        let mut connect = vec![0x10, body.len() as u8];
        connect.extend_from_slice(&body);
        c.send(&connect);
        assert_eq!(c.read(4)[0], 0x20, "CONNACK");
        c
    }

    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        rustls::Stream::new(&mut self.tls, &mut self.sock).write_all(bytes).unwrap();
        rustls::Stream::new(&mut self.tls, &mut self.sock).flush().unwrap();
    }

    fn read(&mut self, n: usize) -> Vec<u8> {
        use std::io::Read;
        let mut buf = vec![0u8; n];
        rustls::Stream::new(&mut self.tls, &mut self.sock).read_exact(&mut buf).unwrap();
        buf
    }

    /// Closes with an RST at once (SO_LINGER 0), no TLS close_notify.
    fn abort(self) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setting an option on our own open socket with a valid linger struct.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }

    /// Closes with a FIN at once, no TLS close_notify.
    fn close(self) {}
}

/// The two shapes that lost counts under churn, many times over, several clients at a time,
/// every connection closing the instant its last exchange is done: a client reads its
/// PINGRESP and aborts (RST), and a client sends DISCONNECT and closes (FIN). Every PINGRESP
/// must be reported and every DISCONNECT be the close, whatever CPU reported the RST or the
/// FIN first.
#[test]
#[ignore = "needs root (eBPF)"]
fn ebpf_counts_are_exact_when_clients_close_at_once() {
    const THREADS: usize = 6;
    const ROUNDS: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let broker = TlsBroker::start(dir.path());
    let port = broker.port;
    let agent = EbpfAgent::start(
        dir.path(),
        "agent",
        &["--backend", "ebpf", "--port", &port.to_string(), "--pid", &broker.pid().to_string()],
    );
    let config = rustls_config(&ca);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let config = config.clone();
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let mut c = RustlsClient::connect(&config, port, &format!("ping-abort-{t}-{round}"));
                    c.send(&[0xc0, 0x00]);
                    assert_eq!(c.read(2), [0xd0, 0x00], "PINGRESP");
                    c.abort();
                    let mut c = RustlsClient::connect(&config, port, &format!("disconnect-fin-{t}-{round}"));
                    c.send(&[0xe0, 0x00]);
                    c.close();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a client thread failed");
    }
    let n = (THREADS * ROUNDS) as f64;
    wait_for("every session closed", Duration::from_secs(20), || {
        let m = agent.get("/metrics");
        sample(&m, "mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tls\"}") == 2.0 * n
            && sample(&m, "mqtt_keepalive_sessions_open") == 0.0
    });
    let metrics = agent.get("/metrics");
    let m = |series: &str| sample(&metrics, series);
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"request\"}"), n, "{metrics}");
    assert_eq!(m("mqtt_keepalive_pings_total{direction=\"response\"}"), n, "every PINGRESP: {metrics}");
    assert_eq!(m("mqtt_keepalive_ping_rtt_seconds_count"), n);
    assert_eq!(m("mqtt_keepalive_pings_unanswered_total"), 0.0, "{metrics}");
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"disconnect\",by=\"client\",transport=\"tls\"}"), n, "{metrics}");
    assert_eq!(m("mqtt_keepalive_closes_total{kind=\"rst\",by=\"client\",transport=\"tls\"}"), n, "{metrics}");
    assert_eq!(m("mqtt_keepalive_closes_without_disconnect_total"), n, "the aborts only: {metrics}");
    assert_eq!(m("mqtt_keepalive_capture_dropped_packets_total"), 0.0);
    let (status, events) = agent.stop();
    assert!(status.success());
    for e in &events {
        assert_ne!(e["kind"], "gap", "no plaintext lost: {e}");
    }
}

/// amqtt (PyPI), a broker in Python asyncio, whose ssl module drives OpenSSL through memory
/// BIOs: its SSL_read and SSL_write never touch a socket. The agent ties each SSL object to the
/// socket its thread received from just before, so its sessions are read as mosquitto's are:
/// CONNECT, pings with round trips, DISCONNECT, and a client that vanished.
/// Needs amqtt (`pip install amqtt==0.12.1`).
#[test]
#[ignore = "needs root (eBPF)"]
fn ebpf_agent_reads_amqtt_through_memory_bios() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_certificates(dir.path());
    let port = free_port();
    let d = dir.path().display();
    let conf = dir.path().join("amqtt.yaml");
    std::fs::write(
        &conf,
        format!(
            "listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n    ssl: true\n    certfile: {d}/server.crt\n    \
             keyfile: {d}/server.key\nplugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        ),
    )
    .unwrap();
    let broker = Reaped(
        Command::new("python3")
            .args(["-m", "amqtt.scripts.broker_script", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("amqtt.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("amqtt's TLS listener (pip install amqtt==0.12.1)", Duration::from_secs(20), || listening(port));
    let agent = EbpfAgent::start(
        dir.path(),
        "agent",
        &["--backend", "ebpf", "--port", &port.to_string(), "--pid", &broker.0.id().to_string()],
    );
    let keylog = dir.path().join("keys.log");
    // Each pings only once its CONNACK could have come (the script's `ping` does not wait for it,
    // and amqtt, slow under load, may leave a PINGREQ sent before it unanswered).
    let mut clients = [
        tls_reaped(
            port,
            &ca,
            &keylog,
            &["--keepalive", "5", "--client-id", "amqtt-1", "pings:2:0.5", "sleep:0.3", "disconnect"],
        ),
        tls_reaped(
            port,
            &ca,
            &keylog,
            &["--keepalive", "5", "--client-id", "amqtt-2", "sleep:0.5", "ping", "sleep:0.3", "disconnect"],
        ),
        tls_reaped(
            port,
            &ca,
            &keylog,
            &["--keepalive", "5", "--client-id", "amqtt-gone", "--will", "sleep:0.3", "kill"],
        ),
    ];
    for c in &mut clients {
        let _ = c.0.wait().unwrap(); // the killed one ends by its own SIGKILL
    }
    let s = agent.wait_sessions("the three amqtt sessions closed", |s| {
        s.len() == 3 && s.iter().all(|x| x["close"]["kind"] != "open")
    });
    for (id, pings, close) in [("amqtt-1", 2, "disconnect"), ("amqtt-2", 1, "disconnect"), ("amqtt-gone", 0, "fin")] {
        let r = by_client_id(&s, id);
        assert_eq!((r["transport"].as_str(), r["keepalive_s"].as_u64()), (Some("tls"), Some(5)), "{r}");
        assert_eq!((r["pingreq"].as_u64(), r["pingresp"].as_u64()), (Some(pings), Some(pings)), "{r}");
        assert_eq!((r["close"]["kind"].as_str(), r["close"]["by"].as_str()), (Some(close), Some("client")), "{r}");
    }
    let metrics = agent.get("/metrics");
    let m = |series: &str| sample(&metrics, series);
    assert_eq!(m("mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tls\"}"), 3.0, "{metrics}");
    assert_eq!(m("mqtt_keepalive_ping_rtt_seconds_count"), 3.0);
    assert_eq!(m("mqtt_keepalive_pings_unanswered_total"), 0.0);
    assert_eq!(m("mqtt_keepalive_closes_without_disconnect_total"), 1.0, "the killed client only");
    assert_eq!(m("mqtt_keepalive_ebpf_unbound_calls_total"), 0.0, "every SSL call tied: {metrics}");
    let (status, events) = agent.stop();
    assert!(status.success());
    assert!(!events.iter().any(|e| e["reason"] == "not_visible"), "all visible");
}
