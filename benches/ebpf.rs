//! The eBPF backend's cost (issue #13), on a real mosquitto with a TLS listener on loopback:
//! (a) the overhead the probes add to the broker: QoS 1 publishes a second through mosquitto,
//!     without and with the agent attached, alternated in the same run (medians), and the broker
//!     CPU a publish costs either way, hence the cost per probed SSL call;
//! (b) the ring-buffer records a second the agent takes at those loads, and its drop counter;
//! (c) the agent's CPU (user + system seconds per second of wall, from /proc/PID/stat);
//! (d) the floor, in the same rounds: empty bpftrace programs on the same SSL functions (an
//!     entry uprobe only, then an entry and a return uprobe), so the agent's cost per probed
//!     SSL call is read as a ratio to what a uprobe costs on this machine now (uprobe traps
//!     cost several times more on some VMs than on others: only ratios in one run compare).
//!
//!     cargo bench --bench ebpf           (EBPF_BENCH_SECS=N: seconds per phase, default 5)
//!
//! The bench makes a CA and a server certificate with openssl in a temporary directory, starts
//! mosquitto on a free port, and drives it with its own TLS clients (rustls, so the clients never
//! enter the probed libssl): each connection keeps a window of QoS 1 PUBLISHes in flight (one
//! TLS record each, 16-byte payloads), reads the PUBACKs, and sends a PINGREQ every 5,000
//! publishes. The agent is the binary `cargo bench` builds (the shipped profile's settings; `live --backend ebpf --pid <mosquitto>`), started
//! and stopped around each measured phase, so its CPU is its own process's and a phase without
//! it has no probes attached. Records a publish makes (SSL_read and SSL_write calls that moved
//! bytes) are counted once by the same eBPF source run in this process. Needs root, mosquitto and
//! openssl; without them it says why and exits 0.
#![allow(clippy::disallowed_methods)] // waits on real processes and measures real time

mod common;

use mqtt_keepalive::capture::ebpf::{Binding, EbpfOptions, EbpfSource};
use mqtt_keepalive::flow::PortSet;
use mqtt_keepalive::layer::Transport;
use mqtt_keepalive::pipeline::Pipeline;
use mqtt_keepalive::time::Timestamp;
use mqtt_keepalive::tracker::TrackerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// QoS 1 PUBLISHes in flight per connection.
const WINDOW: u64 = 64;
/// A PINGREQ every this many publishes, per connection.
const PING_EVERY: u64 = 5000;
const PAYLOAD: [u8; 16] = *b"0123456789abcdef";

fn main() {
    if let Err(why) = preflight() {
        println!("ebpf bench skipped: {why}");
        return;
    }
    let secs: u64 = std::env::var("EBPF_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let phase = Duration::from_secs(secs.max(1));
    let dir = tempfile::tempdir().expect("temporary directory");
    if let Err(why) = make_certs(dir.path()) {
        println!("ebpf bench skipped: making certificates with openssl failed: {why}");
        return;
    }
    let mut broker = match Broker::start(dir.path()) {
        Ok(b) => b,
        Err(why) => {
            println!("ebpf bench skipped: mosquitto did not start: {why}");
            return;
        }
    };
    let client = Arc::new(tls_config(&dir.path().join("ca.crt")));
    let result = run(&broker, &client, dir.path(), phase);
    broker.stop();
    if let Err(why) = result {
        println!("ebpf bench skipped: {why}");
    }
}

fn preflight() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root (the eBPF backend loads BPF programs and uprobes)".into());
    }
    for tool in ["mosquitto", "openssl"] {
        if !common::have(tool) {
            return Err(format!("{tool} is not installed"));
        }
    }
    Ok(())
}

