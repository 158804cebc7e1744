//! `probe` end to end: the binary against brokers started here.
//!
//! Without any tool: fake brokers written below (one that never closes anything, one that sends
//! MQTT 5 DISCONNECT 0x8D "Keep Alive timeout" at exactly 1.5 x keepalive and publishes the Will),
//! an unreachable port, bad arguments, Ctrl-C. With tools (ignored unless `--include-ignored`,
//! which CI runs after installing them): mosquitto (default configuration over TCP and WebSocket;
//! `max_keepalive 10` with MQTT 5 and TLS), aedes from npm over TCP and WebSocket
//! (`tests/aedes`, `npm ci` there), and a tcpdump capture of a probe run analysed by `analyze`.
//! Real brokers' timings are asserted as ranges around what was measured (README "probe").

mod common;

use common::{Mosquitto, Reaped, free_port};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn probe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive")).arg("probe").args(args).output().unwrap()
}

/// Runs `probe -f json` and returns its exit status and document.
fn probe_json(args: &[&str]) -> (i32, Value, String) {
    let out = probe(&[args, &["-f", "json", "--no-progress"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), doc, stderr)
}

fn scenario<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["scenarios"].as_array().unwrap().iter().find(|s| s["scenario"] == name).unwrap_or_else(|| panic!("{name}"))
}

fn verdict(s: &Value) -> Option<&str> {
    s["enforcement"]["verdict"].as_str()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

// ---- fake brokers ----

#[derive(Clone, Copy)]
enum Fake {
    /// Answers everything, closes nothing.
    NeverClose,
    /// MQTT 5: Server Keep Alive `max` when the client asks for 0 or more; at 1.5 x the
    /// effective keepalive of silence it sends DISCONNECT 0x8D, publishes the Will and closes.
    Disconnect8d { max: u16 },
    /// At 1.5 x keepalive of silence it publishes the Will and resets the connection (RST).
    Reset,
}

struct FakeBroker {
    port: u16,
    /// Every CONNECT packet received, as bytes.
    connects: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn read_string(b: &[u8], at: &mut usize) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([b[*at], b[*at + 1]]));
    let s = b[*at + 2..*at + 2 + len].to_vec();
    *at += 2 + len;
    s
}

fn read_varint(b: &[u8], at: &mut usize) -> usize {
    let mut v = 0;
    for i in 0..4 {
        let x = b[*at];
        *at += 1;
        v |= usize::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            break;
        }
    }
    v
}

/// `(keepalive, will topic, v5)` of a CONNECT body.
fn parse_connect(body: &[u8]) -> (u16, Option<Vec<u8>>, bool) {
    let mut at = 0;
    read_string(body, &mut at);
    let v5 = body[at] == 5;
    let flags = body[at + 1];
    let keepalive = u16::from_be_bytes([body[at + 2], body[at + 3]]);
    at += 4;
    if v5 {
        let n = read_varint(body, &mut at);
        at += n;
    }
    read_string(body, &mut at); // client id
    let will = (flags & 0x04 != 0).then(|| {
        if v5 {
            let n = read_varint(body, &mut at);
            at += n;
        }
        read_string(body, &mut at)
    });
    (keepalive, will, v5)
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    mqtt_keepalive::mqtt::header::encode_remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

impl FakeBroker {
    fn start(mode: Fake) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connects = Arc::new(Mutex::new(Vec::new()));
        let subscribers: Arc<Mutex<Vec<(TcpStream, bool)>>> = Arc::new(Mutex::new(Vec::new()));
        let seen = connects.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, subscribers) = (seen.clone(), subscribers.clone());
                std::thread::spawn(move || serve(stream, mode, &seen, &subscribers));
            }
        });
        FakeBroker { port, connects }
    }
}

