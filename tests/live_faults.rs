//! Faults and hostile clients in live mode: the interface going away, a full disk for
//! --events, HTTP clients that send the wrong method, stall, or send huge headers, and
//! passwords in CONNECT (never in /metrics, /sessions, the events, or debug logs).
//! Needs root (packet capture, network interfaces), mosquitto and python3.
#![allow(clippy::disallowed_methods)] // waits on real processes and measures real time

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn agent_cmd(iface: &str, listen: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"));
    c.args(["live", "-i", iface, "--listen", listen]).args(extra);
    c
}

fn wait_healthy(listen: std::net::SocketAddr) {
    wait_for("agent healthy", Duration::from_secs(10), || {
        matches!(http_get(listen, "/healthz", None), Ok((200, _, _)))
    });
}

#[test]
#[ignore = "needs root and iproute2"]
fn an_interface_that_goes_away_ends_the_agent_with_status_1() {
    let (a, b) = ("mkka-fa", "mkka-fb");
    let _ = Command::new("ip").args(["link", "del", a]).status();
    assert!(Command::new("ip").args(["link", "add", a, "type", "veth", "peer", "name", b]).status().unwrap().success());
    assert!(Command::new("ip").args(["link", "set", a, "up"]).status().unwrap().success());
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let agent = Reaped(agent_cmd(a, &listen.to_string(), &[]).stderr(Stdio::piped()).spawn().unwrap());
    wait_healthy(listen);
    assert!(Command::new("ip").args(["link", "del", a]).status().unwrap().success());
    let mut agent = agent;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "agent still running after its interface went away");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    agent.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(err.contains(a) && err.contains("went down or disappeared"), "{err}");
}

#[test]
#[ignore = "needs root, mosquitto and python3"]
fn a_full_disk_for_events_does_not_stop_the_agent() {
    let broker = Mosquitto::start("");
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut agent = Reaped(
        agent_cmd("lo", &listen.to_string(), &["--port", &broker.port.to_string(), "--events", "/dev/full"])
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    wait_healthy(listen);
    let mut c = mqtt_client(broker.port, &["--keepalive", "5", "--client-id", "disk", "sleep:0.3", "disconnect"]);
    assert!(c.wait().unwrap().success());
    wait_for("the CONNECT counted", Duration::from_secs(5), || {
        let (_, _, m) = http_get(listen, "/metrics", None).unwrap();
        sample(&m, "mqtt_keepalive_connects_total{protocol=\"3.1.1\",transport=\"tcp\"}") == 1.0
    });
    std::thread::sleep(Duration::from_millis(1500)); // past the agent's once-a-second flush
    assert!(agent.0.try_wait().unwrap().is_none(), "still running");
    let (status, _, _) = http_get(listen, "/metrics", None).unwrap();
    assert_eq!(status, 200, "still serving");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    assert!(agent.0.wait().unwrap().success());
    let err = std::fs::read_to_string(log.path()).unwrap();
    assert!(err.contains("writing events failed") && err.contains("No space left"), "{err}");
}

#[test]
#[ignore = "needs root"]
fn http_serves_get_only_and_bounds_what_clients_can_hold() {
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _agent = Reaped(agent_cmd("lo", &listen.to_string(), &[]).stderr(Stdio::null()).spawn().unwrap());
    wait_healthy(listen);
    let request = |raw: &[u8]| -> String {
        let mut s = TcpStream::connect(listen).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(request(b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").starts_with("HTTP/1.0 405"));
    assert!(request(b"DELETE /sessions HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
    assert!(request(b"GET /nope HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
    // A head larger than the limit is refused, not buffered.
    let huge = format!("GET /metrics HTTP/1.0\r\nX-Junk: {}\r\n\r\n", "a".repeat(64 * 1024));
    let answer = request(huge.as_bytes());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.0 431"),
        "{answer:.80}"
    );
    // A client that stalls mid-headers is dropped after the header timeout, and scrapes go on
    // meanwhile.
    let mut slow = TcpStream::connect(listen).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n").unwrap();
    let start = Instant::now();
    assert_eq!(http_get(listen, "/metrics", None).unwrap().0, 200);
    slow.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let held = start.elapsed();
    assert!(held < Duration::from_secs(12), "a stalled client was held for {held:?}");
}

#[test]
#[ignore = "needs root, mosquitto and python3"]
fn passwords_never_leave_the_agent() {
    let broker = Mosquitto::start("");
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let log = dir.path().join("agent.log");
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut agent = Reaped(
        agent_cmd(
            "lo",
            &listen.to_string(),
            &["--port", &broker.port.to_string(), "--client-id-labels", "5", "--events"],
        )
        .arg(&events)
        .env("RUST_LOG", "trace")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap(),
    );
    wait_healthy(listen);
    let password = "Hunter2-Pa55w0rd";
    let mut c = mqtt_client(
        broker.port,
        &[
            "--keepalive",
            "1",
            "--client-id",
            "has-secret",
            "--username",
            "alice",
            "--password",
            password,
            "wait-close:10",
        ],
    );
    assert!(c.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    let (_, _, metrics) = http_get(listen, "/metrics", None).unwrap();
    let (_, _, sessions) = http_get(listen, "/sessions", None).unwrap();
    assert!(sessions.contains("has-secret"), "the session is there");
    assert!(metrics.contains("client_id=\"has-secret\""), "opted-in client id label");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.0.id() as i32, libc::SIGTERM) };
    assert!(agent.0.wait().unwrap().success());
    let events = std::fs::read_to_string(&events).unwrap();
    assert!(events.contains("has-secret"));
    let logs = std::fs::read_to_string(&log).unwrap();
    for (what, text) in [("/metrics", &metrics), ("/sessions", &sessions), ("events", &events), ("debug log", &logs)] {
        assert!(!text.contains(password) && !text.contains("Hunter2"), "password in {what}");
    }
}

#[test]
#[ignore = "needs root"]
fn a_ring_the_kernel_refuses_falls_back_to_recvmsg_and_says_why() {
    // 16 TiB in 1 MiB blocks: the kernel refuses the ring before allocating anything (its
    // frame count would overflow), as it would refuse one it cannot allocate.
    let broker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = broker.local_addr().unwrap().port().to_string();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let agent = Reaped(
        agent_cmd("lo", &listen.to_string(), &["--port", &port, "--ring-size", "16384GiB"])
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    wait_healthy(listen);
    let mut client = TcpStream::connect(broker.local_addr().unwrap()).unwrap();
    client.write_all(b"\xc0\x00").unwrap();
    wait_for("the fallback socket captures", Duration::from_secs(5), || {
        let (_, _, metrics) = http_get(listen, "/metrics", None).unwrap();
        sample(&metrics, "mqtt_keepalive_capture_packets_total") >= 4.0 // handshake and the PINGREQ
    });
    drop(agent);
    let err = std::fs::read_to_string(log.path()).unwrap();
    assert!(err.contains("no TPACKET_V3 ring") && err.contains("set up the ring") && err.contains("recvmsg"), "{err}");
}
