//! The live agent's `/sessions` over HTTP: `client_id=` chooses sessions by a client id
//! pattern, and `limit=` bounds the closed sessions listed as well as the open ones.

use mqtt_keepalive::flow::Side;
use mqtt_keepalive::pipeline::Pipeline;
use mqtt_keepalive::server::{self, AppState};
use mqtt_keepalive::sink::RecordSink;
use mqtt_keepalive::sink::report::{RecentSessions, SessionRecord, SessionsDocument};
use mqtt_keepalive::synth::{Capture, Conn, Encap, mqtt};
use mqtt_keepalive::time::Timestamp;
use mqtt_keepalive::tracker::TrackerConfig;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Three sessions that closed (dev-1, other, dev-2) and two still open (dev-3, x).
fn sessions() -> (Vec<SessionRecord>, RecentSessions) {
    let t = Timestamp::from_secs_f64;
    let mut cap = Capture::new(Encap::Ethernet);
    for (i, (id, closes)) in
        [("dev-1", true), ("other", true), ("dev-2", true), ("dev-3", false), ("x", false)].into_iter().enumerate()
    {
        let at = i as f64;
        let mut c =
            Conn::new(format!("10.0.0.1:{}", 40000 + i).parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 1, 2);
        c.handshake(&mut cap, t(at));
        c.send(&mut cap, t(at + 0.1), Side::Client, &mqtt::connect(4, 60, id, false, None));
        c.send(&mut cap, t(at + 0.2), Side::Broker, &mqtt::connack(0, None));
        if closes {
            c.send(&mut cap, t(at + 0.5), Side::Client, &mqtt::disconnect(None));
            c.fin(&mut cap, t(at + 0.5), Side::Client);
        }
    }
    cap.sort();
    let mut pipeline = Pipeline::new(TrackerConfig::default());
    let mut closed = RecentSessions::new(100);
    for (ts, frame) in &cap.frames {
        pipeline.frame(*ts, cap.encap.link_type(), frame, frame.len() as u32);
        pipeline.drain(&mut [&mut RecordSink(|r: &SessionRecord| closed.push(r.clone()))]).unwrap();
    }
    pipeline.poll(t(70.0)); // past the half-closed connections' 60 s (the broker never sent its FIN)
    pipeline.drain(&mut [&mut RecordSink(|r: &SessionRecord| closed.push(r.clone()))]).unwrap();
    (pipeline.tracker().open_records().collect(), closed)
}

fn get(addr: std::net::SocketAddr, path: &str) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[test]
fn sessions_takes_a_client_id_pattern_and_limits_closed_sessions_too() {
    let (open, closed) = sessions();
    assert_eq!((open.len(), SessionsDocument::new(vec![], 100, &closed).sessions.len()), (2, 3));
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
    // The capture thread's part: answer each request from the sessions it holds.
    std::thread::spawn(move || {
        while let Ok((selection, reply)) = rx.recv() {
            let _ =
                tokio::sync::oneshot::Sender::send(reply, SessionsDocument::select(open.clone(), &selection, &closed));
        }
    });
    let state = AppState {
        registry: Arc::new(prometheus_client::registry::Registry::default()),
        sessions: tx,
        ready: Arc::new(AtomicBool::new(true)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        runtime.block_on(server::serve(listener, server::router(state), std::future::pending()))
    });

    let ids = |doc: &serde_json::Value| -> Vec<String> {
        doc["sessions"].as_array().unwrap().iter().map(|s| s["client_id"].as_str().unwrap().to_string()).collect()
    };
    let all = get(addr, "/sessions");
    assert_eq!(
        (all["open"].as_u64(), ids(&all)),
        (Some(2), vec!["dev-3", "x", "dev-1", "other", "dev-2"].into_iter().map(String::from).collect())
    );
    let dev = get(addr, "/sessions?client_id=dev-*");
    assert_eq!((dev["open"].as_u64(), ids(&dev)), (Some(1), ["dev-3", "dev-1", "dev-2"].map(String::from).to_vec()));
    let one = get(addr, "/sessions?limit=1");
    assert_eq!(
        ids(&one),
        ["dev-3", "dev-2"].map(String::from),
        "one open (equally severe: the first), one closed (the newest)"
    );
    let glob = get(addr, "/sessions?client_id=d%3Fv-%2A&limit=1");
    assert_eq!(ids(&glob), ["dev-3", "dev-2"].map(String::from));
}
