//! Events: everything the core reports. Sinks (report, JSON lines, metrics) are folds over them.
//!
//! Contract: events are emitted in timestamp order. A timer event carries the time its deadline
//! passed, not the time of the packet that revealed it, so a capture always gives the same
//! timeline. JSON field names here are part of the documented output format.

use crate::flow::{FlowKey, Side};
use crate::layer::Transport;
use crate::mqtt::{PacketType, Protocol};
use crate::time::Timestamp;
use serde::{Serialize, Serializer};
use std::time::Duration;

/// Sessions are numbered from 0 in the order they were first seen.
pub type SessionId = u64;

/// One thing that happened to one session.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    #[serde(serialize_with = "secs")]
    pub ts: Timestamp,
    pub session: SessionId,
    #[serde(flatten)]
    pub flow: FlowKeyJson,
    #[serde(flatten)]
    pub kind: EventKind,
    /// The session's client id, as the tracker keeps it (once per session, with its record):
    /// `None` before its CONNECT, `Some(None)` after a CONNECT whose client id could not be read.
    /// Sinks read it here and keep no table of their own.
    #[serde(skip)]
    pub client_id: SeenClientId,
}

/// A session's client id as its events carry it (see [`Event::client_id`]).
pub type SeenClientId = Option<Option<compact_str::CompactString>>;

/// A flow key as it appears in JSON: `"client": "ip:port", "broker": "ip:port"`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FlowKeyJson {
    pub client: std::net::SocketAddr,
    pub broker: std::net::SocketAddr,
}

impl From<FlowKey> for FlowKeyJson {
    fn from(k: FlowKey) -> Self {
        FlowKeyJson { client: k.client, broker: k.broker }
    }
}

named! {
    /// How a session's connection ended.
    pub enum CloseKind {
        Disconnect => "disconnect",
        Fin => "fin",
        Rst => "rst",
        /// A TLS close_notify alert (before the TCP close).
        CloseNotify => "close_notify",
        /// A WebSocket close frame (before the TCP close); its status code is the close's code.
        WsClose => "ws_close",
        /// The broker refused the connection: a CONNACK with a non-zero code (the close's code),
        /// or its close right after a CONNECT it never answered (a protocol error). The session
        /// never began: no Will, no keepalive verdict.
        Refused => "refused",
    }
}

