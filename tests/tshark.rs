//! Cross-check of the MQTT decoder against tshark's MQTT dissector on every fixture: packets per
//! message type, per connection, and the keepalive of every CONNECT.
//! Needs tshark (`apt-get install tshark`); CI installs it and runs ignored tests.

mod common;

use common::*;
use mqtt_keepalive::mqtt::PacketType;
use std::collections::BTreeMap;
use std::process::Command;

/// (client port, message type) -> count, and the CONNECT keepalives in capture order, per tshark.
fn tshark_view(path: &std::path::Path) -> (BTreeMap<(u16, u8), u64>, Vec<u16>) {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(path)
        .args([
            "-Y",
            "mqtt",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "mqtt.msgtype",
            "-e",
            "mqtt.kalive",
        ])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut counts = BTreeMap::new();
    let mut keepalives = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split('|').collect();
        let (src, dst): (u16, u16) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let client = if dst == 1883 { src } else { dst };
        for t in f[2].split(',') {
            *counts.entry((client, t.parse().unwrap())).or_default() += 1;
        }
        keepalives.extend(f[3].split(',').filter(|k| !k.is_empty()).map(|k| k.parse::<u16>().unwrap()));
    }
    (counts, keepalives)
}

#[test]
#[ignore = "needs tshark"]
fn decoder_agrees_with_tshark_on_every_fixture() {
    let mut checked = 0;
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("pcap" | "pcapng")) {
            continue;
        }
        let (tshark_counts, tshark_keepalives) = tshark_view(&path);
        assert!(!tshark_counts.is_empty(), "{}: tshark saw no MQTT", path.display());
        let (report, events) = analyze_with(std::slice::from_ref(&path), Default::default(), &[1883]);
        // Our per-connection counts: from events for pings and connects, the rest from totals.
        let mut ours: BTreeMap<(u16, u8), u64> = BTreeMap::new();
        for e in &events {
            let t = match e.kind.as_str() {
                "connect" => PacketType::Connect,
                "connack" => PacketType::ConnAck,
                "pingreq" => PacketType::PingReq,
                "pingresp" => PacketType::PingResp,
                _ => continue,
            };
            *ours.entry((e.flow.client.port(), t as u8)).or_default() += 1;
        }
        let tracked =
            [PacketType::Connect, PacketType::ConnAck, PacketType::PingReq, PacketType::PingResp].map(|t| t as u8);
        let theirs: BTreeMap<(u16, u8), u64> =
            tshark_counts.iter().filter(|((_, t), _)| tracked.contains(t)).map(|(k, v)| (*k, *v)).collect();
        assert_eq!(ours, theirs, "{}: per-connection CONNECT/CONNACK/PINGREQ/PINGRESP", path.display());
        // Totals of every type.
        let mut their_totals = [0u64; 16];
        for ((_, t), n) in &tshark_counts {
            their_totals[usize::from(*t)] += n;
        }
        assert_eq!(report.tcp.mqtt_packets, their_totals, "{}: packets per type", path.display());
        let our_keepalives: Vec<u16> = report.sessions.iter().filter_map(|s| s.keepalive_s).collect();
        let mut theirs_sorted = tshark_keepalives.clone();
        let mut ours_sorted = our_keepalives.clone();
        theirs_sorted.sort_unstable();
        ours_sorted.sort_unstable();
        assert_eq!(ours_sorted, theirs_sorted, "{}: CONNECT keepalives", path.display());
        checked += 1;
    }
    assert_eq!(checked, 12, "every fixture checked");
}
