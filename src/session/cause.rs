//! Why a session closed: one [`Cause`] for every close, and the packet-level evidence it reads.
//!
//! Contract: a close's *kind* ([`super::CloseKind`]) and its side say what was seen; its cause
//! says why, and is built only on what was visible. A cause that rests on something missing (no
//! DISCONNECT, no CONNACK, no PINGRESP) holds only where the capture saw the direction that would
//! have carried it; otherwise it is [`Cause::Unknown`] with the reason. [`PathEvidence`] carries
//! the facts below MQTT (IP TTLs, TCP sequence numbers, retransmissions, capture losses) that the
//! flow tracker gathered for the connection.

use crate::flow::{Side, Sides};

named! {
    /// Why a session closed (bounded: a metric label).
    pub enum Cause {
        /// The client sent DISCONNECT (or it was inferred where TLS hid it, see the detail).
        Graceful => "graceful",
        /// The broker refused the connection: the session never began.
        Refused => "refused",
        /// The broker closed a silent client: expired (on time or late), or early.
        BrokerKeepalive => "broker_keepalive",
        /// The client closed (FIN, RST, close_notify, WebSocket close) without DISCONNECT.
        ClientVanished => "client_vanished",
        /// The close was not written by the peer it claims to come from, or the path cut the
        /// connection after its idle timeout.
        Middlebox => "middlebox",
        /// Data retransmitted and never acknowledged, then an RST or silence.
        NetworkLost => "network_lost",
        /// The broker closed a session that was not silent (e.g. a protocol error, a takeover).
        BrokerClosed => "broker_closed",
        /// The evidence the cause would rest on was not visible (capture lost it, TLS hid it).
        Unknown => "unknown",
    }
}

/// Facts below MQTT about one connection, gathered by the flow tracker, that a cause reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathEvidence {
    /// The close's packets were not written by the peer they claim to come from: why (e.g.
    /// "RST TTL 62, the client's other packets 64").
    pub forged_close: Option<String>,
    /// The side whose data was retransmitted and never acknowledged before the close, and how
    /// many retransmissions were seen.
    pub retransmitted_unacked: Option<(Side, u32)>,
    /// Bytes the capture lost in each direction (sequence gaps), by the side that sent them.
    pub lost_bytes: Sides<u64>,
}
