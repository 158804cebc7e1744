//! Decryption throughput of the TLS layer on a capture.
//!
//! `cargo run --profile dist --example tls_throughput -- CAPTURE.pcap KEYLOG PORT`
//!
//! Reassembles every connection to PORT into memory first (not timed), then times feeding the
//! streams through `TlsLayer` with the key log (records framed, decrypted, plaintext handed to a
//! counting sink) and without it (framing and opaque-record events only). Prints MB/s of TCP
//! payload (ciphertext) and of plaintext.
#![allow(clippy::disallowed_methods)] // a benchmark: it measures real time

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use mqtt_keepalive::capture::{OfflineReader, PacketSource};
use mqtt_keepalive::decode::decode;
use mqtt_keepalive::flow::Side;
use mqtt_keepalive::flow::reassembly::{Chunk, Reassembler};
use mqtt_keepalive::layer::tls::{KeyLog, TlsLayer};
use mqtt_keepalive::layer::{Layer, LayerEvent, Up};

#[derive(Default)]
struct Count {
    plaintext: u64,
    gaps: u64,
    events: u64,
}

impl Up for Count {
    fn data(&mut self, _: Side, bytes: &[u8]) {
        self.plaintext += bytes.len() as u64;
    }
    fn gap(&mut self, _: Side, _: u64) {
        self.gaps += 1;
    }
    fn event(&mut self, _: Side, _: LayerEvent) {
        self.events += 1;
    }
}

type Pieces = Vec<(Side, Result<Vec<u8>, u64>)>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, capture, keys, port] = &args[..] else {
        eprintln!("usage: tls_throughput CAPTURE KEYLOG PORT");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT is a number");
    let keylog = Arc::new(KeyLog::open(Path::new(keys)).expect("key log"));

    let mut reader = OfflineReader::open(Path::new(capture)).expect("capture");
    let mut conns: HashMap<u16, ([Reassembler; 2], Pieces)> = HashMap::new();
    let mut order = Vec::new();
    while let Some(packet) = reader.next_packet().expect("readable capture") {
        let Ok(seg) = decode(packet.link, packet.data) else { continue };
        let (side, client_port) = if seg.dst.port() == port {
            (Side::Client, seg.src.port())
        } else if seg.src.port() == port {
            (Side::Broker, seg.dst.port())
        } else {
            continue;
        };
        let (reasm, pieces) = conns.entry(client_port).or_insert_with(|| {
            order.push(client_port);
            ([Reassembler::new(1 << 24), Reassembler::new(1 << 24)], Vec::new())
        });
        let me = usize::from(side == Side::Broker);
        let other = if side == Side::Client { Side::Broker } else { Side::Client };
        let piece = |side| {
            move |c: Chunk<'_>| {
                (
                    side,
                    match c {
                        Chunk::Data(d) => Ok(d.to_vec()),
                        Chunk::Gap(n) => Err(n),
                    },
                )
            }
        };
        if seg.syn {
            reasm[me].on_syn(seg.seq);
        }
        let mine = piece(side);
        reasm[me].on_segment(seg.seq, seg.payload, seg.wire_len, &mut |c: Chunk<'_>| pieces.push(mine(c)));
        if let Some(ack) = seg.ack {
            // The peer's bytes before `ack` were received: a hole there was lost by the capture.
            let theirs = piece(other);
            reasm[1 - me].on_peer_ack(ack, &mut |c: Chunk<'_>| pieces.push(theirs(c)));
        }
    }
    for (reasm, pieces) in conns.values_mut() {
        for (k, side) in [(0, Side::Client), (1, Side::Broker)] {
            let mut f = |c: Chunk<'_>| {
                pieces.push((
                    side,
                    match c {
                        Chunk::Data(d) => Ok(d.to_vec()),
                        Chunk::Gap(n) => Err(n),
                    },
                ))
            };
            reasm[k].flush(&mut f);
        }
    }
    println!(
        "memory: TlsLayer {} B inline; per direction with keys + {} B (AES-128-GCM) / {} B (AES-256-GCM) / {} B (ChaCha20-Poly1305) on the heap",
        std::mem::size_of::<TlsLayer>(),
        std::mem::size_of::<aes_gcm::Aes128Gcm>(),
        std::mem::size_of::<aes_gcm::Aes256Gcm>(),
        std::mem::size_of::<chacha20poly1305::ChaCha20Poly1305>()
    );
    let streams: Vec<Pieces> = order.iter().filter_map(|p| conns.remove(p)).map(|(_, pieces)| pieces).collect();
    let ciphertext: u64 = streams.iter().flatten().map(|(_, p)| p.as_ref().map_or(0, |d| d.len() as u64)).sum();
    println!("{} connection(s), {:.1} MB of TCP payload", streams.len(), ciphertext as f64 / 1e6);

    // Per connection (one suite each), with the key log.
    for pieces in &streams {
        let bytes: u64 = pieces.iter().map(|(_, p)| p.as_ref().map_or(0, |d| d.len() as u64)).sum();
        let mut best = f64::MAX;
        let mut suite = None;
        for _ in 0..3 {
            let mut count = Count::default();
            let mut layer = TlsLayer::new(Some(keylog.clone()));
            let t = Instant::now();
            for (side, p) in pieces {
                match p {
                    Ok(d) => layer.feed(*side, Chunk::Data(d), &mut count),
                    Err(n) => layer.feed(*side, Chunk::Gap(*n), &mut count),
                }
            }
            best = best.min(t.elapsed().as_secs_f64());
            suite = layer.negotiated();
        }
        let name = suite.and_then(|(_, s)| mqtt_keepalive::layer::tls::suite_name(s)).unwrap_or("?");
        println!("  {name:45} {:6.1} MB  {:7.1} MB/s", bytes as f64 / 1e6, bytes as f64 / 1e6 / best);
    }
    for (label, log) in [("with key log (decrypt)", Some(keylog)), ("without key log (framing only)", None)] {
        let mut best = f64::MAX;
        let mut count = Count::default();
        for _ in 0..3 {
            count = Count::default();
            let t = Instant::now();
            for pieces in &streams {
                let mut layer = TlsLayer::new(log.clone());
                for (side, p) in pieces {
                    match p {
                        Ok(d) => layer.feed(*side, Chunk::Data(d), &mut count),
                        Err(n) => layer.feed(*side, Chunk::Gap(*n), &mut count),
                    }
                }
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{label:32} {:.3} s  {:7.1} MB/s ciphertext  {:7.1} MB/s plaintext  ({:.1} MB plaintext, {} gaps, {} events)",
            best,
            ciphertext as f64 / 1e6 / best,
            count.plaintext as f64 / 1e6 / best,
            count.plaintext as f64 / 1e6,
            count.gaps,
            count.events
        );
    }
}
