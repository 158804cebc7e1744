//! The eBPF backend's reach beyond libssl: a "broker" whose TLS is not visible (here a plain
//! TCP server in this test, standing for an Erlang, Java or Go broker) still has every
//! connection on its port reported from the kernel's TCP tracepoints: its open, the close kind
//! and who closed, also for a connection opened before the agent started; a port check that
//! carried no byte is a connection without payload, as in a capture. Needs root (eBPF);
//! CI runs it as root.
#![allow(clippy::disallowed_methods)] // waits on a real agent

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn events(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The events of the session whose client port is `port`.
fn session_of(all: &[Value], port: u16) -> Vec<&Value> {
    all.iter().filter(|e| e["client"].as_str().is_some_and(|c| c.ends_with(&format!(":{port}")))).collect()
}

fn close_of<'a>(session: &[&'a Value]) -> &'a Value {
    session.iter().find(|e| e["kind"] == "close").unwrap_or_else(|| panic!("a close in {session:?}"))
}

/// Closes `s` with an RST (SO_LINGER with a zero timeout).
fn abort(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: a valid socket and a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
#[ignore = "needs root (eBPF)"]
fn tcp_closes_are_reported_for_a_broker_whose_tls_is_not_visible() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Opened before the agent: joined mid-stream.
    let mut before = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (before_server, _) = listener.accept().unwrap();
    let before_port = before.local_addr().unwrap().port();

    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.jsonl");
    let agent = Agent::start_with(&[port], &events_path, &["--backend", "ebpf"]);

    // The broker closes: it reads the client's bytes and closes.
    let mut by_broker = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    by_broker.write_all(b"\x16\x03\x01 not visible").unwrap();
    let mut buf = [0u8; 64];
    let _ = server.read(&mut buf).unwrap();
    drop(server);
    let _ = by_broker.read(&mut buf); // the broker's FIN
    // The client closes.
    let mut by_client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server2, _) = listener.accept().unwrap();
    by_client.write_all(b"\x16\x03\x01").unwrap();
    server2.read_exact(&mut buf[..3]).unwrap(); // a broker reads what comes
    let client_port = by_client.local_addr().unwrap().port();
    std::thread::sleep(Duration::from_millis(100));
    drop(by_client);
    // The client resets.
    let mut reset = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server3, _) = listener.accept().unwrap();
    reset.write_all(b"\x16\x03\x01").unwrap();
    server3.read_exact(&mut buf[..3]).unwrap();
    let reset_port = reset.local_addr().unwrap().port();
    std::thread::sleep(Duration::from_millis(100));
    abort(reset);
    // A port check (a load balancer's): connected and closed, not a byte.
    let check = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (_server4, _) = listener.accept().unwrap();
    let check_port = check.local_addr().unwrap().port();
    drop(check);
    // The one from before the agent ends, by the client.
    before.write_all(b"x").unwrap();
    drop(before);

    let broker_port = by_broker.local_addr().unwrap().port();
    wait_for("five closes", Duration::from_secs(10), || {
        events(&events_path).iter().filter(|e| e["kind"] == "close").count() >= 5
    });
    assert!(agent.stop().success());
    drop(before_server);
    let all = events(&events_path);

    for (client, close, by, mid_stream) in [
        (broker_port, "fin", "broker", false),
        (client_port, "fin", "client", false),
        (reset_port, "rst", "client", false),
        (before_port, "fin", "client", true),
    ] {
        let s = session_of(&all, client);
        assert_eq!(s[0]["kind"], "session_start", "{client}: {s:?}");
        assert_eq!(s[0]["mid_stream"], mid_stream, "{client}: {s:?}");
        assert!(s.iter().any(|e| e["kind"] == "transport" && e["transport"] == "tls"), "{client}: {s:?}");
        let c = close_of(&s);
        assert_eq!((c["close"].as_str(), c["by"].as_str()), (Some(close), Some(by)), "{client}: {s:?}");
        // Nothing above TCP was visible: no client id, no MQTT packets.
        assert!(s.iter().all(|e| e["client_id"].is_null()), "{client}: {s:?}");
        assert!(!s.iter().any(|e| e["kind"] == "connect"), "{client}: {s:?}");
        if !mid_stream {
            // Bytes passed that no SSL call was tied to: not visible, and so not a close
            // without DISCONNECT (one may have passed unseen).
            assert!(
                s.iter().any(|e| e["kind"] == "tls_keys" && e["decrypted"] == false && e["reason"] == "not_visible"),
                "{client}: {s:?}"
            );
            assert!(!s.iter().any(|e| e["kind"] == "close_without_disconnect"), "{client}: {s:?}");
        }
    }
    // The port check carried nothing: a connection without payload, as in a capture, not a
    // TLS session (its close is still reported, as a capture reports it).
    let s = session_of(&all, check_port);
    assert!(!s.is_empty() && !s.iter().any(|e| e["kind"] == "transport"), "{s:?}");
    let c = close_of(&s);
    assert_eq!((c["close"].as_str(), c["by"].as_str()), (Some("fin"), Some("client")), "{s:?}");
}
