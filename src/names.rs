//! One name per value: the macro that gives a fieldless enum its names.
//!
//! Contract: `named!` defines an enum whose every variant has one name, returned by `as_str()`
//! and used everywhere the value is written: serde (JSON reports, events, `/sessions`), the text
//! table, and metric labels (`sink::metrics` encodes label values with `as_str()`). `ALL` lists
//! the variants (to start every metric series at 0, and for tests).

/// Defines a fieldless enum with `as_str()`, `ALL`, `Display` and `Serialize` by name.
macro_rules! named {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),*
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The value's one name (JSON, text, metric labels).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::flow::Side;
    use crate::mqtt::{PacketType, Protocol};
    use crate::session::{CloseKind, EventKind, Verdict};
    use crate::sink::metrics::Direction;
    use crate::time::Timestamp;
    use std::time::Duration;

    fn serde_name<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_value(v).unwrap().as_str().unwrap().to_string()
    }

    #[test]
    fn every_name_is_its_serde_name() {
        macro_rules! check {
            ($($t:ty),*) => {$(
                for v in <$t>::ALL {
                    assert_eq!(serde_name(v), v.as_str());
                    assert_eq!(v.to_string(), v.as_str());
                }
            )*};
        }
        check!(Side, CloseKind, Verdict, Protocol, Direction, crate::layer::Transport);
        for t in PacketType::ALL {
            assert_eq!(serde_name(&t), t.name());
        }
    }

    /// An index per kind: this match must list every kind, so a new kind cannot miss the test.
    fn index(k: &EventKind) -> usize {
        match k {
            EventKind::SessionStart { .. } => 0,
            EventKind::Connect { .. } => 1,
            EventKind::Connack { .. } => 2,
            EventKind::Pingreq => 3,
            EventKind::Pingresp { .. } => 4,
            EventKind::KeepaliveExpired { .. } => 5,
            EventKind::PingUnanswered { .. } => 6,
            EventKind::Close { .. } => 7,
            EventKind::CloseWithoutDisconnect { .. } => 8,
            EventKind::Enforcement { .. } => 9,
            EventKind::Gap { .. } => 10,
            EventKind::Malformed { .. } => 11,
            EventKind::Resync { .. } => 12,
            EventKind::ClientActivity { .. } => 13,
            EventKind::SessionEnd { .. } => 14,
            EventKind::Transport { .. } => 15,
            EventKind::TlsClientHello { .. } => 16,
            EventKind::TlsServerHello { .. } => 17,
            EventKind::TlsKeys { .. } => 18,
            EventKind::TlsAlert { .. } => 19,
            EventKind::WsUpgrade { .. } => 20,
            EventKind::WsResponse { .. } => 21,
            EventKind::WsControl { .. } => 22,
            EventKind::TransportError { .. } => 23,
        }
    }

    #[test]
    fn every_event_kind_name_is_its_serde_tag() {
        let t = Timestamp::from_nanos(0);
        let d = Duration::ZERO;
        let side = Side::Client;
        let kinds = [
            EventKind::SessionStart { mid_stream: false },
            EventKind::Connect {
                protocol: Protocol::V5,
                keepalive_s: 1,
                client_id: None,
                clean_start: true,
                will: false,
            },
            EventKind::Connack { code: 0, server_keepalive_s: None, effective_keepalive_s: None },
            EventKind::Pingreq,
            EventKind::Pingresp { rtt_ms: None },
            EventKind::KeepaliveExpired { keepalive_s: 1, last_activity: t },
            EventKind::PingUnanswered { sent: t },
            EventKind::Close { close: CloseKind::Fin, by: side, after_silence_s: d, reason_code: None },
            EventKind::CloseWithoutDisconnect { close: CloseKind::Rst, by: side, will_expected: true },
            EventKind::Enforcement { verdict: Verdict::Late, lag_s: None },
            EventKind::Gap { side, bytes: 1 },
            EventKind::Malformed { side, packet_type: None, reason: String::new() },
            EventKind::Resync { side, skipped_bytes: 1 },
            EventKind::ClientActivity { silence_s: d, keepalive_s: 1 },
            EventKind::SessionEnd { last_packet: t, max_silence_s: d, open: false, evicted: false, mqtt: true },
            EventKind::Transport { transport: crate::layer::Transport::Tls },
            EventKind::TlsClientHello { sni: None, alpn: vec![] },
            EventKind::TlsServerHello { version: "1.3".into(), suite: "x".into() },
            EventKind::TlsKeys { decrypted: false, reason: None },
            EventKind::TlsAlert { side, alert: "close_notify", level: 1, description: 0 },
            EventKind::WsUpgrade { path: "/".into(), protocol: None },
            EventKind::WsResponse { status: 101, protocol: None },
            EventKind::WsControl { side, frame: "ping", close_code: None },
            EventKind::TransportError { side, layer: "tls", reason: String::new() },
        ];
        let mut seen = [false; 24];
        for k in &kinds {
            assert_eq!(serde_json::to_value(k).unwrap()["kind"], k.as_str());
            seen[index(k)] = true;
        }
        assert!(seen.iter().all(|s| *s), "every kind is checked");
    }
}