/// The whole measurement; an error is a setup problem (the agent cannot attach on this host).
fn run(broker: &Broker, client: &Arc<ClientConfig>, dir: &Path, phase: Duration) -> Result<(), String> {
    let mosq = broker.pid;
    let port = broker.port;
    println!(
        "eBPF backend cost: mosquitto {} (pid {mosq}) with a TLS listener on 127.0.0.1:{port}; {} s phases; \
         {} cores, kernel {}",
        mosquitto_version(),
        phase.as_secs(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        kernel_release()
    );
    // Warm-up (TLS session set-up paths, page cache, CPU frequency): not reported.
    load(client, port, 4, None, Duration::from_secs(2), None, None);

    // (a) Alternate without / with, 4 connections publishing as fast as they can; (d) the
    // floor's empty probes in the same rounds.
    let libssl = mqtt_keepalive::capture::ebpf::target::Proc::system()
        .ssl_libraries(mosq)
        .map_err(|e| e.to_string())?
        .into_iter()
        .next()
        .ok_or("mosquitto maps no libssl")?
        .path;
    let floors = common::have("bpftrace");
    let mut rows: Vec<(String, Phase)> = Vec::new();
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut entry = Vec::new();
    let mut entry_return = Vec::new();
    let mut checks = Vec::new();
    let inner = mqtt_keepalive::capture::ebpf::inner::find(&libssl);
    let mut with_exported = Vec::new();
    let mut inner_floor = Vec::new();
    for round in 1..=3 {
        let p = load(client, port, 4, None, phase, Some(mosq), None);
        rows.push((format!("without agent, round {round}"), p));
        without.push(p);
        let agent = Agent::start(dir, port, mosq, false)?;
        let before = agent.metrics();
        let p = load(client, port, 4, None, phase, Some(mosq), Some(agent.pid()));
        let after = agent.metrics();
        checks.push(Check::new(&format!("round {round}"), &before, &after, &p));
        agent.stop();
        rows.push((format!("with agent, round {round}"), p));
        with.push(p);
        if inner.is_some() {
            // The same agent probing the exported functions (the placement before).
            let agent = Agent::start(dir, port, mosq, true)?;
            let before = agent.metrics();
            let p = load(client, port, 4, None, phase, Some(mosq), Some(agent.pid()));
            let after = agent.metrics();
            checks.push(Check::new(&format!("round {round}, exported"), &before, &after, &p));
            agent.stop();
            std::thread::sleep(Duration::from_secs(3));
            rows.push((format!("agent, exported fns, {round}"), p));
            with_exported.push(p);
        }
        if let Some(inner) = inner {
            // The floor where the agent now probes: empty probes (tracefs events, no program).
            let floor = TraceFsFloor::start(&libssl, inner)?;
            let p = load(client, port, 4, None, phase, Some(mosq), None);
            floor.stop();
            std::thread::sleep(Duration::from_secs(3));
            rows.push((format!("empty inner probes, {round}"), p));
            inner_floor.push(p);
        }
        if floors {
            for (returns, list, name) in
                [(false, &mut entry, "empty entry probes"), (true, &mut entry_return, "empty entry+return")]
            {
                let floor = Floor::start(&libssl, mosq, returns)?;
                let p = load(client, port, 4, None, phase, Some(mosq), None);
                floor.stop();
                // Uprobes are taken out after the program exits, not at once (seconds under
                // load): the next phase must not run on them.
                std::thread::sleep(Duration::from_secs(3));
                rows.push((format!("{name}, round {round}"), p));
                list.push(p);
            }
        }
    }

    // (b), (c): one agent through rising loads.
    let agent = Agent::start(dir, port, mosq, false)?;
    let mut loads: Vec<(String, Phase)> = Vec::new();
    let idle = Duration::from_secs(2);
    loads.push(("idle (no clients)".into(), load(client, port, 0, None, idle, Some(mosq), Some(agent.pid()))));
    for (name, conns, rate) in [
        ("1,000 publishes/s, 4 connections", 4, Some(1000)),
        ("3,000 publishes/s, 4 connections", 4, Some(3000)),
        ("10,000 publishes/s, 4 connections", 4, Some(10_000)),
    ] {
        let before = agent.metrics();
        let p = load(client, port, conns, rate, phase, Some(mosq), Some(agent.pid()));
        checks.push(Check::new(name, &before, &agent.metrics(), &p));
        loads.push((name.into(), p));
    }
    for conns in [1, 16] {
        let name = format!("as fast as possible, {conns} connection{}", if conns == 1 { "" } else { "s" });
        let before = agent.metrics();
        let p = load(client, port, conns, None, phase, Some(mosq), Some(agent.pid()));
        checks.push(Check::new(&name, &before, &agent.metrics(), &p));
        loads.push((name, p));
    }
    agent.stop();

    // Records a publish makes, counted by the eBPF source itself in this process.
    let cal = calibrate(client, port, mosq, Duration::from_secs(3))?;
    let per_pub = cal.records as f64 / cal.publishes.max(1) as f64;

    println!();
    println!("(a) broker throughput, 4 TLS connections, QoS 1, as fast as possible (alternating)");
    println!(
        "{:<26} {:>12} {:>11} {:>11} {:>14} {:>11} {:>10} {:>12}",
        "phase", "publishes/s", "broker CPU", "of it sys", "broker us/pub", "client CPU", "agent CPU", "agent us/rec"
    );
    for (name, p) in &rows {
        print_row(name, p, per_pub);
    }
    let med = |v: &[Phase], f: fn(&Phase) -> f64| median(v.iter().map(f).collect());
    let rate_wo = med(&without, Phase::rate);
    let rate_w = med(&with, Phase::rate);
    let us_wo = med(&without, Phase::broker_us_per_pub);
    let us_w = med(&with, Phase::broker_us_per_pub);
    let delta_us = us_w - us_wo;
    let wall_us = 1e6 / rate_w - 1e6 / rate_wo;
    println!();
    println!("records a publish makes (counted by the eBPF source): {per_pub:.2}");
    println!(
        "  ({} records for {} publishes in {:.1} s, ring drops {}, lost bytes {}, unbound calls {})",
        cal.records, cal.publishes, cal.secs, cal.stats.ring_drops, cal.stats.lost_bytes, cal.stats.unbound_calls
    );
    println!(
        "median publishes/s: {rate_wo:.0} without, {rate_w:.0} with the agent: {:+.1}% ({:+.2} us of wall per publish)",
        (rate_w / rate_wo - 1.0) * 100.0,
        wall_us
    );
    println!(
        "median broker CPU per publish: {us_wo:.2} us without, {us_w:.2} us with: {delta_us:+.2} us per publish = \
         {:+.2} us per record (SSL call that moved bytes)",
        delta_us / per_pub
    );
    if floors {
        // The same SSL calls are probed in each: the ratio of the added CPU per publish is the
        // ratio per probed call.
        let added = |v: &[Phase]| med(v, Phase::broker_us_per_pub) - us_wo;
        let (e, er) = (added(&entry), added(&entry_return));
        println!(
            "floor (empty bpftrace probes on {}): +{e:.2} us per publish with an entry probe, +{er:.2} with entry + \
             return",
            libssl.display()
        );
        println!(
            "agent cost per probed SSL call: {:.2}x an empty entry probe's, {:.2}x an empty entry + return's \
             (medians of 3 rounds; per round: {})",
            delta_us / e,
            delta_us / er,
            (0..with.len())
                .map(|i| {
                    let base = without[i].broker_us_per_pub();
                    format!("{:.2}x", (with[i].broker_us_per_pub() - base) / (entry[i].broker_us_per_pub() - base))
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        println!("floor not measured: bpftrace is not installed");
    }
    let added = |v: &[Phase]| med(v, Phase::broker_us_per_pub) - us_wo;
    match inner {
        Some(inner) => {
            let (x, f) = (added(&with_exported), added(&inner_floor));
            println!(
                "probe placement: the agent probes libssl's inner read ({:#x}, entry + return) and write ({:#x}, \
                 entry); with the exported functions probed instead: +{x:.2} us per publish ({:.1}x the inner \
                 placement's +{delta_us:.2})",
                inner.read,
                inner.write,
                x / delta_us
            );
            println!(
                "floor at the inner placement (empty tracefs uprobes, entry + return on the read, entry on the \
                 write): +{f:.2} us per publish; the agent is {:.2}x it",
                delta_us / f
            );
            if floors {
                let e = added(&entry);
                println!(
                    "agent (inner placement) per probed call: {:.2}x an empty entry probe on the exported functions",
                    delta_us / e
                );
            }
        }
        None => println!("probe placement: the exported SSL functions (no inner functions found in this libssl)"),
    }

    println!();
    println!("(b), (c) one agent through rising loads (records/s = publishes/s x {per_pub:.2})");
    println!(
        "{:<36} {:>12} {:>10} {:>11} {:>12} {:>11} {:>10}",
        "load", "publishes/s", "records/s", "agent CPU", "agent us/rec", "broker CPU", "ring drops"
    );
    for (name, p) in &loads {
        println!(
            "{:<36} {:>12.0} {:>10.0} {:>11.4} {:>12.2} {:>11.3} {:>10}",
            name,
            p.rate(),
            p.rate() * per_pub,
            p.agent_cpu(),
            p.agent_us_per_record(per_pub),
            p.broker_cpu(),
            checks.iter().find(|c| c.name == *name).map_or("-".to_string(), |c| c.drops.to_string()),
        );
    }
    let mx: Vec<Phase> = with.clone();
    println!(
        "{:<36} {:>12.0} {:>10.0} {:>11.4} {:>12.2} {:>11.3} {:>10}",
        "as fast as possible, 4 (median of 3)",
        rate_w,
        rate_w * per_pub,
        med(&mx, Phase::agent_cpu),
        median(mx.iter().map(|p| p.agent_us_per_record(per_pub)).collect()),
        med(&mx, Phase::broker_cpu),
        checks.iter().filter(|c| c.name.starts_with("round")).map(|c| c.drops).sum::<u64>(),
    );

    println!();
    println!("what the agent counted (its /metrics, before and after each phase) against what the clients did:");
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "phase", "connects", "counted", "pingreqs", "counted", "ring drops", "stream gaps"
    );
    for c in &checks {
        println!(
            "{:<36} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
            c.name, c.connects, c.connects_counted, c.pings, c.pings_counted, c.drops, c.gaps
        );
    }
    println!("(CPU columns: seconds of CPU per second of wall, user + system, from /proc/PID/stat)");
    Ok(())
}

fn print_row(name: &str, p: &Phase, per_pub: f64) {
    let agent = |v: f64| if p.agent.is_some() { format!("{v:.3}") } else { "-".into() };
    println!(
        "{:<26} {:>12.0} {:>11.3} {:>11.3} {:>14.2} {:>11.3} {:>10} {:>12}",
        name,
        p.rate(),
        p.broker_cpu(),
        p.broker_sys / p.wall,
        p.broker_us_per_pub(),
        p.client_cpu(),
        agent(p.agent_cpu()),
        if p.agent.is_some() { format!("{:.2}", p.agent_us_per_record(per_pub)) } else { "-".into() },
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// What one measured phase did.
#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    wall: f64,
    /// Publishes acknowledged within the phase.
    acked: u64,
    /// Publishes sent in all (the tail acknowledged after the phase included).
    sent: u64,
    pings: u64,
    connects: u64,
    broker: f64,
    /// Of `broker`, system time (where uprobes, their traps and the BPF programs are counted).
    broker_sys: f64,
    client: f64,
    agent: Option<f64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.wall
    }
    fn broker_cpu(&self) -> f64 {
        self.broker / self.wall
    }
    fn client_cpu(&self) -> f64 {
        self.client / self.wall
    }
    fn agent_cpu(&self) -> f64 {
        self.agent.unwrap_or(0.0) / self.wall
    }
    fn broker_us_per_pub(&self) -> f64 {
        self.broker * 1e6 / self.acked.max(1) as f64
    }
    fn agent_us_per_record(&self, per_pub: f64) -> f64 {
        if self.acked == 0 {
            return f64::NAN;
        }
        self.agent.unwrap_or(0.0) * 1e6 / (self.acked as f64 * per_pub)
    }
}

/// Runs `conns` TLS connections for `dur` (each connects first, not timed), publishing at `rate`
/// a second in all (`None`: as fast as the window allows), then drains their acks and
/// disconnects. CPU of the broker and of the agent (pids) is read over the timed part.
fn load(
    client: &Arc<ClientConfig>,
    port: u16,
    conns: usize,
    rate: Option<u64>,
    dur: Duration,
    broker: Option<u32>,
    agent: Option<u32>,
) -> Phase {
    let start = Arc::new(Barrier::new(conns + 1));
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let per_conn = rate.map(|r| r as f64 / conns.max(1) as f64);
    let handles: Vec<_> = (0..conns)
        .map(|i| {
            let (client, start, acked, stop) = (client.clone(), start.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || publisher(&client, port, i, per_conn, &start, &acked, &stop))
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    let cpu0 = (broker.map(proc_cpu), agent.map(proc_cpu), self_cpu(), broker.map(|b| proc_times(b).1));
    std::thread::sleep(dur);
    let done = acked.load(Ordering::Relaxed);
    let cpu1 = (broker.map(proc_cpu), agent.map(proc_cpu), self_cpu(), broker.map(|b| proc_times(b).1));
    let wall = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut p = Phase { wall, acked: done, ..Phase::default() };
    for h in handles {
        let (sent, pings) = h.join().expect("publisher thread").unwrap_or_else(|e| panic!("publisher: {e}"));
        p.sent += sent;
        p.pings += pings;
        p.connects += 1;
    }
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    p.broker = diff(cpu0.0, cpu1.0).unwrap_or(0.0);
    p.agent = diff(cpu0.1, cpu1.1);
    p.broker_sys = diff(cpu0.3, cpu1.3).unwrap_or(0.0);
    p.client = cpu1.2 - cpu0.2;
    p
}

/// One publishing connection; returns (publishes sent, PINGREQs sent).
fn publisher(
    config: &Arc<ClientConfig>,
    port: u16,
    index: usize,
    rate: Option<f64>,
    start: &Barrier,
    acked: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<(u64, u64)> {
    let mut c = match Conn::open(config, port, &format!("ebpf-bench-{}-{index}", std::process::id())) {
        Ok(c) => c,
        Err(e) => {
            start.wait();
            return Err(e);
        }
    };
    start.wait();
    let t0 = Instant::now();
    let topic = format!("bench/{index}");
    let (mut sent, mut pings, mut id) = (0u64, 0u64, 0u16);
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let room = WINDOW.saturating_sub(c.inflight);
        let due = match rate {
            None => room,
            Some(r) => ((t0.elapsed().as_secs_f64() * r) as u64).saturating_sub(sent).min(room),
        };
        for _ in 0..due {
            id = id.checked_add(1).unwrap_or(1);
            c.send(&publish(&topic, id))?;
            c.inflight += 1;
            sent += 1;
            if sent.is_multiple_of(PING_EVERY) {
                c.send(&[0xc0, 0x00])?;
                c.pings_out += 1;
                pings += 1;
            }
        }
        c.flush()?;
        if c.inflight > 0 || c.pings_out > 0 {
            let n = c.receive()?;
            acked.fetch_add(n, Ordering::Relaxed);
        } else {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    while c.inflight > 0 || c.pings_out > 0 {
        c.receive()?;
    }
    c.send(&[0xe0, 0x00])?; // DISCONNECT
    c.tls.send_close_notify();
    c.flush()?;
    let _ = c.sock.shutdown(std::net::Shutdown::Both);
    Ok((sent, pings))
}

/// A client connection: TLS (rustls) over a blocking socket, MQTT 3.1.1.
struct Conn {
    sock: TcpStream,
    tls: ClientConnection,
    plain: Vec<u8>,
    inflight: u64,
    pings_out: u64,
}

impl Conn {
    fn open(config: &Arc<ClientConfig>, port: u16, client_id: &str) -> std::io::Result<Conn> {
        let mut sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_nodelay(true)?;
        let name = ServerName::try_from("127.0.0.1").expect("an IP address");
        let mut tls = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut sock)?;
        }
        let mut c = Conn { sock, tls, plain: Vec::new(), inflight: 0, pings_out: 0 };
        let mut body = vec![0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 60]; // clean session, keepalive 60
        body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        body.extend_from_slice(client_id.as_bytes());
        let mut connect = vec![0x10, body.len() as u8];
        connect.extend_from_slice(&body);
        c.send(&connect)?;
        c.flush()?;
        c.inflight = 1; // the CONNACK counts as the one awaited answer
        while c.inflight > 0 {
            c.receive()?;
        }
        Ok(c)
    }

    /// One MQTT packet: one TLS record.
    fn send(&mut self, packet: &[u8]) -> std::io::Result<()> {
        self.tls.writer().write_all(packet)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.sock)?;
        }
        Ok(())
    }

    /// Waits for what the broker sends and takes its packets; returns the PUBACKs.
    fn receive(&mut self) -> std::io::Result<u64> {
        if self.tls.read_tls(&mut self.sock)? == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "the broker closed the connection"));
        }
        self.tls.process_new_packets().map_err(std::io::Error::other)?;
        let mut buf = [0u8; 16384];
        loop {
            match self.tls.reader().read(&mut buf) {
                Ok(0) => return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "close_notify from the broker")),
                Ok(n) => self.plain.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let mut acks = 0;
        let mut at = 0;
        while self.plain.len() >= at + 2 {
            let kind = self.plain[at] >> 4;
            let len = self.plain[at + 1] as usize; // the broker's answers here are all short
            if self.plain.len() < at + 2 + len {
                break;
            }
            match kind {
                2 => self.inflight -= 1, // CONNACK
                4 => {
                    self.inflight -= 1; // PUBACK
                    acks += 1;
                }
                13 => self.pings_out -= 1, // PINGRESP
                k => return Err(std::io::Error::other(format!("unexpected MQTT packet type {k}"))),
            }
            at += 2 + len;
        }
        self.plain.drain(..at);
        Ok(acks)
    }
}

