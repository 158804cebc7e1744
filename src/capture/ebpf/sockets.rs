//! The TCP connections already established on the broker ports when the probes are attached,
//! from `/proc/net/tcp` and `/proc/net/tcp6` (the agent's network namespace).
//!
//! Contract: [`established`] lists each socket in state ESTABLISHED whose local port is one of
//! `ports`, as a [`FlowKey`] with the broker on the local side; unreadable files and lines it
//! cannot parse are skipped (never a panic).

use crate::flow::FlowKey;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// `TCP_ESTABLISHED` as `/proc/net/tcp` writes it.
const ESTABLISHED: &str = "01";

/// The established connections on `ports` listed under `proc_net` (normally `/proc/net`).
pub fn established(proc_net: &Path, ports: &[u16]) -> Vec<FlowKey> {
    let mut keys = Vec::new();
    for file in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(proc_net.join(file)) else { continue };
        keys.extend(text.lines().skip(1).filter_map(|line| parse_line(line, ports)));
    }
    keys
}

/// One line: `sl local_address rem_address st ...`, addresses as `HEX:PORT` in the kernel's
/// byte order (each 32-bit word of the address printed as a native-endian integer).
fn parse_line(line: &str, ports: &[u16]) -> Option<FlowKey> {
    let mut fields = line.split_whitespace().skip(1);
    let (local, remote, st) = (fields.next()?, fields.next()?, fields.next()?);
    if st != ESTABLISHED {
        return None;
    }
    let broker = parse_addr(local)?;
    if !ports.contains(&broker.port()) {
        return None;
    }
    Some(FlowKey { client: parse_addr(remote)?, broker })
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (hex, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> =
        (0..hex.len() / 8).map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()).collect::<Option<_>>()?;
    let ip = match (hex.len(), words.as_slice()) {
        (8, [w]) => IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())),
        (32, [a, b, c, d]) => {
            let mut raw = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                raw[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            let v6 = Ipv6Addr::from(raw);
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_the_kernel_writes_them() {
        // 127.0.0.1:8883 <- 127.0.0.1:40000, established; a listener; another port.
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:22B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:22B3 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n\
   2: 0100007F:075B 0100007F:9C41 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n\
   3: garbage\n";
        // ::ffff:10.0.0.2:5000 -> [::ffff:10.0.0.9]:8883 (a dual-stack listener), and ::1.
        let tcp6 = "  sl  local_address                         remote_address                        st\n\
   0: 0000000000000000FFFF00000900000A:22B3 0000000000000000FFFF00000200000A:1388 01 0\n\
   1: 00000000000000000000000001000000:22B3 00000000000000000000000001000000:1389 01 0\n";
        let dir = std::env::temp_dir().join(format!("mk-sockets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tcp"), tcp).unwrap();
        std::fs::write(dir.join("tcp6"), tcp6).unwrap();
        let keys = established(&dir, &[8883]);
        std::fs::remove_dir_all(&dir).unwrap();
        let key = |c: &str, b: &str| FlowKey { client: c.parse().unwrap(), broker: b.parse().unwrap() };
        assert_eq!(
            keys,
            [
                key("127.0.0.1:40000", "127.0.0.1:8883"),
                key("10.0.0.2:5000", "10.0.0.9:8883"),
                key("[::1]:5001", "[::1]:8883"),
            ]
        );
    }

    #[test]
    fn the_agents_own_namespace_parses() {
        // Whatever is there, reading it neither fails nor panics.
        let _ = established(Path::new("/proc/net"), &[22, 1883, 8883]);
        assert!(established(Path::new("/nonexistent"), &[8883]).is_empty());
    }
}
