//! `analyze --session ID`: one session's full timeline as text, every event (pings included) on
//! its own line as it happens.
//!
//! Contract: [`Timeline`] is a sink that writes the events of one session, and only those, in
//! time order: the time (in the report's zone), the seconds since the session's first event, the
//! event kind and its fields in words. The title line comes with the session's first event, so
//! nothing is written for a session that never appears ([`Timeline::found`] says whether it
//! did). Captured strings are escaped ([`terminal::escape`]); memory does not grow with the
//! number of events.

use super::terminal::{self, escape};
use super::times::Zone;
use crate::session::{Event, EventKind, SessionId};
use crate::sink::Sink;
use crate::time::Timestamp;
use std::io::Write;

/// Writes one session's events as text lines.
pub struct Timeline<W: Write> {
    out: W,
    session: SessionId,
    zone: Zone,
    /// The session's first event's time, once seen.
    start: Option<Timestamp>,
    events: u64,
}

impl<W: Write> Timeline<W> {
    pub fn new(out: W, session: SessionId, zone: Zone) -> Self {
        Timeline { out, session, zone, start: None, events: 0 }
    }

    /// True once the session's first event was written.
    pub fn found(&self) -> bool {
        self.start.is_some()
    }

    /// Events written.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The session it writes.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

const TIME_WIDTH: usize = 23;

impl<W: Write> Sink for Timeline<W> {
    fn on_event(&mut self, e: &Event) -> std::io::Result<()> {
        if e.session != self.session || matches!(e.kind, EventKind::ClientActivity { .. }) {
            return Ok(());
        }
        let start = match self.start {
            Some(s) => s,
            None => {
                self.start = Some(e.ts);
                writeln!(
                    self.out,
                    "Session {}: client {}, broker {}; times {}\n",
                    e.session,
                    e.flow.client,
                    e.flow.broker,
                    self.zone.label(e.ts)
                )?;
                let mut head = String::new();
                terminal::pad(&mut head, "TIME", TIME_WIDTH + 2);
                terminal::pad(&mut head, "+SECONDS", 12);
                terminal::pad(&mut head, "EVENT", 26);
                writeln!(self.out, "{}", head.trim_end())?;
                e.ts
            }
        };
        self.events += 1;
        let mut line = String::new();
        terminal::pad(&mut line, &self.zone.format(e.ts), TIME_WIDTH + 2);
        terminal::pad(&mut line, &format!("{:.3}", e.ts.since(start).as_secs_f64()), 12);
        terminal::pad(&mut line, e.kind.as_str(), 26);
        line.push_str(&details(&e.kind, self.zone));
        writeln!(self.out, "{}", line.trim_end())
    }
}

/// An event's fields in words.
fn details(kind: &EventKind, zone: Zone) -> String {
    let secs = |d: std::time::Duration| format!("{:.3} s", d.as_secs_f64());
    match kind {
        EventKind::SessionStart { mid_stream: true } => "joined mid-stream (no handshake seen)".into(),
        EventKind::SessionStart { mid_stream: false } => String::new(),
        EventKind::Connect { protocol, keepalive_s, client_id, clean_start, will } => format!(
            "MQTT {}, client id {}, keepalive {keepalive_s} s{}{}",
            protocol.as_str(),
            client_id.as_deref().map_or_else(|| "unknown".into(), |id| escape(id).into_owned()),
            if *clean_start { ", clean start" } else { "" },
            if *will { ", with a Will" } else { "" }
        ),
        EventKind::Connack { code, server_keepalive_s, effective_keepalive_s } => {
            let mut s = format!("code {code}");
            if let Some(k) = server_keepalive_s {
                s.push_str(&format!(", Server Keep Alive {k} s"));
            }
            if let Some(k) = effective_keepalive_s {
                s.push_str(&format!(", effective keepalive {k} s"));
            }
            s
        }
        EventKind::Pingreq => String::new(),
        EventKind::Pingresp { rtt_ms: Some(rtt) } => format!("round trip {:.3} ms", rtt.as_secs_f64() * 1e3),
        EventKind::Pingresp { rtt_ms: None } => "no PINGREQ outstanding".into(),
        EventKind::KeepaliveExpired { keepalive_s, last_activity } => {
            format!("keepalive {keepalive_s} s, last client activity {}", zone.format(*last_activity))
        }
        EventKind::PingUnanswered { sent } => format!("PINGREQ sent {}", zone.format(*sent)),
        EventKind::Close { close, by, after_silence_s, reason_code } => {
            let reason = reason_code.map_or(String::new(), |c| format!(", reason code 0x{c:02x}"));
            format!("{} by {}, after {} of client silence{reason}", close.as_str(), by.as_str(), secs(*after_silence_s))
        }
        EventKind::CloseWithoutDisconnect { close, by, will_expected } => format!(
            "{} by {} without DISCONNECT{}",
            close.as_str(),
            by.as_str(),
            if *will_expected { ": the broker publishes the Will" } else { "" }
        ),
        EventKind::Enforcement { verdict, lag_s } => match lag_s {
            Some(l) => format!("{} ({l:+.3} s after the deadline)", verdict.as_str()),
            None => verdict.as_str().into(),
        },
        EventKind::Gap { side, bytes } => format!("{bytes} {} bytes never captured", side.as_str()),
        EventKind::Malformed { side, packet_type, reason } => {
            format!("{} sent {}: {}", side.as_str(), packet_type.map_or("bytes", |t| t.name()), escape(reason))
        }
        EventKind::Resync { side, skipped_bytes } => {
            format!("{} framing found after {skipped_bytes} bytes", side.as_str())
        }
        EventKind::ClientActivity { .. } => String::new(),
        EventKind::Transport { transport } => transport.as_str().into(),
        EventKind::TlsClientHello { sni, alpn } => format!(
            "server name {}, ALPN {}",
            sni.as_deref().map_or_else(|| "none".into(), |s| escape(s).into_owned()),
            if alpn.is_empty() { "none".into() } else { escape(&alpn.join(",")).into_owned() }
        ),
        EventKind::TlsServerHello { version, suite } => format!("TLS {} {}", escape(version), escape(suite)),
        EventKind::TlsKeys { decrypted: true, .. } => "records decrypted with the key log".into(),
        EventKind::TlsKeys { reason, .. } => format!("records stay encrypted ({})", reason.unwrap_or("no keys")),
        EventKind::TlsAlert { side, alert, level, description } => {
            format!("{alert} ({level}/{description}) from the {}", side.as_str())
        }
        EventKind::WsUpgrade { path, protocol } => format!(
            "GET {}{}",
            escape(path),
            protocol.as_deref().map_or(String::new(), |p| format!(", protocol {}", escape(p)))
        ),
        EventKind::WsResponse { status, .. } => format!("status {status}"),
        EventKind::WsControl { side, frame, close_code } => format!(
            "{frame} from the {}{}",
            side.as_str(),
            close_code.map_or(String::new(), |c| format!(", status {c}"))
        ),
        EventKind::TransportError { side, layer, reason } => {
            format!("{layer}: {} from the {}", escape(reason), side.as_str())
        }
        EventKind::SessionEnd { last_packet, max_silence_s, open, evicted, .. } => format!(
            "last packet {}, longest client silence {}{}{}",
            zone.format(*last_packet),
            secs(*max_silence_s),
            if *open { ", still open" } else { "" },
            if *evicted { ", evicted (idle)" } else { "" }
        ),
    }
}
