//! `analyze` of live input (a pipe on standard input, a FIFO): events as packets come,
//! deadlines on the clock, and a signal that still gets the report out.
#![allow(clippy::disallowed_methods)] // waits on real processes and measures real time

use mqtt_keepalive::flow::Side;
use mqtt_keepalive::synth::{self, Capture, Conn, Encap, mqtt};
use mqtt_keepalive::time::Timestamp;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Longest wait for anything the tool should do at once (generous: the machine may be busy;
/// a tool that batches never delivers while the writer waits, so it fails however long).
const PATIENCE: Duration = Duration::from_secs(20);

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"))
}

fn conn() -> Conn {
    Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 1, 2)
}

/// The records of the frames from `from` on, as pcap bytes (without the file header).
fn records(cap: &Capture, from: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (ts, frame) in &cap.frames[from..] {
        synth::write_pcap_record(&mut out, *ts, frame, 65535);
    }
    out
}

fn pcap_header() -> Vec<u8> {
    let mut out = Vec::new();
    synth::write_pcap_header(&mut out, Encap::Ethernet.link_type(), 65535);
    out
}

/// Each line of `out` as JSON, on a channel, as it comes.
fn lines(out: ChildStdout) -> Receiver<serde_json::Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(serde_json::from_str(&line).expect("a JSON line")).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for the event of `kind`; the events before it are returned with it.
fn wait_for(rx: &Receiver<serde_json::Value>, kind: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut seen = Vec::new();
    let until = Instant::now() + PATIENCE;
    loop {
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(e) => {
                let done = e["kind"] == kind;
                seen.push(e);
                if done {
                    return Ok(seen);
                }
            }
            Err(RecvTimeoutError::Timeout) => return Err(format!("no {kind} within {PATIENCE:?}; got {seen:?}")),
            Err(RecvTimeoutError::Disconnected) => return Err(format!("output ended before {kind}; got {seen:?}")),
        }
    }
}

