//! A classic BPF program selecting TCP segments to or from the broker ports, for the kernel
//! socket filter of the live capture (the kernel JIT-compiles it; unwanted packets never reach
//! user space).
//!
//! Contract: [`port_filter`] returns a program that accepts exactly the IPv4 and IPv6 TCP
//! packets (first fragments only) whose source or destination port is one of the given ports,
//! for a packet socket of type `SOCK_DGRAM` (the program sees the network header at offset 0
//! and reads the protocol from the kernel's ancillary field). IPv6 packets with extension
//! headers before TCP are not matched, as with tcpdump's `tcp port N`. With more than
//! [`MAX_FILTERED_PORTS`] ports the program accepts all TCP (classic BPF jumps reach 255
//! instructions), and user space selects the ports. [`run`] interprets a program, for tests.

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

// The kernel reads the program as an array of `struct sock_filter`: same size, same alignment,
// same field order (`repr(C)` above).
const _: () = assert!(
    size_of::<Insn>() == size_of::<libc::sock_filter>() && align_of::<Insn>() == align_of::<libc::sock_filter>()
);
const _: () = assert!(std::mem::offset_of!(Insn, k) == std::mem::offset_of!(libc::sock_filter, k));

const LD_W_ABS: u16 = 0x20;
const LD_H_ABS: u16 = 0x28;
const LD_B_ABS: u16 = 0x30;
const LD_H_IND: u16 = 0x48;
const LDX_B_MSH: u16 = 0xb1;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
/// Ancillary load of the packet's protocol (`SKF_AD_OFF + SKF_AD_PROTOCOL`).
const AD_PROTOCOL: u32 = 0xffff_f000;
/// Most ports checked in the kernel; beyond, the filter passes all TCP.
pub const MAX_FILTERED_PORTS: usize = 40;
/// Bytes accepted per packet.
pub const SNAPLEN: u32 = 262_144;

/// A jump target while assembling.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Next,
    Accept,
    Drop,
    V6,
}

/// The program accepting TCP to or from `ports` (all TCP when there are too many to check).
pub fn port_filter(ports: &[u16]) -> Vec<Insn> {
    let all_tcp = ports.len() > MAX_FILTERED_PORTS;
    // Assembled with symbolic targets, then resolved to relative offsets.
    let mut prog: Vec<(u16, Target, Target, u32)> = Vec::new();
    let mut labels = [0usize; 3]; // accept, drop, v6
    let port_checks = |prog: &mut Vec<(u16, Target, Target, u32)>, load: u16, offset: u32, last: Target| {
        if all_tcp {
            if last == Target::Drop {
                prog.push((JEQ_K, Target::Accept, Target::Accept, 0)); // jump to accept
            }
            return;
        }
        prog.push((load, Target::Next, Target::Next, offset));
        for (i, &p) in ports.iter().enumerate() {
            let miss = if i + 1 == ports.len() { last } else { Target::Next };
            prog.push((JEQ_K, Target::Accept, miss, u32::from(p)));
        }
    };
    prog.push((LD_H_ABS, Target::Next, Target::Next, AD_PROTOCOL));
    prog.push((JEQ_K, Target::Next, Target::V6, 0x0800));
    // IPv4: TCP, not a later fragment, ports after the variable-length header.
    prog.push((LD_B_ABS, Target::Next, Target::Next, 9));
    prog.push((JEQ_K, Target::Next, Target::Drop, 6));
    prog.push((LD_H_ABS, Target::Next, Target::Next, 6));
    prog.push((JSET_K, Target::Drop, Target::Next, 0x1fff));
    prog.push((LDX_B_MSH, Target::Next, Target::Next, 0));
    port_checks(&mut prog, LD_H_IND, 0, Target::Next);
    port_checks(&mut prog, LD_H_IND, 2, Target::Drop);
    // IPv6: TCP right after the fixed header.
    labels[2] = prog.len();
    prog.push((LD_H_ABS, Target::Next, Target::Next, AD_PROTOCOL));
    prog.push((JEQ_K, Target::Next, Target::Drop, 0x86dd));
    prog.push((LD_B_ABS, Target::Next, Target::Next, 6));
    prog.push((JEQ_K, Target::Next, Target::Drop, 6));
    port_checks(&mut prog, LD_H_ABS, 40, Target::Next);
    port_checks(&mut prog, LD_H_ABS, 42, Target::Drop);
    labels[0] = prog.len();
    prog.push((RET_K, Target::Next, Target::Next, SNAPLEN));
    labels[1] = prog.len();
    prog.push((RET_K, Target::Next, Target::Next, 0));
    let resolve = |at: usize, t: Target| -> u8 {
        let dest = match t {
            Target::Next => at + 1,
            Target::Accept => labels[0],
            Target::Drop => labels[1],
            Target::V6 => labels[2],
        };
        u8::try_from(dest - at - 1).expect("jumps fit in a byte for MAX_FILTERED_PORTS ports")
    };
    prog.iter()
        .enumerate()
        .map(|(at, &(code, jt, jf, k))| Insn { code, jt: resolve(at, jt), jf: resolve(at, jf), k })
        .collect()
}