fn publish(topic: &str, id: u16) -> Vec<u8> {
    let len = 2 + topic.len() + 2 + PAYLOAD.len();
    let mut p = Vec::with_capacity(2 + len);
    p.extend_from_slice(&[0x32, len as u8]); // PUBLISH, QoS 1
    p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    p.extend_from_slice(topic.as_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&PAYLOAD);
    p
}

fn tls_config(ca: &Path) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA certificate") {
        roots.add(cert.expect("a PEM certificate")).expect("a CA certificate");
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// CPU seconds (user + system) of process `pid` so far, from /proc/PID/stat.
fn proc_cpu(pid: u32) -> f64 {
    let (user, sys) = proc_times(pid);
    user + sys
}

/// CPU seconds (user, system) of process `pid` so far, from /proc/PID/stat.
fn proc_times(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(end) = stat.rfind(')') else { return (0.0, 0.0) };
    let fields: Vec<&str> = stat[end + 1..].split_whitespace().collect();
    // After the command: field 3 (state) is index 0; utime is field 14, stime 15.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) as f64 / hz, ticks(12) as f64 / hz)
}

fn self_cpu() -> f64 {
    proc_cpu(std::process::id())
}

/// `cmd`, set to get SIGTERM when this process dies (an interrupted bench leaves no broker or
/// agent behind).
fn dies_with_us(mut cmd: Command) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        })
    };
    cmd
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn mosquitto_version() -> String {
    let out = Command::new("mosquitto").arg("-h").output().map(|o| o.stdout).unwrap_or_default();
    let text = String::from_utf8_lossy(&out);
    text.lines().next().and_then(|l| l.split_whitespace().nth(2)).unwrap_or("?").to_string()
}