/// One connection of a fake broker. The test's own clock: the probe's clock rule is for the
/// library, and a fake broker has to keep time to play its part.
#[allow(clippy::disallowed_methods)]
fn serve(mut s: TcpStream, mode: Fake, seen: &Mutex<Vec<Vec<u8>>>, subscribers: &Mutex<Vec<(TcpStream, bool)>>) {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = Vec::new();
    let mut last = std::time::Instant::now();
    let mut expiry = None::<Duration>;
    let mut will = None::<Vec<u8>>;
    let mut v5 = false;
    loop {
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                last = std::time::Instant::now();
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        while buf.len() >= 2 {
            let mut at = 1;
            let len = read_varint(&buf, &mut at);
            if buf.len() < at + len {
                break;
            }
            let first = buf[0];
            let body = buf[at..at + len].to_vec();
            let whole: Vec<u8> = buf.drain(..at + len).collect();
            match first >> 4 {
                1 => {
                    seen.lock().unwrap().push(whole);
                    let (k, w, is_v5) = parse_connect(&body);
                    (will, v5) = (w, is_v5);
                    let mut effective = k;
                    let connack = match mode {
                        Fake::Disconnect8d { max } if is_v5 && (k == 0 || k > max) => {
                            effective = max;
                            let [hi, lo] = max.to_be_bytes();
                            vec![0x20, 0x06, 0x00, 0x00, 0x03, 0x13, hi, lo]
                        }
                        _ if is_v5 => vec![0x20, 0x03, 0x00, 0x00, 0x00],
                        _ => vec![0x20, 0x02, 0x00, 0x00],
                    };
                    expiry = (effective > 0).then(|| Duration::from_millis(u64::from(effective) * 1500));
                    let _ = s.write_all(&connack);
                }
                8 => {
                    let suback = if v5 {
                        vec![0x90, 0x04, body[0], body[1], 0x00, 0x00]
                    } else {
                        vec![0x90, 0x03, body[0], body[1], 0x00]
                    };
                    let _ = s.write_all(&suback);
                    subscribers.lock().unwrap().push((s.try_clone().unwrap(), v5));
                }
                12 => {
                    let _ = s.write_all(&[0xd0, 0x00]);
                }
                14 => return, // DISCONNECT: no Will
                _ => {}
            }
        }
        if let (Fake::Disconnect8d { .. } | Fake::Reset, Some(e)) = (mode, expiry)
            && last.elapsed() >= e
        {
            if let Fake::Disconnect8d { .. } = mode {
                let _ = s.write_all(&[0xe0, 0x01, 0x8d]); // DISCONNECT, Keep Alive timeout
            }
            if let Some(topic) = &will {
                for (sub, sub_v5) in subscribers.lock().unwrap().iter_mut() {
                    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
                    body.extend_from_slice(topic);
                    if *sub_v5 {
                        body.push(0); // no properties
                    }
                    body.extend_from_slice(b"will");
                    let _ = sub.write_all(&frame(0x30, &body));
                }
            }
            if let Fake::Reset = mode {
                reset(s);
            } else {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            return;
        }
    }
}

/// Closes a connection with a TCP RST (SO_LINGER 0, set through tokio: std has no stable way).
fn reset(s: TcpStream) {
    s.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().unwrap();
    rt.block_on(async move {
        let s = tokio::net::TcpStream::from_std(s).unwrap();
        s.set_zero_linger().unwrap();
        drop(s);
    });
}

// ---- tests that need nothing installed ----

#[test]
fn a_broker_that_never_closes_is_not_enforced_and_exits_3() {
    let fake = FakeBroker::start(Fake::NeverClose);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret-pw\n").unwrap();
    let url = format!("mqtt://127.0.0.1:{}", fake.port);
    let pwf = pw.to_str().unwrap();
    let (status, doc, stderr) = probe_json(&[
        &url,
        "--keepalives",
        "1",
        "--max-wait",
        "4s",
        "--username",
        "probe-user",
        "--password-file",
        pwf,
    ]);
    assert_eq!(status, 3, "{doc}\n{stderr}");
    // Silent 1 s: deadline 1.5 s after CONNECT, still open past 2.5 s.
    let silent = scenario(&doc, "silent-1");
    assert_eq!(verdict(silent), Some("not_enforced"), "{silent}");
    assert_eq!(silent["close"]["kind"], "open");
    assert_eq!(silent["expired"], true);
    assert_eq!(silent["effective_keepalive_s"], 1);
    // A PINGREQ at 1 s, answered; silent after it, never closed.
    let ping = scenario(&doc, "ping-then-silent-1");
    assert_eq!((ping["silent_after"].as_str(), verdict(ping)), (Some("pingreq"), Some("not_enforced")), "{ping}");
    assert_eq!(ping["pingresp"], 1);
    // Pinging on time: no expiry, no verdict, round trips measured.
    let pinging = scenario(&doc, "pinging-1");
    assert_eq!((pinging["expired"].as_bool(), verdict(pinging)), (Some(false), None), "{pinging}");
    assert_eq!(pinging["pingresp"], 3);
    assert!(f(&pinging["ping_rtt_ms"]["max"]) < 1000.0);
    assert_eq!(verdict(scenario(&doc, "keepalive-0")), None);
    assert_eq!(doc["summary"]["enforcement"]["not_enforced"], 2);
    // The password went on the wire (every CONNECT carries it) and nowhere else.
    let connects = fake.connects.lock().unwrap();
    assert_eq!(connects.len(), 6, "the Will watcher and five scenarios");
    for c in connects.iter() {
        assert!(c.ends_with(b"\x00\x0aprobe-user\x00\x09s3cret-pw"), "{c:?}");
    }
    assert!(!doc.to_string().contains("s3cret") && !stderr.contains("s3cret"));
    // Client ids are unique, and each has a Will on the run's topic.
    let ids: std::collections::HashSet<_> =
        doc["scenarios"].as_array().unwrap().iter().map(|s| s["client_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5);
}

#[test]
fn a_broker_sending_disconnect_0x8d_on_time_exits_0() {
    let fake = FakeBroker::start(Fake::Disconnect8d { max: 2 });
    let url = format!("mqtt://127.0.0.1:{}", fake.port);
    let (status, doc, stderr) = probe_json(&[&url, "--protocol", "5", "--keepalives", "1,2", "--max-wait", "8s"]);
    assert_eq!(status, 0, "{doc}\n{stderr}");
    for name in ["silent-1", "silent-2", "ping-then-silent-2", "above-max", "keepalive-0"] {
        let s = scenario(&doc, name);
        assert_eq!(verdict(s), Some("on_time"), "{s}");
        assert_eq!((s["close"]["kind"].as_str(), s["close"]["reason_code"].as_u64()), (Some("disconnect"), Some(0x8d)));
        let lag = f(&s["enforcement"]["lag_s"]);
        assert!((0.0..0.5).contains(&lag), "{name}: lag {lag}");
        let will = f(&s["will_after_s"]);
        let closed = f(&s["close"]["after_silence_s"]);
        assert!(will >= closed - 0.01 && will < closed + 0.5, "{name}: Will {will} vs close {closed}");
    }
    // MQTT 5 Server Keep Alive: 65535 and 0 both become 2 s, and are enforced as such.
    for name in ["above-max", "keepalive-0"] {
        let s = scenario(&doc, name);
        assert_eq!((s["server_keepalive_s"].as_u64(), s["effective_keepalive_s"].as_u64()), (Some(2), Some(2)));
        assert_eq!(s["expiry_s"], 3.0);
    }
    // The text table of the same broker.
    let out = probe(&[&url, "--protocol", "5", "--keepalives", "1", "--max-wait", "4s"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("DISCONNECT 0x8d") && text.contains("65535 -> 2") && text.contains("on_time"), "{text}");
}

#[test]
fn a_broker_resetting_on_time_is_reported_as_rst() {
    let fake = FakeBroker::start(Fake::Reset);
    let url = format!("mqtt://127.0.0.1:{}", fake.port);
    let (status, doc, stderr) = probe_json(&[&url, "--keepalives", "1", "--max-wait", "5s"]);
    assert_eq!(status, 0, "{doc}\n{stderr}");
    for name in ["silent-1", "ping-then-silent-1"] {
        let s = scenario(&doc, name);
        assert_eq!((s["close"]["kind"].as_str(), s["close"]["by"].as_str()), (Some("rst"), Some("broker")), "{s}");
        assert_eq!(verdict(s), Some("on_time"), "{s}");
        assert!(f(&s["will_after_s"]) < f(&s["close"]["after_silence_s"]) + 0.5, "{s}");
    }
    assert_eq!(scenario(&doc, "above-max")["note"], "deadline after the end of the run (--max-wait)");
}

#[test]
fn an_unreachable_broker_exits_2_with_the_reason() {
    let port = free_port(); // bound and released: nothing listens there
    let out = probe(&[&format!("mqtt://127.0.0.1:{port}"), "--password", "hunter2-pw", "--username", "u"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot connect to mqtt://127.0.0.1") && stderr.contains("refused"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(!stderr.contains("hunter2"));
}

#[test]
fn a_broker_refusing_the_credentials_exits_2_naming_the_code() {
    // A broker that answers every CONNECT with "not authorized" (3.1.1 code 5).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut b = [0u8; 512];
            let _ = s.read(&mut b);
            let _ = s.write_all(&[0x20, 0x02, 0x00, 0x05]);
        }
    });
    let out = probe(&[&format!("mqtt://127.0.0.1:{port}"), "--username", "u", "--password", "wrong-pw"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CONNACK code 0x05 (not authorized)"), "{stderr}");
    assert!(!stderr.contains("wrong-pw"));
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    for (args, says) in [
        (&["http://h"][..], "scheme"),
        (&["mqtt://u:pw@h"][..], "--password-file"),
        (&["mqtt://h", "--keepalives", "0,5"][..], "keepalive 0"),
        (&["mqtt://h", "--max-wait", "0s"][..], "--max-wait"),
        (&["mqtt://h", "--keepalives", "70000"][..], "70000"),
        (&["mqtt://h", "--password-file", "/nonexistent/pw"][..], "/nonexistent/pw"),
        (&["mqtts://127.0.0.1:1", "--cafile", "/nonexistent/ca.pem"][..], "/nonexistent/ca.pem"),
    ] {
        let out = probe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn ctrl_c_prints_the_partial_table() {
    let fake = FakeBroker::start(Fake::NeverClose);
    let child = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .args(["probe", &format!("mqtt://127.0.0.1:{}", fake.port), "--keepalives", "1", "--max-wait", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    std::thread::sleep(Duration::from_millis(2500));
    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let mut stdout = String::new();
    child.0.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("interrupted: partial results"), "{stdout}");
    // Expired at 1.5 s, still open when stopped at 2.5 s: within the tolerance, no verdict yet
    // is given, but the scenario is in the table.
    assert!(stdout.contains("silent-1") && stdout.contains("kept open"), "{stdout}");
}

/// A WebSocket broker that, at 1.5 x keepalive of silence, sends a WebSocket close frame (1008,
/// policy violation) and publishes no Will; it answers CONNECT, SUBSCRIBE and PINGREQ.
#[allow(clippy::disallowed_methods)] // the fake broker keeps its own time (see `serve`)
fn websocket_closing_broker() -> u16 {
    use tungstenite::Message;
    use tungstenite::handshake::server::{Request, Response};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                // tungstenite's handshake callback type has a large error variant; not ours to change.
                #[allow(clippy::result_large_err)]
                let answer = |_: &Request, mut resp: Response| {
                    resp.headers_mut().insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
                    Ok(resp)
                };
                let Ok(mut ws) = tungstenite::accept_hdr(stream, answer) else { return };
                ws.get_ref().set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let (mut buf, mut last, mut expiry) = (Vec::new(), std::time::Instant::now(), None::<Duration>);
                loop {
                    match ws.read() {
                        Ok(Message::Binary(b)) => {
                            buf.extend_from_slice(&b);
                            last = std::time::Instant::now();
                        }
                        Ok(_) => {}
                        Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                    while buf.len() >= 2 {
                        let mut at = 1;
                        let len = read_varint(&buf, &mut at);
                        if buf.len() < at + len {
                            break;
                        }
                        let packet: Vec<u8> = buf.drain(..at + len).collect();
                        let reply = match packet[0] >> 4 {
                            1 => {
                                let (k, _, _) = parse_connect(&packet[at..]);
                                expiry = (k > 0).then(|| Duration::from_millis(u64::from(k) * 1500));
                                vec![0x20, 0x02, 0x00, 0x00]
                            }
                            8 => vec![0x90, 0x03, packet[at], packet[at + 1], 0x00],
                            12 => vec![0xd0, 0x00],
                            _ => continue,
                        };
                        let _ = ws.send(Message::binary(reply));
                    }
                    if expiry.is_some_and(|e| last.elapsed() >= e) {
                        let frame = tungstenite::protocol::CloseFrame {
                            code: tungstenite::protocol::frame::coding::CloseCode::Policy,
                            reason: "keepalive".into(),
                        };
                        let _ = ws.close(Some(frame));
                        expiry = None;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_websocket_close_frame_is_reported_and_a_missing_will_is_a_problem() {
    let port = websocket_closing_broker();
    let (status, doc, stderr) =
        probe_json(&[&format!("ws://127.0.0.1:{port}/mqtt"), "--keepalives", "1", "--max-wait", "5s"]);
    assert_eq!(status, 3, "{doc}\n{stderr}");
    let s = scenario(&doc, "silent-1");
    assert_eq!((s["close"]["kind"].as_str(), s["close"]["websocket_code"].as_u64()), (Some("websocket"), Some(1008)));
    assert_eq!(verdict(s), Some("on_time"), "{s}");
    assert!(s["problem"].as_str().unwrap().contains("published no Will"), "{s}");
    assert_eq!(s["will_after_s"], Value::Null);
    let text = probe(&[&format!("ws://127.0.0.1:{port}/mqtt"), "--keepalives", "1", "--max-wait", "3s"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("ws close 1008") && text.contains("Problems:"), "{text}");
}

#[test]
#[ignore = "needs script(1) from util-linux for a terminal"]
fn progress_is_shown_on_a_terminal_only() {
    let fake = FakeBroker::start(Fake::NeverClose);
    let cmd = format!(
        "{} probe mqtt://127.0.0.1:{} --keepalives 1 --max-wait 3s",
        env!("CARGO_BIN_EXE_mqtt-keepalive"),
        fake.port
    );
    // script(1) runs the command on a pseudo-terminal and copies what it wrote.
    let out = Command::new("script").args(["-q", "-e", "-c", &cmd, "/dev/null"]).output().unwrap();
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(seen.contains("probing mqtt://127.0.0.1") && seen.contains("connections done"), "{seen}");
    assert!(seen.contains("SCENARIO"), "the table follows: {seen}");
    // Piped: no progress.
    let piped = probe(&[&format!("mqtt://127.0.0.1:{}", fake.port), "--keepalives", "1", "--max-wait", "3s"]);
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("probing"));
}

// ---- real brokers ----

/// A mosquitto with an MQTT listener and a WebSocket listener; returns it and the WebSocket port.
fn mosquitto_with_websocket(extra: &str) -> (Mosquitto, u16) {
    let ws = free_port();
    let broker = Mosquitto::start(&format!("{extra}\nlistener {ws} 127.0.0.1\nprotocol websockets"));
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", ws)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, ws)
}

/// What mosquitto 2.0.11 does with a silent client, measured (README): closes with a bare FIN
/// between about one keepalive (1.5 x keepalive rounded down) and 1.5 x keepalive + 7 s (its
/// checks fall on a grid of about 6 s whose phase differs from run to run), never leaves it
/// open, and publishes the Will at the close.
fn assert_mosquitto_silent(doc: &Value, keepalives: &[u64]) {
    for k in keepalives {
        let s = scenario(doc, &format!("silent-{k}"));
        assert_eq!((s["close"]["kind"].as_str(), s["close"]["by"].as_str()), (Some("fin"), Some("broker")), "{s}");
        let closed = f(&s["close"]["after_silence_s"]);
        let k = *k as f64;
        assert!(closed >= k && closed <= 1.5 * k + 7.0, "silent-{k}: closed after {closed} s");
        assert!(matches!(verdict(s), Some("on_time" | "late" | "early")), "{s}");
        let will = f(&s["will_after_s"]);
        assert!(will >= closed - 0.01 && will < closed + 0.5, "silent-{k}: Will {will}, close {closed}");
    }
}

#[test]
#[ignore = "needs mosquitto"]
fn mosquitto_default_config_over_tcp_and_websocket() {
    let (broker, ws) = mosquitto_with_websocket("");
    let tcp_url = format!("mqtt://127.0.0.1:{}", broker.port);
    let ws_url = format!("ws://127.0.0.1:{ws}/mqtt");
    let args = ["--keepalives", "1,2,5", "--max-wait", "18s"];
    let over_ws = std::thread::spawn(move || probe_json(&[&[ws_url.as_str()][..], &args].concat()));
    let (status, doc, stderr) = probe_json(&[&[tcp_url.as_str()][..], &args].concat());
    let (ws_status, ws_doc, ws_stderr) = over_ws.join().unwrap();
    for (status, doc, stderr) in [(status, &doc, &stderr), (ws_status, &ws_doc, &ws_stderr)] {
        assert!(status == 0 || status == 3, "{doc}\n{stderr}");
        assert_eq!(status == 0, doc["summary"]["exit_status"] == 0);
        assert_mosquitto_silent(doc, &[1, 2, 5]);
        // The clock restarts at the PINGREQ: no close within a keepalive of it.
        let ping = scenario(doc, "ping-then-silent-2");
        assert_eq!(ping["silent_after"], "pingreq");
        assert!(f(&ping["close"]["after_silence_s"]) >= 2.0, "{ping}");
        let pinging = scenario(doc, "pinging-2");
        assert_eq!((pinging["close"]["kind"].as_str(), pinging["pingresp"].as_u64()), (Some("open"), Some(3)));
        assert!(f(&pinging["ping_rtt_ms"]["median"]) < 100.0);
        // Keepalive 0 and 65535 are accepted and left alone for the run.
        for name in ["keepalive-0", "above-max"] {
            let s = scenario(doc, name);
            assert_eq!((s["connack_code"].as_u64(), s["close"]["kind"].as_str()), (Some(0), Some("open")), "{s}");
            assert_eq!(s["server_keepalive_s"], Value::Null);
        }
    }
}

#[test]
#[ignore = "needs mosquitto, openssl, tcpdump and root"]
fn mosquitto_max_keepalive_mqtt5_captured_and_analysed_alike() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start("max_keepalive 10");
    let pcap = dir.path().join("probe.pcap");
    // -B: in immediate mode libpcap's ring holds few snaplen-sized frames (2 MiB / 256 KiB on
    // lo), and the probe's burst of connections at the start overflowed it (kernel drops seen).
    let tcpdump = Command::new("tcpdump")
        .args(["-i", "lo", "-B", "65536", "-U", "--immediate-mode", "-w"])
        .arg(&pcap)
        .arg(format!("tcp port {}", broker.port))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tcpdump = Reaped(tcpdump);
    // tcpdump says "listening on lo" once its capture is open.
    let mut said = std::io::BufReader::new(tcpdump.0.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut said, &mut line).unwrap();
    assert!(line.contains("listening on"), "tcpdump: {line}");
    std::thread::spawn(move || std::io::copy(&mut said, &mut std::io::sink()));
    std::thread::sleep(Duration::from_millis(200));
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let (status, doc, stderr) = probe_json(&[&url, "--protocol", "5", "--keepalives", "1,5", "--max-wait", "26s"]);
    assert!(status == 0 || status == 3, "{doc}\n{stderr}");
    assert_mosquitto_silent(&doc, &[1, 5]);
    // Server Keep Alive 10 replaces 65535 and 0, and mosquitto enforces that.
    for name in ["above-max", "keepalive-0"] {
        let s = scenario(&doc, name);
        assert_eq!((s["server_keepalive_s"].as_u64(), s["effective_keepalive_s"].as_u64()), (Some(10), Some(10)));
        let closed = f(&s["close"]["after_silence_s"]);
        assert!((10.0..=22.0).contains(&closed), "{name}: closed after {closed}");
        assert!(matches!(verdict(s), Some("on_time" | "late" | "early")), "{s}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").args(["-INT", &tcpdump.0.id().to_string()]).status();
    let _ = tcpdump.0.wait();

    // analyze of the capture: the same verdict for every probe connection, by client id.
    let out = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
        .args(["analyze", "-f", "json", "--port", &broker.port.to_string()])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let analysed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = analysed["sessions"].as_array().unwrap();
    let mut compared = 0;
    for s in doc["scenarios"].as_array().unwrap() {
        let id = s["client_id"].as_str().unwrap();
        let a = sessions
            .iter()
            .find(|a| a["client_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in the capture: {analysed}"));
        assert_eq!(a["enforcement"]["verdict"], s["enforcement"]["verdict"], "{id}: capture {a}\nprobe {s}");
        assert_eq!(a["effective_keepalive_s"], s["effective_keepalive_s"], "{id}");
        if s["close"]["by"] == "broker" {
            assert_eq!(a["close"]["kind"], s["close"]["kind"], "{id}");
            let (wire, socket) = (f(&a["close"]["after_silence_s"]), f(&s["close"]["after_silence_s"]));
            assert!((wire - socket).abs() < 0.05, "{id}: capture {wire} s, socket {socket} s");
        }
        compared += 1;
    }
    assert_eq!(compared, 6);
}

#[test]
#[ignore = "needs mosquitto and openssl"]
fn mosquitto_over_tls_and_websocket_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let openssl = |cmd: &str| {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let out = Command::new("openssl").current_dir(d).args(&args).output().expect("openssl is installed");
        assert!(out.status.success(), "openssl {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    };
    // A CA; a server certificate for localhost; a client certificate (X.509 v3, with extensions:
    // rustls refuses v1 certificates) for a listener that requires one.
    std::fs::write(d.join("server.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
    std::fs::write(d.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=probe-test-CA");
    for who in ["server", "client"] {
        let cn = if who == "server" { "localhost" } else { "probe" };
        openssl(&format!("req -newkey rsa:2048 -nodes -keyout {who}.key -out {who}.csr -subj /CN={cn}"));
        openssl(&format!(
            "x509 -req -in {who}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {who}.pem -days 1 -extfile {who}.cnf"
        ));
    }
    // mosquitto started as root drops to its own user: it must be able to read the files.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["ca.pem", "server.pem", "server.key", "client.pem", "client.key"] {
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (tls, wss, mtls) = (free_port(), free_port(), free_port());
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let certs = format!("cafile {}\ncertfile {}\nkeyfile {}", p("ca.pem"), p("server.pem"), p("server.key"));
    let _broker = Mosquitto::start(&format!(
        "listener {tls} 127.0.0.1\n{certs}\nlistener {wss} 127.0.0.1\nprotocol websockets\n{certs}\n\
         listener {mtls} 127.0.0.1\n{certs}\nrequire_certificate true"
    ));
    std::thread::sleep(Duration::from_millis(300));
    let url = format!("mqtts://localhost:{tls}");
    let wss_args = [format!("wss://localhost:{wss}/mqtt"), "--cafile".into(), p("ca.pem")];
    let over_wss = std::thread::spawn(move || {
        let args: Vec<&str> = wss_args.iter().map(String::as_str).collect();
        probe_json(&[&args[..], &["--keepalives", "1", "--max-wait", "10s"]].concat())
    });
    let (status, doc, stderr) = probe_json(&[&url, "--cafile", &p("ca.pem"), "--keepalives", "1", "--max-wait", "10s"]);
    assert!(status == 0 || status == 3, "{doc}\n{stderr}");
    assert_mosquitto_silent(&doc, &[1]);
    let (status, doc, stderr) = over_wss.join().unwrap();
    assert!(status == 0 || status == 3, "{doc}\n{stderr}");
    assert_mosquitto_silent(&doc, &[1]);
    // Without the CA the certificate is refused: exit 2, saying so; --insecure gets through.
    let out = probe(&[&url, "--keepalives", "1", "--max-wait", "3s", "--cafile", &p("server.pem")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("TLS") && stderr.to_lowercase().contains("certificate"), "{stderr}");
    let (status, doc, _) = probe_json(&[&url, "--insecure", "--keepalives", "1", "--max-wait", "3s"]);
    assert!(status == 0 || status == 3, "{doc}");
    assert_eq!(scenario(&doc, "silent-1")["connack_code"], 0);
    // A listener requiring a client certificate: refused without one, accepted with --cert/--key.
    let mtls_url = format!("mqtts://localhost:{mtls}");
    let out = probe(&[&mtls_url, "--cafile", &p("ca.pem"), "--keepalives", "1", "--max-wait", "3s"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, doc, stderr) = probe_json(&[
        &mtls_url,
        "--cafile",
        &p("ca.pem"),
        "--cert",
        &p("client.pem"),
        "--key",
        &p("client.key"),
        "--keepalives",
        "1",
        "--max-wait",
        "3s",
    ]);
    assert!(status == 0 || status == 3, "{doc}\n{stderr}");
    assert_eq!(scenario(&doc, "silent-1")["connack_code"], 0);
}

/// The aedes broker of tests/aedes (TCP and WebSocket), stopped on drop.
fn aedes() -> (Reaped, u16, u16) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aedes");
    assert!(dir.join("node_modules/aedes").exists(), "run `npm ci` in tests/aedes first");
    let (tcp, ws) = (free_port(), free_port());
    let mut child = Command::new("node")
        .current_dir(&dir)
        .args(["broker.mjs", &tcp.to_string(), &ws.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node is installed");
    let mut line = [0u8; 6];
    child.stdout.take().unwrap().read_exact(&mut line).unwrap();
    assert_eq!(&line, b"ready\n");
    (Reaped(child), tcp, ws)
}

#[test]
#[ignore = "needs node and `npm ci` in tests/aedes"]
fn aedes_over_tcp_and_websocket_is_on_time() {
    let (_aedes, tcp, ws) = aedes();
    let args = ["--keepalives", "1,2,5", "--max-wait", "12s"];
    let ws_url = format!("ws://127.0.0.1:{ws}/mqtt");
    let over_ws = std::thread::spawn(move || probe_json(&[&[ws_url.as_str()][..], &args].concat()));
    let tcp_url = format!("mqtt://127.0.0.1:{tcp}");
    let (status, doc, stderr) = probe_json(&[&[tcp_url.as_str()][..], &args].concat());
    let (ws_status, ws_doc, ws_stderr) = over_ws.join().unwrap();
    for (status, doc, stderr) in [(status, &doc, &stderr), (ws_status, &ws_doc, &ws_stderr)] {
        // aedes: a timer of 1.5 x keepalive + 1 ms, restarted by every packet; a FIN at expiry.
        assert_eq!(status, 0, "{doc}\n{stderr}");
        for name in ["silent-1", "silent-2", "silent-5", "ping-then-silent-2"] {
            let s = scenario(doc, name);
            assert_eq!((verdict(s), s["close"]["kind"].as_str()), (Some("on_time"), Some("fin")), "{s}");
            let lag = f(&s["enforcement"]["lag_s"]);
            assert!((0.0..0.3).contains(&lag), "{name}: lag {lag}");
            assert!(f(&s["will_after_s"]) - f(&s["close"]["after_silence_s"]) < 0.3, "{s}");
        }
        for name in ["keepalive-0", "above-max", "pinging-2"] {
            assert_eq!(scenario(doc, name)["close"]["kind"], "open", "{name}");
        }
    }
    // aedes speaks no MQTT 5: it answers with the 3.1.1 code 1, and the probe cannot run.
    let out = probe(&[&format!("mqtt://127.0.0.1:{tcp}"), "--protocol", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("CONNACK code 0x01") && stderr.contains("does not speak MQTT 5"), "{stderr}");
}