/// Interprets `prog` over `packet` (network header first) with ancillary `protocol`; returns
/// the number of bytes accepted (0: dropped). Loads past the end drop, as in the kernel.
pub fn run(prog: &[Insn], packet: &[u8], protocol: u16) -> u32 {
    let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
    let load = |at: u32, size: usize| -> Option<u32> {
        let at = at as usize;
        let bytes = packet.get(at..at.checked_add(size)?)?;
        Some(bytes.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)))
    };
    while let Some(i) = prog.get(pc) {
        pc += 1;
        match i.code {
            LD_W_ABS | LD_H_ABS | LD_B_ABS if i.k == AD_PROTOCOL => a = u32::from(protocol),
            LD_W_ABS => {
                a = match load(i.k, 4) {
                    Some(v) => v,
                    None => return 0,
                }
            }
            LD_H_ABS => {
                a = match load(i.k, 2) {
                    Some(v) => v,
                    None => return 0,
                }
            }
            LD_B_ABS => {
                a = match load(i.k, 1) {
                    Some(v) => v,
                    None => return 0,
                }
            }
            LD_H_IND => {
                a = match load(x.wrapping_add(i.k), 2) {
                    Some(v) => v,
                    None => return 0,
                }
            }
            LDX_B_MSH => {
                x = match load(i.k, 1) {
                    Some(v) => 4 * (v & 0xf),
                    None => return 0,
                }
            }
            JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
            JSET_K => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
            RET_K => return i.k,
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn ip_packet(v6: bool, sport: u16, dport: u16) -> (Vec<u8>, u16) {
        let mut out = Vec::new();
        let b = if v6 { PacketBuilder::ipv6([1; 16], [2; 16], 64) } else { PacketBuilder::ipv4([1; 4], [2; 4], 64) };
        b.tcp(sport, dport, 1, 100).write(&mut out, b"payload").unwrap();
        (out, if v6 { 0x86dd } else { 0x0800 })
    }

    #[test]
    fn accepts_tcp_to_or_from_the_ports_only() {
        let prog = port_filter(&[1883, 8883]);
        for v6 in [false, true] {
            for (sport, dport, accepted) in
                [(50000, 1883, true), (1883, 50000, true), (8883, 1, true), (50000, 80, false)]
            {
                let (p, proto) = ip_packet(v6, sport, dport);
                assert_eq!(run(&prog, &p, proto) > 0, accepted, "v6={v6} {sport}->{dport}");
            }
        }
    }

    #[test]
    fn drops_other_protocols_fragments_and_short_packets() {
        let prog = port_filter(&[1883]);
        let mut udp = Vec::new();
        PacketBuilder::ipv4([1; 4], [2; 4], 64).udp(5, 1883).write(&mut udp, b"x").unwrap();
        assert_eq!(run(&prog, &udp, 0x0800), 0);
        let (tcp, _) = ip_packet(false, 1, 1883);
        assert_eq!(run(&prog, &tcp, 0x0806), 0, "ARP protocol");
        let mut later_fragment = tcp.clone();
        later_fragment[7] = 0x10; // fragment offset 16
        assert_eq!(run(&prog, &later_fragment, 0x0800), 0);
        assert_eq!(run(&prog, &tcp[..22], 0x0800), 0, "cut before the ports");
    }

    #[test]
    fn many_ports_pass_all_tcp_and_the_limit_still_assembles() {
        let limit: Vec<u16> = (1000..1000 + MAX_FILTERED_PORTS as u16).collect();
        let prog = port_filter(&limit);
        assert!(run(&prog, &ip_packet(false, 5, 1039).0, 0x0800) > 0);
        assert_eq!(run(&prog, &ip_packet(true, 5, 2000).0, 0x86dd), 0);
        let many: Vec<u16> = (1000..1200).collect();
        let prog = port_filter(&many);
        for v6 in [false, true] {
            let (p, proto) = ip_packet(v6, 5, 9999);
            assert!(run(&prog, &p, proto) > 0, "all TCP passes");
        }
        let mut udp = Vec::new();
        PacketBuilder::ipv4([1; 4], [2; 4], 64).udp(5, 1100).write(&mut udp, b"x").unwrap();
        assert_eq!(run(&prog, &udp, 0x0800), 0, "UDP still dropped");
    }

    #[test]
    fn ipv4_options_move_the_ports() {
        let prog = port_filter(&[1883]);
        let (mut p, proto) = ip_packet(false, 1, 1883);
        // Insert 4 bytes of NOP options: IHL 6.
        p.splice(20..20, [1, 1, 1, 1]);
        p[0] = 0x46;
        assert!(run(&prog, &p, proto) > 0);
    }
}