fn make_certs(dir: &Path) -> Result<(), String> {
    let d = |f: &str| dir.join(f).display().to_string();
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").map_err(|e| e.to_string())?;
    let steps: [Vec<String>; 3] = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=mqtt-keepalive ebpf bench CA"]
            .iter()
            .map(|s| s.to_string())
            .chain(["-keyout".into(), d("ca.key"), "-out".into(), d("ca.crt")])
            .collect(),
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"]
            .iter()
            .map(|s| s.to_string())
            .chain(["-keyout".into(), d("server.key"), "-out".into(), d("server.csr")])
            .collect(),
        ["x509", "-req", "-CAcreateserial", "-days", "2"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                "-in".into(),
                d("server.csr"),
                "-CA".into(),
                d("ca.crt"),
                "-CAkey".into(),
                d("ca.key"),
                "-extfile".into(),
                d("san.ext"),
                "-out".into(),
                d("server.crt"),
            ])
            .collect(),
    ];
    for args in steps {
        let out = Command::new("openssl").args(&args).stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("openssl {}: {}", args[0], String::from_utf8_lossy(&out.stderr)));
        }
    }
    use std::os::unix::fs::PermissionsExt;
    for f in ["server.key", "ca.key"] {
        std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    Ok(())
}

struct Broker {
    child: Child,
    pid: u32,
    port: u16,
}

