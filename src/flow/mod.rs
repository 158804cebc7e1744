//! TCP flows: who is the client and who the broker, sequence numbers, and reassembly.
//!
//! A [`FlowKey`] is oriented: the side that owns a configured MQTT port is the broker. The
//! connection table itself lives in [`crate::tracker`].

pub mod reassembly;
pub mod seq;
pub mod slab;

use std::net::SocketAddr;

named! {
    /// One side of an MQTT connection.
    pub enum Side {
        Client => "client",
        Broker => "broker",
    }
}

/// One value per side of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sides<T> {
    pub client: T,
    pub broker: T,
}

impl<T> Sides<T> {
    /// The value of `side`.
    pub fn get(&self, side: Side) -> &T {
        match side {
            Side::Client => &self.client,
            Side::Broker => &self.broker,
        }
    }

    /// The value of `side`, to change.
    pub fn get_mut(&mut self, side: Side) -> &mut T {
        match side {
            Side::Client => &mut self.client,
            Side::Broker => &mut self.broker,
        }
    }
}

/// A TCP connection's addresses, oriented client -> broker.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlowKey {
    pub client: SocketAddr,
    pub broker: SocketAddr,
}

/// The set of TCP ports that brokers listen on.
#[derive(Clone)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
}

impl PortSet {
    /// The set holding `ports`.
    pub fn new(ports: &[u16]) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for &p in ports {
            bits[usize::from(p / 64)] |= 1 << (p % 64);
        }
        PortSet { bits }
    }

    /// True if `port` is a broker port.
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port / 64)] & (1 << (port % 64)) != 0
    }
}

impl FlowKey {
    /// Orients a segment from `src` to `dst`: its flow key and which side sent it, or `None` when
    /// neither end is on a broker port. When both are, the destination is taken as the broker.
    pub fn orient(src: SocketAddr, dst: SocketAddr, ports: &PortSet) -> Option<(FlowKey, Side)> {
        if ports.contains(dst.port()) {
            Some((FlowKey { client: src, broker: dst }, Side::Client))
        } else if ports.contains(src.port()) {
            Some((FlowKey { client: dst, broker: src }, Side::Broker))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_side_owning_the_port_is_the_broker() {
        let ports = PortSet::new(&[1883, 8883]);
        let c: SocketAddr = "10.0.0.1:50000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:8883".parse().unwrap();
        let (k1, s1) = FlowKey::orient(c, b, &ports).unwrap();
        let (k2, s2) = FlowKey::orient(b, c, &ports).unwrap();
        assert_eq!(k1, k2);
        assert_eq!((s1, s2), (Side::Client, Side::Broker));
        assert_eq!(k1.broker, b);
        let other: SocketAddr = "10.0.0.2:80".parse().unwrap();
        assert!(FlowKey::orient(c, other, &ports).is_none());
        assert!(!ports.contains(65535) && PortSet::new(&[65535]).contains(65535));
    }
}
