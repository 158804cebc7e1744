//! mqtt-keepalive: passive MQTT keepalive analysis.
//!
//! Every input runs through one [`pipeline::Pipeline`]; data flows one way:
//!
//! ```text
//!            ┌──────────────────────── pipeline (one clock) ───────────────────────────┐
//! capture ──►│ decode ──► tracker: per connection                                     │──► sink
//! (pcap,     │ (link,     flow reassembly ──► layer stack ──► mqtt decoder ──► session │   (report,
//!  pcapng,   │  IP, TCP)  (in-order bytes,    (TLS records,   (packets)       (rules,  │    JSON lines,
//!  live)     │            gaps)               WebSocket;                      events) │    metrics)
//!            │                                none: plain)                            │
//!            │ stream sources (in-order bytes, TCP state) ──────► mqtt decoder        │
//!            └─────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The edges read the same way (ARCHITECTURE.md has the map and the rules, kept by
//! `tests/layers.rs`): every input is one [`capture::Source`] handing frames or streams to a
//! [`capture::Intake`] (the pipeline implements it); every output is one [`sink::Sink`], built
//! by [`output::Outputs`] for `analyze` and `live` alike; the types both sides need live below
//! both, in [`model`].
//!
//! - [`capture`]: sources: pcap/pcapng files (gzipped or not; pipes and FIFOs read as
//!   they come), live AF_PACKET (and libpcap) capture, and the eBPF source (the plaintext inside
//!   TLS from the broker's libssl, and TCP changes, handed to the tracker as streams).
//! - [`link`]: link-layer types: their names and how their frames start.
//! - [`decode`]: a frame to a TCP [`decode::Segment`]; stateless.
//! - [`flow`]: flow keys (client/broker orientation), sequence numbers, reassembly.
//! - [`layer`]: the byte path inside a connection between reassembly and MQTT: the
//!   [`layer::Stack`] of transport layers (a TLS record layer or a WebSocket framing layer goes
//!   here, as a [`layer::Layer`]); plain MQTT over TCP is the empty stack.
//! - [`mqtt`]: the fixed header, CONNECT/CONNACK/DISCONNECT, the per-direction stream decoder,
//!   and how it finds framing again.
//! - [`session`]: one MQTT session's keepalive clock, pings and close; emits [`session::Event`]s.
//! - [`tracker`]: the connection table tying flows, layers, decoders and sessions together; one
//!   deadline heap; a second entry point for sources that see streams, not packets.
//! - [`pipeline`]: the tracker plus the packet clock ([`time::PacketClock`]), capture statistics
//!   and skip counts, behind small entry points: a frame, a poll at a time, drain, finish.
//! - [`model`]: what the core and the edges share: time formatting, capture, kernel and eBPF
//!   statistics.
//! - [`sink`]: consumers of events and records: the report (text/JSON), the JSON-lines stream,
//!   metrics, the HTML page, the OpenMetrics backfill.
//! - [`output`]: the one builder of a run's outputs, each a sink with its destination.
//! - [`app`]: the offline loop (`analyze`): capture files through the pipeline to the sinks, on
//!   two threads (read and decode; the pipeline); files on packet time alone, a pipe or FIFO
//!   streamed with deadlines on the clock ([`time::StreamClock`]); a signal ends the input.
//! - [`live`]: the live loop (`live`): a capture thread firing deadlines on the clock, and
//!   [`server`], its HTTP endpoints (metrics, health, sessions; [`sessions_query`] reads the
//!   `/sessions` query).
//! - [`probe`]: the `probe` command: the keepalive experiment against a broker, as its own
//!   test clients, judged by the same session rules.
//! - [`top`]: the `top` command: a terminal view of a live agent or of a capture being analysed.
//! - [`synth`]: synthetic captures and workloads for tests, benchmarks and fuzzing.
//!
//! The pipeline on a synthetic capture: a client declares keepalive 2 and falls silent; its
//! deadline passes 3 s after its last packet, and the broker's FIN comes 1.5 s after that.
//!
//! ```
//! use mqtt_keepalive::flow::Side;
//! use mqtt_keepalive::pipeline::Pipeline;
//! use mqtt_keepalive::sink::{FnSink, RecordSink};
//! use mqtt_keepalive::synth::{mqtt, Capture, Conn, Encap};
//! use mqtt_keepalive::time::Timestamp;
//! use mqtt_keepalive::tracker::TrackerConfig;
//!
//! let t = Timestamp::from_secs_f64;
//! let mut cap = Capture::new(Encap::Ethernet);
//! let mut c = Conn::new("10.0.0.1:40000".parse().unwrap(), "10.0.0.9:1883".parse().unwrap(), 1, 2);
//! c.handshake(&mut cap, t(0.0));
//! c.send(&mut cap, t(0.1), Side::Client, &mqtt::connect(4, 2, "sensor-7", true, None));
//! c.send(&mut cap, t(0.2), Side::Broker, &mqtt::connack(0, None));
//! c.fin(&mut cap, t(4.6), Side::Broker);
//!
//! let mut pipeline = Pipeline::new(TrackerConfig::default());
//! for (ts, frame) in &cap.frames {
//!     pipeline.frame(*ts, cap.encap.link_type(), frame, frame.len() as u32);
//! }
//! let mut timeline = Vec::new();
//! let mut sink = FnSink(|e: &mqtt_keepalive::session::Event| timeline.push(format!("{:?} {}", e.ts, e.kind.as_str())));
//! let mut sessions = Vec::new();
//! let mut records = RecordSink(|r: &mqtt_keepalive::session::record::SessionRecord| sessions.push(r.clone()));
//! pipeline.finish(&mut [&mut sink, &mut records]).unwrap();
//!
//! assert_eq!(timeline, [
//!     "0.000000 session_start",
//!     "0.100000 transport",                  // the first client byte: MQTT over TCP
//!     "0.100000 connect",
//!     "0.200000 connack",
//!     "3.100000 keepalive_expired",          // the deadline itself: 0.1 + 1.5 x 2
//!     "4.600000 close",
//!     "4.600000 close_without_disconnect",   // a bare FIN: the broker publishes the Will
//!     "4.600000 enforcement",
//!     "4.600000 session_end",
//! ]);
//! let s = &sessions[0];
//! assert_eq!((s.client_id.as_deref(), s.expired, s.close.kind), (Some("sensor-7"), true, "fin"));
//! assert_eq!(s.enforcement.map(|e| (e.verdict.as_str(), e.lag_s)), Some(("late", Some(1.5))));
//! ```

// `unsafe` only where a system call needs it, each module saying so at its top, and every
// block saying why it is sound.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

#[macro_use]
mod names;

pub mod app;
pub mod capture;
pub mod decode;
pub mod flow;
pub mod layer;
pub mod link;
pub mod live;
pub mod model;
pub mod mqtt;
pub mod output;
pub mod pipeline;
pub mod probe;
pub mod server;
pub mod session;
pub mod sessions_query;
pub mod sink;
pub mod synth;
pub mod time;
pub mod top;
pub mod tracker;
