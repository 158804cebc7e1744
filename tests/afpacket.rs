//! The AF_PACKET capture against the real kernel on loopback: only the broker port's packets
//! arrive, each once, with kernel timestamps. Needs root or CAP_NET_RAW (CI runs as root).

use mqtt_keepalive::capture::afpacket::AfPacket;
use mqtt_keepalive::decode::decode;
use mqtt_keepalive::time::Timestamp;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

#[test]
#[ignore = "needs root (CAP_NET_RAW)"]
fn loopback_capture_sees_each_filtered_packet_once() {
    let broker = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = broker.local_addr().unwrap().port();
    let mut cap = AfPacket::open(&["lo".into()], &[port]).unwrap();
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
