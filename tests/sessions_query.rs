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

/// The server of `sessions()` on a free port, and a GET that returns status and body.
fn serve_sessions() -> std::net::SocketAddr {
    let (open, closed) = sessions();
    let (tx, rx) = std::sync::mpsc::sync_channel(4);
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
    addr
}

fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

#[test]
fn a_bad_query_is_answered_400_saying_what_is_accepted() {
    let addr = serve_sessions();
    let (status, body) = raw_get(addr, "/sessions?limit=abc");
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("limit=\"abc\" is not a whole number\n/sessions accepts: limit=N"), "{body}");
    assert!(!body.contains("Failed to deserialize"), "not serde's text: {body}");
    assert_eq!(raw_get(addr, "/sessions?sort=nearest").0, 400);
    assert_eq!(raw_get(addr, "/sessions?colour=red").0, 400);
}

#[test]
fn the_text_view_lists_open_then_closed_sessions_for_people() {
    let addr = serve_sessions();
    let (status, text) = raw_get(addr, "/sessions?format=text");
    assert_eq!(status, 200, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "2 open sessions (2 listed), 3 recently closed listed", "{text}");
    assert!(lines[2].starts_with("ID  CLIENT ID  CLIENT") && lines[2].contains("DEADLINE"), "{text}");
    let row = |id: &str| *lines.iter().find(|l| l.contains(id)).unwrap_or_else(|| panic!("{id}: {text}"));
    // dev-3 connected at 3.1 with keepalive 60 (deadline 93.1); the clock stood at 70.
    assert!(row("dev-3").contains("open") && row("dev-3").contains("in 23.1 s"), "{text}");
    assert!(
        row("dev-1").contains("disconnect by client") && row("dev-1").contains("closed 1970-01-01 00:00:00.500"),
        "{text}"
    );
}

#[test]
fn sort_deadline_lists_the_open_sessions_nearest_their_deadline_first() {
    let addr = serve_sessions();
    let doc = get(addr, "/sessions?sort=deadline&limit=1");
    let open: Vec<&serde_json::Value> =
        doc["sessions"].as_array().unwrap().iter().filter(|s| s["close"]["kind"] == "open").collect();
    // dev-3 (connected at 3.1) has the earlier deadline of the two open ones (x at 4.1).
    assert_eq!((doc["open"].as_u64(), open.len(), open[0]["client_id"].as_str()), (Some(2), 1, Some("dev-3")));
    let both = get(addr, "/sessions?sort=deadline");
    let deadlines: Vec<f64> = both["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["close"]["kind"] == "open")
        .map(|s| s["deadline"].as_f64().unwrap())
        .collect();
    assert_eq!(deadlines, [93.1, 94.1]);
}

#[test]
fn records_give_the_close_time_and_open_silences_agree() {
    let (open, closed) = sessions();
    let doc = serde_json::to_value(SessionsDocument::new(open, 10, &closed)).unwrap();
    for s in doc["sessions"].as_array().unwrap() {
        if s["close"]["kind"] == "open" {
            assert!(s["closed"].is_null() && s["closed_utc"].is_null(), "{s}");
            // The silence going on counts: max_silence_s is at least silence_s.
            assert!(s["max_silence_s"].as_f64() >= s["silence_s"].as_f64(), "{s}");
            assert_eq!(s["max_silence_s"], s["silence_s"], "silent since CONNECT: {s}");
        } else {
            // dev-1 disconnected at 0.5 s; its connection's last packet (the broker's FIN that
            // never came, so the client's) is `ended`.
            assert!(
                s["closed"].as_f64().is_some() && s["closed_utc"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{s}"
            );
            assert!(s["closed"].as_f64() <= s["ended"].as_f64(), "{s}");
        }
    }
}