named! {
    /// Whether the broker enforced an expired keepalive.
    pub enum Verdict {
        /// Closed by the broker within the tolerance after the deadline.
        OnTime => "on_time",
        /// Closed by the broker, later than the tolerance.
        Late => "late",
        /// Not closed by the broker: the client went on, closed itself, or the capture ended.
        NotEnforced => "not_enforced",
        /// Closed by the broker after at least one keepalive of silence but before 1.5 x keepalive.
        Early => "early",
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A TCP connection to a broker port was first seen (SYN, or data when joined mid-stream).
    SessionStart {
        mid_stream: bool,
    },
    /// The client's CONNECT. The password is never read.
    Connect {
        protocol: Protocol,
        keepalive_s: u16,
        client_id: Option<String>,
        clean_start: bool,
        will: bool,
    },
    /// The broker's CONNACK, and the keepalive in force from now on.
    Connack {
        code: u8,
        server_keepalive_s: Option<u16>,
        effective_keepalive_s: Option<u16>,
    },
    Pingreq,
    /// A PINGRESP; `rtt_ms` is absent when no PINGREQ was outstanding.
    Pingresp {
        #[serde(serialize_with = "opt_millis")]
        rtt_ms: Option<Duration>,
    },
    /// The client was silent past 1.5 x keepalive; `ts` is the deadline itself.
    KeepaliveExpired {
        keepalive_s: u16,
        #[serde(serialize_with = "secs")]
        last_activity: Timestamp,
    },
    /// No PINGRESP within the ping timeout, or the session closed with a PINGREQ outstanding.
    PingUnanswered {
        #[serde(serialize_with = "secs")]
        sent: Timestamp,
    },
    /// The session closed: the first DISCONNECT, FIN, RST, TLS close_notify or WebSocket close.
    Close {
        close: CloseKind,
        by: Side,
        #[serde(serialize_with = "dur_secs")]
        after_silence_s: Duration,
        /// The MQTT 5 DISCONNECT reason code, or the WebSocket close frame's status code.
        reason_code: Option<u16>,
    },
    /// A close without DISCONNECT: the broker publishes the client's Will, if it has one.
    CloseWithoutDisconnect {
        close: CloseKind,
        by: Side,
        will_expected: bool,
    },
    /// The enforcement audit of an expired keepalive (or an early close).
    Enforcement {
        verdict: Verdict,
        lag_s: Option<f64>,
    },
    /// Stream bytes the capture never saw.
    Gap {
        side: Side,
        bytes: u64,
    },
    /// Bytes that are not valid MQTT.
    Malformed {
        side: Side,
        packet_type: Option<PacketType>,
        reason: String,
    },
    /// Packet framing found again after skipping bytes.
    Resync {
        side: Side,
        skipped_bytes: u64,
    },
    /// The connection's transport, decided from its first bytes.
    Transport {
        transport: Transport,
    },
    /// The client's TLS hello: the server name it asked for and the protocols it offered.
    TlsClientHello {
        sni: Option<String>,
        alpn: Vec<String>,
    },
    /// The broker's TLS hello: the version and cipher suite in force.
    TlsServerHello {
        version: String,
        suite: String,
    },
    /// Whether this session's TLS records are decrypted (its keys are in the key log), and why
    /// not when they are not.
    TlsKeys {
        decrypted: bool,
        reason: Option<&'static str>,
    },
    /// A TLS alert from `side`: `close_notify` (a clean close), or an error.
    TlsAlert {
        side: Side,
        alert: &'static str,
        level: u8,
        description: u8,
    },
    /// The client's WebSocket upgrade request.
    WsUpgrade {
        path: String,
        protocol: Option<String>,
    },
    /// The broker's answer to the upgrade (101: accepted).
    WsResponse {
        status: u16,
        protocol: Option<String>,
    },
    /// A WebSocket control frame from `side` (`ping`, `pong`, `close` with its status code). A
    /// WebSocket ping is not MQTT keepalive activity.
    WsControl {
        side: Side,
        frame: &'static str,
        close_code: Option<u16>,
    },
    /// Bytes a transport layer cannot read (a TLS record that does not decrypt, a WebSocket
    /// protocol error).
    TransportError {
        side: Side,
        layer: &'static str,
        reason: String,
    },
    /// A client packet, with its silence since the previous activity / effective keepalive.
    /// Emitted only when asked for ([`super::SessionConfig::activity_events`]), for metrics;
    /// not part of the JSON outputs.
    ClientActivity {
        #[serde(serialize_with = "dur_secs")]
        silence_s: Duration,
        keepalive_s: u16,
    },
    /// The session is finished with: closed and done, evicted, or open at the end of the capture.
    /// `mqtt` is false for a connection that never carried MQTT (no payload, or not MQTT).
    SessionEnd {
        /// Time of the connection's last packet.
        #[serde(serialize_with = "secs")]
        last_packet: Timestamp,
        #[serde(serialize_with = "dur_secs")]
        max_silence_s: Duration,
        open: bool,
        evicted: bool,
        mqtt: bool,
    },
}

impl EventKind {
    /// The kind's one name (JSON `kind`, HTML markers).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::SessionStart { .. } => "session_start",
            EventKind::Connect { .. } => "connect",
            EventKind::Connack { .. } => "connack",
            EventKind::Pingreq => "pingreq",
            EventKind::Pingresp { .. } => "pingresp",
            EventKind::KeepaliveExpired { .. } => "keepalive_expired",
            EventKind::PingUnanswered { .. } => "ping_unanswered",
            EventKind::Close { .. } => "close",
            EventKind::CloseWithoutDisconnect { .. } => "close_without_disconnect",
            EventKind::Enforcement { .. } => "enforcement",
            EventKind::Gap { .. } => "gap",
            EventKind::Malformed { .. } => "malformed",
            EventKind::Resync { .. } => "resync",
            EventKind::Transport { .. } => "transport",
            EventKind::TlsClientHello { .. } => "tls_client_hello",
            EventKind::TlsServerHello { .. } => "tls_server_hello",
            EventKind::TlsKeys { .. } => "tls_keys",
            EventKind::TlsAlert { .. } => "tls_alert",
            EventKind::WsUpgrade { .. } => "ws_upgrade",
            EventKind::WsResponse { .. } => "ws_response",
            EventKind::WsControl { .. } => "ws_control",
            EventKind::TransportError { .. } => "transport_error",
            EventKind::ClientActivity { .. } => "client_activity",
            EventKind::SessionEnd { .. } => "session_end",
        }
    }
}

pub use crate::model::times::round_us;
pub(crate) use crate::model::times::{dur_secs, secs};

fn opt_millis<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64(round_us(d.as_secs_f64() * 1e3)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_flat_with_their_kind() {
        let e = Event {
            ts: Timestamp::from_secs_f64(12.5),
            session: 3,
            flow: FlowKeyJson { client: "10.0.0.1:5000".parse().unwrap(), broker: "10.0.0.2:1883".parse().unwrap() },
            kind: EventKind::KeepaliveExpired { keepalive_s: 5, last_activity: Timestamp::from_secs_f64(5.0) },
            client_id: Some(Some("dev".into())),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"ts":12.5,"session":3,"client":"10.0.0.1:5000","broker":"10.0.0.2:1883","kind":"keepalive_expired","keepalive_s":5,"last_activity":5.0}"#
        );
        assert_eq!(e.kind.as_str(), "keepalive_expired");
    }
}
