//! mqtt-keepalive: passive MQTT keepalive analysis.
//!
//! ```text
//! capture ──► decode ──► flow ──► mqtt ──► session ──► sink
//! ```
//!
//! - [`capture`]: packet sources (pcap/pcapng files) yielding timestamped link-layer frames.
//! - [`decode`]: a frame to a TCP [`decode::Segment`]; stateless.
//! - [`flow`]: flow keys (client/broker orientation), sequence numbers, reassembly.
//! - [`mqtt`]: the fixed header, CONNECT/CONNACK/DISCONNECT, the per-direction stream decoder.
//! - [`session`]: one MQTT session's keepalive clock, pings and close; emits [`session::Event`]s.
//! - [`tracker`]: the connection table tying flows, decoders and sessions together; deadlines.
//! - [`sink`]: consumers of events: the report (text/JSON) and the JSON-lines stream.
//! - [`app`]: the offline loop (`analyze`): capture files through the tracker to the sinks, on
//!   two threads (read and decode; track).
//! - [`live`]: the live loop (`live`): a capture thread firing deadlines on the clock, and
//!   [`server`], its HTTP endpoints (metrics, health, sessions).
//! - [`probe`]: the `probe` command: the keepalive experiment against a broker, as its own
//!   test clients, judged by the same session rules.
//! - [`synth`]: synthetic captures and workloads for tests, benchmarks and fuzzing.

pub mod app;
pub mod capture;
pub mod cli;
pub mod decode;
pub mod flow;
pub mod live;
pub mod mqtt;
pub mod probe;
pub mod server;
pub mod session;
pub mod sink;
pub mod synth;
pub mod time;
pub mod tracker;