/// Kills the child if a test fails half-way.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the process handles SIGINT (its handler is installed), from /proc.
fn wait_for_sigint_handler(pid: u32) {
    let until = Instant::now() + PATIENCE;
    while Instant::now() < until {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap_or(0);
        if caught & (1 << (libc::SIGINT - 1)) != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the SIGINT handler was never installed");
}

/// Bytes the process has read so far (from /proc: it reads nothing but its input once its
/// signal handler is installed).
fn bytes_read(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("rchar:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

fn sigint(child: &Child) {
    // SAFETY: signalling our own child process, which has not been waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
}

#[test]
fn each_event_of_a_slow_pipe_arrives_before_the_next_packet_is_written() {
    let t = Timestamp::from_secs_f64;
    let mut cap = Capture::new(Encap::Ethernet);
    let mut c = conn();
    // Chunks of the capture, each followed by the event it must produce.
    let mut chunks: Vec<(Vec<u8>, &str)> = Vec::new();
    c.handshake(&mut cap, t(100.0));
    c.send(&mut cap, t(100.1), Side::Client, &mqtt::connect(4, 60, "slow-pipe", false, None));
    let mut first = pcap_header();
    first.extend(records(&cap, 0));
    chunks.push((first, "connect"));
    let mut at = cap.frames.len();
    let mut next = |cap: &mut Capture, chunks: &mut Vec<(Vec<u8>, &str)>, kind| {
        chunks.push((records(cap, at), kind));
        at = cap.frames.len();
    };
    c.send(&mut cap, t(100.2), Side::Broker, &mqtt::connack(0, None));
    next(&mut cap, &mut chunks, "connack");
    for i in 0..6 {
        let s = 101.0 + f64::from(i);
        c.send(&mut cap, t(s), Side::Client, &mqtt::pingreq());
        next(&mut cap, &mut chunks, "pingreq");
        c.send(&mut cap, t(s + 0.01), Side::Broker, &mqtt::pingresp());
        next(&mut cap, &mut chunks, "pingresp");
    }
    let mut child =
        Reap(bin().args(["analyze", "-f", "jsonl", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap());
    let events = lines(child.0.stdout.take().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();
    let mut slowest = Duration::ZERO;
    for (i, (chunk, kind)) in chunks.iter().enumerate() {
        let written = Instant::now();
        stdin.write_all(chunk).unwrap();
        stdin.flush().unwrap();
        // The pipe stays open: the event must come from this chunk alone.
        wait_for(&events, kind).unwrap_or_else(|e| panic!("chunk {i}: {e}"));
        slowest = slowest.max(written.elapsed());
    }
    eprintln!("{} chunks, slowest event {slowest:?} after its packet was written", chunks.len());
    drop(stdin);
    wait_for(&events, "session_end").unwrap(); // the end of the input settles the open session
    assert!(child.0.wait().unwrap().success());
}

#[test]
fn a_silent_client_on_a_fifo_expires_on_the_clock_without_another_packet() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("capture.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let t = Timestamp::from_secs_f64;
    let mut cap = Capture::new(Encap::Ethernet);
    let mut c = conn();
    // Packet time far from this host's clock: only the time between packets counts.
    c.handshake(&mut cap, t(1000.0));
    c.send(&mut cap, t(1000.1), Side::Client, &mqtt::connect(4, 1, "silent-fifo", false, None));
    c.send(&mut cap, t(1000.2), Side::Broker, &mqtt::connack(0, None));
    let mut bytes = pcap_header();
    bytes.extend(records(&cap, 0));

    let mut child = Reap(
        bin()
            .args(["analyze", "-f", "jsonl"])
            .arg(&fifo)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let events = lines(child.0.stdout.take().unwrap());
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    writer.write_all(&bytes).unwrap();
    writer.flush().unwrap();
    let written = Instant::now();
    let seen = wait_for(&events, "keepalive_expired").unwrap();
    let took = written.elapsed();
    eprintln!("keepalive_expired {took:?} after the last packet (deadline 1.4 s after it, grace 1 s)");
    let expired = seen.last().unwrap();
    assert_eq!(expired["ts"].as_f64().unwrap(), 1001.6, "stamped with the deadline: CONNECT + 1.5 x 1 s");
    assert!(took >= Duration::from_millis(1400), "not before the deadline has passed on the clock: {took:?}");
    assert!(!seen.iter().any(|e| e["kind"] == "close"), "the input is still open: {seen:?}");
    drop(writer);
    let rest = wait_for(&events, "session_end").unwrap();
    assert!(!rest.iter().any(|e| e["kind"] == "keepalive_expired"), "expired once: {rest:?}");
    assert!(child.0.wait().unwrap().success());
}

/// A session's packets written to the tool's standard input, which stays open.
fn a_session_on_an_open_pipe(args: &[&str]) -> (Reap, std::process::ChildStdin) {
    let t = Timestamp::from_secs_f64;
    let mut cap = Capture::new(Encap::Ethernet);
    let mut c = conn();
    c.handshake(&mut cap, t(50.0));
    c.send(&mut cap, t(50.1), Side::Client, &mqtt::connect(4, 30, "interrupted", true, None));
    c.send(&mut cap, t(50.2), Side::Broker, &mqtt::connack(0, None));
    c.send(&mut cap, t(60.0), Side::Client, &mqtt::pingreq());
    c.send(&mut cap, t(60.01), Side::Broker, &mqtt::pingresp());
    let mut bytes = pcap_header();
    bytes.extend(records(&cap, 0));
    let mut child =
        Reap(bin().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap());
    wait_for_sigint_handler(child.0.id());
    let before = bytes_read(child.0.id());
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(&bytes).unwrap();
    stdin.flush().unwrap();
    let until = Instant::now() + PATIENCE;
    while bytes_read(child.0.id()) < before + bytes.len() as u64 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, stdin)
}

#[test]
fn ctrl_c_on_an_endless_pipe_still_flushes_the_events() {
    let (mut child, stdin) = a_session_on_an_open_pipe(&["analyze", "-f", "jsonl", "-"]);
    let events = lines(child.0.stdout.take().unwrap());
    wait_for(&events, "pingresp").unwrap();
    sigint(&child.0);
    let rest = wait_for(&events, "session_end").unwrap();
    assert_eq!(rest.first().map(|e| e["kind"].clone()), Some("session_end".into()), "still open: {rest:?}");
    let status = child.0.wait().unwrap();
    let mut err = String::new();
    child.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status:?} {err}");
    assert!(err.contains("input cut short by a signal"), "{err}");
    drop(stdin);
}

#[test]
fn ctrl_c_on_an_endless_pipe_still_prints_the_report() {
    for format in ["json", "text"] {
        let (mut child, stdin) = a_session_on_an_open_pipe(&["analyze", "-f", format, "-"]);
        // The tool has read the packets; nothing shows when they have been analysed, which
        // takes a few milliseconds: give it a moment (a report without the session fails below).
        std::thread::sleep(Duration::from_millis(300));
        sigint(&child.0);
        let mut out = String::new();
        child.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let status = child.0.wait().unwrap();
        let mut err = String::new();
        child.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "{format}: {status:?} {err}");
        assert!(err.contains("input cut short by a signal"), "{format}: {err}");
        if format == "json" {
            let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(doc["sessions"][0]["client_id"], "interrupted", "{doc}");
            assert_eq!(doc["sessions"][0]["close"]["kind"], "open", "{doc}");
            let warnings = doc["capture"]["warnings"].to_string();
            assert!(warnings.contains("input cut short"), "{warnings}");
        } else {
            assert!(out.contains("interrupted") && out.contains("input cut short"), "{out}");
        }
        drop(stdin);
    }
}