impl Broker {
    fn start(dir: &Path) -> Result<Broker, String> {
        let port = free_port();
        let conf = dir.join("mosquitto.conf");
        let d = |f: &str| dir.join(f).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\n\
                 log_dest stderr\nlog_type error\nlog_type warning\n",
                d("ca.crt"),
                d("server.crt"),
                d("server.key")
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("mosquitto.log")).map_err(|e| e.to_string())?;
        let mut child = dies_with_us(Command::new("mosquitto"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let pid = child.id();
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Broker { child, pid, port });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default();
                return Err(format!("{status}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("it did not listen within 5 s".into())
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An empty bpftrace program on the SSL data functions of `libssl` in process `pid`: entry
/// uprobes only, or entry and return uprobes (the floor the agent's probes stand on).
struct Floor {
    child: Child,
}

impl Floor {
    fn start(libssl: &Path, pid: u32, returns: bool) -> Result<Floor, String> {
        let lib = libssl.display();
        let functions = ["SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex"];
        let mut probes: Vec<String> = functions.iter().map(|f| format!("uprobe:{lib}:{f}")).collect();
        if returns {
            probes.extend(functions.iter().map(|f| format!("uretprobe:{lib}:{f}")));
        }
        let program = format!("{} /pid == {pid}/ {{ }}", probes.join(","));
        let out = std::env::temp_dir().join(format!("ebpf-bench-floor-{}.out", std::process::id()));
        let mut child = dies_with_us(Command::new("bpftrace"))
            .args(["-e", &program])
            .stdout(std::fs::File::create(&out).map_err(|e| e.to_string())?)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("bpftrace: {e}"))?;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if std::fs::read_to_string(&out).unwrap_or_default().contains("Attaching") {
                std::thread::sleep(Duration::from_millis(500)); // attached after it says so
                return Ok(Floor { child });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("bpftrace exited ({status}) running `{program}`"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("bpftrace did not attach within 30 s".into())
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// Empty uprobes where the agent probes when it finds libssl's inner functions, as tracefs
/// events (no BPF program: bpftrace 0.17 cannot probe by offset): entry and return on the
/// inner read, entry on the inner write. Tracing is off meanwhile so nothing is recorded.
struct TraceFsFloor {
    events: PathBuf,
}

impl TraceFsFloor {
    const GROUP: &'static str = "mqtt_keepalive_floor";

    fn start(libssl: &Path, inner: mqtt_keepalive::capture::ebpf::inner::Inner) -> Result<TraceFsFloor, String> {
        let tracing = Path::new("/sys/kernel/tracing");
        let events = tracing.join("uprobe_events");
        let lib = libssl.display();
        let g = Self::GROUP;
        let defs = format!(
            "p:{g}/read {lib}:{:#x}\nr:{g}/read_ret {lib}:{:#x}\np:{g}/write {lib}:{:#x}\n",
            inner.read, inner.read, inner.write
        );
        let write = |path: PathBuf, text: &str| {
            use std::io::Write as _;
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        write(tracing.join("tracing_on"), "0")?;
        write(events.clone(), &defs)?;
        write(tracing.join("events").join(g).join("enable"), "1")?;
        Ok(TraceFsFloor { events })
    }

    fn stop(self) {
        let tracing = Path::new("/sys/kernel/tracing");
        let g = Self::GROUP;
        let _ = std::fs::write(tracing.join("events").join(g).join("enable"), "0");
        for e in ["read", "read_ret", "write"] {
            let _ = std::fs::OpenOptions::new()
                .append(true)
                .open(&self.events)
                .and_then(|mut f| std::io::Write::write_all(&mut f, format!("-:{g}/{e}\n").as_bytes()));
        }
        let _ = std::fs::write(tracing.join("tracing_on"), "1");
    }
}

/// The agent: the binary `cargo bench` built, `live --backend ebpf` on the broker's pid and port.
struct Agent {
    child: Child,
    listen: String,
}

impl Agent {
    /// `exported`: probe the exported SSL functions even where the inner ones are found.
    fn start(dir: &Path, port: u16, broker: u32, exported: bool) -> Result<Agent, String> {
        let listen = format!("127.0.0.1:{}", free_port());
        let log: PathBuf = dir.join("agent.log");
        let err = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqtt-keepalive"));
        if exported {
            cmd.env(mqtt_keepalive::capture::ebpf::EXPORTED_PROBES_ENV, "1");
        }
        let mut child = dies_with_us(cmd)
            .args(["live", "--backend", "ebpf", "--port", &port.to_string(), "--pid", &broker.to_string()])
            .args(["--listen", &listen])
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting the agent: {e}"))?;
        // The metrics server starts once the probes are attached.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("the agent could not start ({status}): {}", text.trim()));
            }
            if get_metrics(&listen).is_some() {
                std::thread::sleep(Duration::from_millis(200));
                return Ok(Agent { child, listen });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("the agent did not serve /metrics within 30 s".into())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> String {
        // The agent reads the ring buffer as records come; give it a moment to catch up.
        std::thread::sleep(Duration::from_millis(300));
        get_metrics(&self.listen).unwrap_or_default()
    }

    fn stop(mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn get_metrics(listen: &str) -> Option<String> {
    let mut s = TcpStream::connect(listen).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {listen}\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if !text.starts_with("HTTP/1.") || text.split_whitespace().nth(1).is_none_or(|c| c != "200") {
        return None;
    }
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// The sum of a metric's series whose line starts with `name` (then a space or labels), those
/// with `label` among their labels when given.
fn metric(text: &str, name: &str, label: Option<&str>) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{')))
        .filter(|l| label.is_none_or(|lb| l.contains(lb)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The agent's counts over one phase against what the clients did.
struct Check {
    name: String,
    connects: u64,
    connects_counted: u64,
    pings: u64,
    pings_counted: u64,
    drops: u64,
    gaps: u64,
}

impl Check {
    fn new(name: &str, before: &str, after: &str, p: &Phase) -> Check {
        let d = |n: &str, l: Option<&str>| metric(after, n, l).saturating_sub(metric(before, n, l));
        Check {
            name: name.into(),
            connects: p.connects,
            connects_counted: d("mqtt_keepalive_connects_total", None),
            pings: p.pings,
            pings_counted: d("mqtt_keepalive_pings_total", Some("request")),
            drops: d("mqtt_keepalive_capture_dropped_packets_total", None),
            gaps: d("mqtt_keepalive_stream_gaps_total", None),
        }
    }
}

struct Calibration {
    records: u64,
    publishes: u64,
    secs: f64,
    stats: mqtt_keepalive::capture::ebpf::EbpfStats,
}

/// Runs the eBPF source in this process through a load of 4 connections and counts its records.
fn calibrate(client: &Arc<ClientConfig>, port: u16, broker: u32, dur: Duration) -> Result<Calibration, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let opts = EbpfOptions { ports: vec![port], pids: vec![broker], process: None, binding: Binding::Auto };
            let mut source = match EbpfSource::open(opts) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return None;
                }
            };
            let mut cfg = TrackerConfig {
                ports: PortSet::new(&[port]),
                stream_transport: Some(Transport::Tls),
                ..TrackerConfig::default()
            };
            cfg.session.activity_events = true;
            let mut pipeline = Pipeline::new(cfg);
            let _ = ready_tx.send(Ok(()));
            let mut records = 0u64;
            let mut idle_after_stop = 0;
            while idle_after_stop < 3 {
                let n = source
                    .feed(&mut pipeline, Duration::from_millis(50), Timestamp::now_realtime(), 4096)
                    .expect("reading the ring buffer");
                records += n as u64;
                let _ = pipeline.drain(&mut []);
                if stop.load(Ordering::Relaxed) && n == 0 {
                    idle_after_stop += 1;
                }
            }
            Some((records, source.ebpf_stats()))
        })
    };
    ready_rx.recv().map_err(|e| e.to_string())??;
    let p = load(client, port, 4, None, dur, None, None);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (records, stats) = reader.join().expect("reader thread").ok_or("the eBPF source did not open")?;
    Ok(Calibration { records, publishes: p.sent, secs: p.wall, stats })
}
