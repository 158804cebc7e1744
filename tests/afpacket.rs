//! The AF_PACKET captures (recvmsg socket and TPACKET_V3 ring) against the real kernel on
//! loopback: only the broker port's packets arrive, each once, with kernel timestamps. Needs root
//! or CAP_NET_RAW (CI runs as root).

use mqtt_keepalive::capture::LiveSource;
use mqtt_keepalive::capture::afpacket::AfPacket;
use mqtt_keepalive::capture::ring::{Ring, RingConfig};
use mqtt_keepalive::decode::decode;
use mqtt_keepalive::time::Timestamp;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[test]
#[ignore = "needs root (CAP_NET_RAW)"]
fn loopback_capture_sees_each_filtered_packet_once() {
    sees_each_filtered_packet_once(|port| Box::new(AfPacket::open(&["lo".into()], &[port]).unwrap()));
}

#[test]
#[ignore = "needs root (CAP_NET_RAW)"]
fn ring_capture_sees_each_filtered_packet_once() {
    // A 2-block ring: the few packets sit in a block the kernel hands over on its timeout.
    let cfg = RingConfig { size: 0, fanout: None };
    sees_each_filtered_packet_once(|port| Box::new(Ring::open(&["lo".into()], &[port], cfg).unwrap()));
}

fn sees_each_filtered_packet_once(open: impl FnOnce(u16) -> Box<dyn LiveSource>) {
    let broker = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = broker.local_addr().unwrap().port();
    let mut cap = open(port);
    let before = Timestamp::now_realtime();

    let mut client = TcpStream::connect(broker.local_addr().unwrap()).unwrap();
    let (mut server, _) = broker.accept().unwrap();
    client.write_all(b"\xc0\x00").unwrap(); // PINGREQ
    let mut got = [0u8; 2];
    server.read_exact(&mut got).unwrap();
    // Traffic on another port must be filtered out in the kernel.
    let mut noise = TcpStream::connect(other.local_addr().unwrap()).unwrap();
    noise.write_all(b"noise").unwrap();

    let mut segments = Vec::new();
    while let Some(p) =
        cap.next_packet(Duration::from_millis(300), mqtt_keepalive::time::Timestamp::now_realtime()).unwrap()
    {
        assert!(p.ts >= before && p.ts <= Timestamp::now_realtime(), "kernel timestamp in range");
        let seg = decode(p.link, p.data).expect("an IP/TCP packet");
        assert!(seg.src.port() == port || seg.dst.port() == port, "only the filtered port");
        segments.push((seg.src.port() == port, seg.syn, seg.payload.to_vec()));
    }
    // SYN, SYN-ACK, ACK, PINGREQ (+ its ACK): each exactly once, no loopback duplicates.
    assert_eq!(segments.iter().filter(|(_, syn, _)| *syn).count(), 2, "{segments:?}");
    assert_eq!(segments.iter().filter(|(_, _, p)| p.as_slice() == b"\xc0\x00").count(), 1);
    let stats = cap.stats();
    assert_eq!(stats.dropped, 0);
    assert!(stats.received >= segments.len() as u64);
}

#[test]
#[ignore = "needs root (CAP_NET_RAW)"]
fn the_ring_hands_blocks_back_and_loses_nothing() {
    // 6 MiB through a 2-block (512 KiB) ring: every block is filled, read and handed back a
    // dozen times over; the reader keeps up (it drains after each 64 KiB), so nothing may be lost.
    let broker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = broker.local_addr().unwrap().port();
    let mut cap = Ring::open(&["lo".into()], &[port], RingConfig { size: 0, fanout: None }).unwrap();
    let mut client = TcpStream::connect(broker.local_addr().unwrap()).unwrap();
    let (mut server, _) = broker.accept().unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut buf = vec![0u8; 64 << 10];
    let (mut sent, mut seen, mut frames) = (0usize, 0usize, 0u64);
    for _ in 0..96 {
        client.write_all(&chunk).unwrap();
        server.read_exact(&mut buf).unwrap();
        sent += chunk.len();
        while let Some(p) = cap.next_packet(Duration::from_millis(50), Timestamp::now_realtime()).unwrap() {
            let seg = decode(p.link, p.data).expect("an IP/TCP packet");
            assert_eq!(p.data.len() as u32, p.orig_len, "whole frames");
            if seg.dst.port() == port {
                seen += seg.payload.len();
            }
            frames += 1;
        }
    }
    assert_eq!(seen, sent, "every payload byte, once, in {frames} frames");
    let stats = cap.stats();
    assert_eq!((stats.dropped, stats.freezes), (0, 0));
}

#[test]
#[ignore = "needs root (CAP_NET_RAW)"]
fn a_fanout_group_keeps_each_connection_on_one_ring() {
    let broker = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = broker.local_addr().unwrap().port();
    let group = (std::process::id() as u16).wrapping_add(7);
    // 64 blocks per ring: 640 ms of loopback traffic before the kernel has nowhere to put it.
    let cfg = RingConfig { size: 64 * mqtt_keepalive::capture::ring::BLOCK_SIZE, fanout: Some(group) };
    let mut rings =
        [Ring::open(&["lo".into()], &[port], cfg).unwrap(), Ring::open(&["lo".into()], &[port], cfg).unwrap()];
    // Client port -> ring of each packet seen. A block leaves on a 10 ms timer, so the rings are
    // read between connections, as the agent reads them: read only at the end, a slow machine
    // can retire every block first and the kernel drops what follows.
    let mut seen: std::collections::HashMap<u16, Vec<usize>> = Default::default();
    let mut drain = |rings: &mut [Ring; 2], timeout: Duration| {
        for (i, ring) in rings.iter_mut().enumerate() {
            while let Some(p) = ring.next_packet(timeout, Timestamp::now_realtime()).unwrap() {
                let seg = decode(p.link, p.data).expect("an IP/TCP packet");
                let client = if seg.src.port() == port { seg.dst.port() } else { seg.src.port() };
                seen.entry(client).or_default().push(i);
            }
        }
    };
    let mut conns = Vec::new();
    for _ in 0..32 {
        let mut client = TcpStream::connect(broker.local_addr().unwrap()).unwrap();
        let (mut server, _) = broker.accept().unwrap();
        client.write_all(b"\xc0\x00").unwrap(); // PINGREQ
        let mut got = [0u8; 2];
        server.read_exact(&mut got).unwrap();
        server.write_all(b"\xd0\x00").unwrap(); // PINGRESP
        client.read_exact(&mut got).unwrap();
        conns.push((client, server));
        drain(&mut rings, Duration::ZERO);
    }
    drain(&mut rings, Duration::from_millis(100));
    for ring in &mut rings {
        assert_eq!(ring.stats().dropped, 0, "the rings were read in time");
    }
    assert_eq!(seen.len(), 32, "every connection seen");
    for (client, rings) in &seen {
        assert!(rings.len() >= 5, "{client}: handshake and both pings: {rings:?}");
        assert!(rings.iter().all(|r| *r == rings[0]), "{client}: both directions on one ring: {rings:?}");
    }
    let on_first = seen.values().filter(|r| r[0] == 0).count();
    assert!(
        on_first > 0 && on_first < 32,
        "the kernel spreads connections over the group ({on_first} of 32 on ring 0)"
    );
}
