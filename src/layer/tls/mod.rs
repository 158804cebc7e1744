//! TLS: the layer between a connection's TCP streams and MQTT when MQTT runs over TLS (8883).
//!
//! Contract: [`TlsLayer`] is a [`Layer`]: fed each side's in-order TCP stream, it frames TLS
//! records ([`record`]), reads the handshake ([`handshake`]: SNI, ALPN, version, suite, randoms)
//! and, when the [`KeyLog`] holds the session's secrets, decrypts TLS 1.3 and TLS 1.2 records
//! protected with AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305 ([`keys`]), follows KeyUpdate,
//! and hands the decrypted application data up in order (`Up::data`). It detects nothing itself:
//! the connection decides it is TLS with [`sniff_client_hello`] (first client bytes) or
//! [`sniff_record`] (mid-stream).
//!
//! What it reports ([`TlsEvent`], via `Up::event` as [`LayerEvent::Tls`], from the side that sent
//! it): the hello facts; `Decrypting` or `Encrypted` with the reason (no key log, no line for this
//! client random, unsupported suite such as CBC, resumption without a key line, handshake not
//! seen) — a session without keys is not an error; every protected record it cannot decrypt as
//! `Opaque` with its length and, when the suite is known, the plaintext length it implies (an
//! MQTT PINGREQ/PINGRESP is 2 bytes; any client record is activity); alerts (level and
//! description; decrypted ones marked); KeyUpdates; decrypt failures (bad tag: counted, the
//! record's plaintext becomes a gap); records lost to a TCP gap; resyncs; errors (hostile record
//! lengths, bad headers, malformed hellos) — counted in [`TlsStats`], never a panic and never an
//! allocation beyond one record (2^14 + 2048 bytes) per side.
//!
//! Without keys, TLS 1.3 hides content types: alerts (close_notify too) are application-data
//! records of the same size as a 2-byte MQTT packet (19 bytes), so the last such record before a
//! FIN is more likely an alert than a ping; TLS 1.2 alerts keep content type 21.
//!
//! Gaps: a TCP gap inside a record loses that record (its plaintext length is handed up as a
//! gap when the suite says it exactly — TLS 1.2 — else [`UNKNOWN_LEN`]) but keeps the framing
//! and the sequence number; a gap across records loses the framing: the reader resyncs on a
//! plausible header and the decryptor probes the next [`SEQ_PROBE`] sequence numbers (TLS 1.2
//! AES-GCM: the explicit nonce first, at any distance) until a tag verifies; after
//! `PROBE_GIVE_UP` records that none opens, the side stays encrypted (`LostSequence`).
//!
//! Keys that reach the key log late (`live --tls-keylog` reads the file on a cadence, and clients
//! write a line during the handshake): a session that found no line at its ServerHello looks
//! again at each protected record once the key log has new lines, and when it finds them starts
//! decrypting mid-stream (reporting `Decrypting` after its `Encrypted`), probing sequence numbers
//! as after a gap; records that went by before stay opaque. So that the first records (the
//! client's Finished and CONNECT, sent just after it wrote its lines) are not among those, each
//! side's first [`CATCH_UP_LIMIT`] protected records after a miss also make a followed key log
//! read its file at once ([`KeyLog::catch_up`]); a session whose line never comes costs at most
//! that many reads a side.
//!
//! Not handled: TLS 1.3 0-RTT early data (records under the early traffic secret are opaque),
//! renegotiation, CBC and other non-AEAD suites (reported as `Encrypted { UnsupportedSuite }`).

pub mod handshake;
pub mod keylog;
pub mod keys;
pub mod record;

use std::sync::Arc;

use self::handshake::{HandshakeReader, HelloError, ServerHello};
pub use self::keylog::{KeyLog, KeyLogError, KeyLogStats, SessionKeys};
use self::keys::{Opened, RecordKeys, Suite};
pub use self::keys::{Secret, suite_name};
use self::record::{ALERT, APPLICATION_DATA, CHANGE_CIPHER_SPEC, Framed, HANDSHAKE, Header, RecordReader};
pub use self::record::{MAX_RECORD_LEN, sniff_client_hello, sniff_record};
use super::{Chunk, Layer, LayerEvent, UNKNOWN_LEN, Up};
use crate::flow::Side;

/// How many sequence numbers past the expected one are tried after the framing was lost.
pub const SEQ_PROBE: u64 = 64;
/// After this many records that no probed sequence number opens, a side stops decrypting.
const PROBE_GIVE_UP: u32 = 8;
/// A side's protected records after a key log miss that make a followed key log read its file.
pub const CATCH_UP_LIMIT: u8 = 4;

/// TLS 1.2 and 1.3 version numbers.
pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// Whether some bytes look like the protocol asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sniff {
    Yes,
    No,
    /// Too few bytes to say; ask again with more.
    NeedMore,
}

/// An alert (RFC 8446 §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alert {
    /// 1 warning, 2 fatal.
    pub level: u8,
    pub description: u8,
}

impl Alert {
    /// close_notify: the sender closes its side cleanly.
    pub fn is_close_notify(&self) -> bool {
        self.description == 0
    }
    /// A fatal alert: level 2, or any description but close_notify, user_canceled and
    /// no_renegotiation (TLS 1.3 ignores the level: every other alert is fatal there).
    pub fn is_fatal(&self) -> bool {
        self.level == 2 || !matches!(self.description, 0 | 90 | 100)
    }
    /// The description's name, for the common ones.
    pub fn name(&self) -> &'static str {
        match self.description {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            40 => "handshake_failure",
            42 => "bad_certificate",
            46 => "certificate_unknown",
            48 => "unknown_ca",
            50 => "decode_error",
            51 => "decrypt_error",
            70 => "protocol_version",
            80 => "internal_error",
            90 => "user_canceled",
            109 => "missing_extension",
            112 => "unrecognized_name",
            116 => "certificate_required",
            120 => "no_application_protocol",
            _ => "other",
        }
    }
}

/// Why a session's records stay encrypted. Not an error: the session is still observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncryptedReason {
    /// No key log was given.
    NoKeyLog,
    /// The key log has no line for this session's client random.
    NoKeyLogLine,
    /// The key log's lines for this session lack a secret this version needs, or have the
    /// wrong length for the suite.
    IncompleteKeyLogLine,
    /// A resumed session (TLS 1.2 session id / ticket, TLS 1.3 PSK) with no key log line.
    ResumptionWithoutKeys,
    /// A suite this layer does not decrypt (CBC, CCM, ...), by IANA number.
    UnsupportedSuite(u16),
    /// A version other than TLS 1.2 and 1.3.
    UnsupportedVersion(u16),
    /// The handshake was not seen (joined mid-stream): no client random, no suite.
    HandshakeNotSeen,
    /// After a gap no probed sequence number opened the records: decryption stopped.
    LostSequence,
}

impl EncryptedReason {
    /// The reason's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptedReason::NoKeyLog => "no_key_log",
            EncryptedReason::NoKeyLogLine => "no_key_log_line",
            EncryptedReason::IncompleteKeyLogLine => "incomplete_key_log_line",
            EncryptedReason::ResumptionWithoutKeys => "resumption_without_keys",
            EncryptedReason::UnsupportedSuite(_) => "unsupported_suite",
            EncryptedReason::UnsupportedVersion(_) => "unsupported_version",
            EncryptedReason::HandshakeNotSeen => "handshake_not_seen",
            EncryptedReason::LostSequence => "lost_sequence",
        }
    }
}

/// A TLS version as people write it ("1.2"), or its number.
pub fn version_name(v: u16) -> String {
    match v {
        0x0301 => "1.0".into(),
        0x0302 => "1.1".into(),
        TLS12 => "1.2".into(),
        TLS13 => "1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// An error in the TLS framing or handshake (counted; the layer goes on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("TLS record of {len} bytes is longer than the 2^14+2048 allowed")]
    RecordTooLong { len: u16 },
    #[error("empty TLS record of content type {content_type}")]
    EmptyRecord { content_type: u8 },
    #[error("bytes that are not a TLS record header")]
    BadRecordHeader,
    #[error("malformed hello: {0}")]
    BadHello(HelloError),
    #[error("alert record of {len} bytes")]
    BadAlert { len: u16 },
    #[error("decrypted record of unexpected content type {content_type}")]
    UnexpectedContentType { content_type: u8 },
}

/// What the TLS layer saw of its own framing.
#[derive(Clone, Debug, PartialEq)]
pub enum TlsEvent {
    /// The client's hello.
    ClientHello {
        sni: Option<String>,
        alpn: Vec<String>,
        /// Offered versions (supported_versions, else the legacy version).
        versions: Vec<u16>,
        /// A TLS 1.3 pre_shared_key or a TLS 1.2 session id was offered.
        resumption_offered: bool,
    },
    /// The server's hello: what was negotiated.
    ServerHello { version: u16, suite: u16, alpn: Option<String>, resumed: bool },
    /// Keys were found: records of this session will be decrypted.
    Decrypting { version: u16, suite: u16 },
    /// Records of this session stay encrypted, and why.
    Encrypted { reason: EncryptedReason },
    /// A protected record not decrypted: its outer content type (TLS 1.3: always 23), length,
    /// and the plaintext length it implies when the suite is known (TLS 1.3: assuming no
    /// padding).
    Opaque { content_type: u8, len: u16, plaintext_len: Option<u16> },
    /// An alert; `encrypted` when it was decrypted from a protected record.
    Alert { alert: Alert, encrypted: bool },
    /// The sender's keys moved to the next generation.
    KeyUpdate { generation: u32 },
    /// A protected record whose tag did not verify: its plaintext is handed up as a gap.
    DecryptFailed { content_type: u8, len: u16 },
    /// A record a TCP gap cut: its length is known, its content lost.
    RecordLost { content_type: u8, len: u16 },
    /// Record framing found again after a gap, `skipped` bytes later.
    Resync { skipped: u64 },
    /// A framing or handshake error.
    Error(TlsError),
}

/// Counters of one TLS layer (one connection).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    pub records: u64,
    pub decrypted: u64,
    pub decrypted_bytes: u64,
    pub opaque: u64,
    pub decrypt_failures: u64,
    pub lost_records: u64,
    pub gaps: u64,
    pub resyncs: u64,
    pub errors: u64,
    pub alerts: u64,
}

/// What to change in a side's keys once the current record is done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Switch {
    #[default]
    None,
    /// TLS 1.3 Finished sent: application keys from the next record on.
    ToApplication,
    /// TLS 1.3 KeyUpdate sent: the next generation from the next record on.
    NextGeneration,
}

#[derive(Debug, Default)]
struct Direction {
    reader: RecordReader,
    hs: HandshakeReader,
    /// This side's handshake, alert and application records are protected.
    protected: bool,
    keys: Option<RecordKeys>,
    /// TLS 1.3: the application keys, waiting for Finished. TLS 1.2: the keys, waiting for
    /// ChangeCipherSpec.
    next: Option<RecordKeys>,
    /// The framing was lost: probe sequence numbers on the next record.
    seq_unknown: bool,
    probe_failures: u32,
    switch: Switch,
    /// Key log reads this side's records asked for after a miss (at most [`CATCH_UP_LIMIT`]).
    catch_ups: u8,
}

/// The TLS layer of one connection; see the module doc.
pub struct TlsLayer {
    keylog: Option<Arc<KeyLog>>,
    client_random: Option<[u8; 32]>,
    client_session_id: Vec<u8>,
    server: Option<ServerHello>,
    /// The version a HelloRetryRequest chose (TLS 1.3).
    retry_version: Option<u16>,
    suite: Option<Suite>,
    /// Why records stay encrypted, once reported.
    encrypted: Option<EncryptedReason>,
    /// The key log's generation when the lookup found no line (retry when it changes).
    missed_at: Option<u64>,
    sides: [Direction; 2],
    stats: TlsStats,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for TlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLayer")
            .field("suite", &self.suite.map(|s| s.id))
            .field("encrypted", &self.encrypted)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn idx(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Broker => 1,
    }
}

impl TlsLayer {
    /// A layer for one connection; `keylog` is shared by all connections (None: no keys).
    pub fn new(keylog: Option<Arc<KeyLog>>) -> Self {
        TlsLayer {
            keylog,
            client_random: None,
            client_session_id: Vec::new(),
            server: None,
            retry_version: None,
            suite: None,
            encrypted: None,
            missed_at: None,
            sides: Default::default(),
            stats: TlsStats::default(),
            scratch: Vec::new(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &TlsStats {
        &self.stats
    }

    /// The negotiated version and suite, once the ServerHello was seen.
    pub fn negotiated(&self) -> Option<(u16, u16)> {
        self.server.as_ref().map(|s| (s.version, s.suite))
    }

    /// Why records stay encrypted, if they do.
    pub fn encrypted_reason(&self) -> Option<EncryptedReason> {
        self.encrypted
    }

    fn event(&mut self, side: Side, e: TlsEvent, up: &mut dyn Up) {
        if matches!(e, TlsEvent::Error(_)) {
            self.stats.errors += 1;
        }
        up.event(side, LayerEvent::Tls(e));
    }

    fn set_encrypted(&mut self, side: Side, reason: EncryptedReason, up: &mut dyn Up) {
        if self.encrypted.is_none() {
            self.encrypted = Some(reason);
            self.event(side, TlsEvent::Encrypted { reason }, up);
        }
    }

    /// The plaintext length a protected record of `len` bytes implies, when the suite is known.
    fn implied(&self, len: u16) -> Option<u16> {
        let s = self.suite?;
        (len as usize).checked_sub(s.overhead()).map(|n| n as u16)
    }

    fn on_framed(&mut self, side: Side, framed: Framed<'_>, up: &mut dyn Up) {
        match framed {
            Framed::Record(h, body) => {
                self.stats.records += 1;
                self.on_record(side, h, body, up);
            }
            Framed::Damaged(h) => {
                self.stats.lost_records += 1;
                let d = &mut self.sides[idx(side)];
                let protected =
                    d.protected || (self.suite.is_some_and(|s| s.tls13) && h.content_type == APPLICATION_DATA);
                if let Some(k) = d.keys.as_mut().filter(|_| protected && !d.seq_unknown) {
                    k.seq += 1;
                }
                if h.content_type == HANDSHAKE {
                    d.hs.reset();
                }
                self.event(side, TlsEvent::RecordLost { content_type: h.content_type, len: h.len }, up);
                if h.content_type == APPLICATION_DATA {
                    let exact = self.suite.filter(|s| !s.tls13).and_then(|_| self.implied(h.len));
                    up.gap(side, exact.map_or(UNKNOWN_LEN, u64::from));
                }
            }
            Framed::Lost => {
                self.stats.gaps += 1;
                let d = &mut self.sides[idx(side)];
                d.hs.reset();
                if d.keys.is_some() || d.next.is_some() {
                    d.seq_unknown = true;
                }
                up.gap(side, UNKNOWN_LEN);
            }
            Framed::Resync { skipped } => {
                self.stats.resyncs += 1;
                self.event(side, TlsEvent::Resync { skipped }, up);
            }
            Framed::TooLong(h) => self.event(side, TlsEvent::Error(TlsError::RecordTooLong { len: h.len }), up),
            Framed::BadHeader => self.event(side, TlsEvent::Error(TlsError::BadRecordHeader), up),
        }
    }

    fn on_record(&mut self, side: Side, h: Header, body: &mut [u8], up: &mut dyn Up) {
        if h.len == 0 {
            return self.event(side, TlsEvent::Error(TlsError::EmptyRecord { content_type: h.content_type }), up);
        }
        let tls13 = self.suite.is_some_and(|s| s.tls13)
            || self.server.as_ref().is_some_and(|s| s.version == TLS13)
            || self.retry_version == Some(TLS13);
        let d = &mut self.sides[idx(side)];
        match h.content_type {
            // TLS 1.3 sends it only for middlebox compatibility; TLS 1.2: protection starts.
            CHANGE_CIPHER_SPEC if !tls13 => {
                d.protected = true;
                if let Some(next) = d.next.take() {
                    d.keys = Some(next);
                }
            }
            CHANGE_CIPHER_SPEC => {}
            // A 2-byte alert is plaintext even after protection began (a protected one has a tag).
            ALERT if h.len == 2 || !d.protected => self.plain_alert(side, h, body, false, up),
            ALERT | HANDSHAKE | APPLICATION_DATA if d.protected => self.protected(side, h, body, up),
            HANDSHAKE => self.handshake_bytes(side, body, up),
            APPLICATION_DATA => {
                // Protected data with no handshake seen (joined mid-stream).
                if self.server.is_none() {
                    self.set_encrypted(side, EncryptedReason::HandshakeNotSeen, up);
                }
                self.opaque(side, h, up);
            }
            _ => {} // heartbeat
        }
    }

    fn plain_alert(&mut self, side: Side, h: Header, body: &[u8], encrypted: bool, up: &mut dyn Up) {
        match body {
            [level, description, ..] if body.len() == 2 => {
                self.stats.alerts += 1;
                let alert = Alert { level: *level, description: *description };
                self.event(side, TlsEvent::Alert { alert, encrypted }, up);
            }
            _ => self.event(side, TlsEvent::Error(TlsError::BadAlert { len: h.len }), up),
        }
    }

    fn opaque(&mut self, side: Side, h: Header, up: &mut dyn Up) {
        self.stats.opaque += 1;
        let plaintext_len = self.implied(h.len);
        self.event(side, TlsEvent::Opaque { content_type: h.content_type, len: h.len, plaintext_len }, up);
    }

    /// A protected record: decrypt it if keys allow, else report it opaque.
    fn protected(&mut self, side: Side, h: Header, body: &mut [u8], up: &mut dyn Up) {
        let i = idx(side);
        if self.sides[i].keys.is_none() && self.sides[i].next.is_none() && !self.retry_late_keys(side, up) {
            return self.opaque(side, h, up);
        }
        let header = h.bytes();
        let opened = self.try_open(i, &header, body);
        let Some((content_type, len)) = opened else {
            let d = &mut self.sides[i];
            if d.seq_unknown {
                d.probe_failures += 1;
                if d.probe_failures >= PROBE_GIVE_UP {
                    d.keys = None;
                    d.next = None;
                    self.encrypted = None;
                    self.set_encrypted(side, EncryptedReason::LostSequence, up);
                }
            } else if let Some(k) = d.keys.as_mut() {
                k.seq += 1;
            }
            self.stats.decrypt_failures += 1;
            self.event(side, TlsEvent::DecryptFailed { content_type: h.content_type, len: h.len }, up);
            if h.content_type == APPLICATION_DATA {
                let exact = self.suite.filter(|s| !s.tls13).and_then(|_| self.implied(h.len));
                up.gap(side, exact.map_or(UNKNOWN_LEN, u64::from));
            }
            return;
        };
        self.stats.decrypted += 1;
        let plain = &body[..len];
        match content_type {
            APPLICATION_DATA => {
                self.stats.decrypted_bytes += len as u64;
                up.data(side, plain);
            }
            ALERT => self.plain_alert(side, h, plain, true, up),
            HANDSHAKE => self.handshake_bytes(side, plain, up),
            other => self.event(side, TlsEvent::Error(TlsError::UnexpectedContentType { content_type: other }), up),
        }
        self.apply_switch(side, up);
    }

    /// Opens a record with the side's current keys (probing sequence numbers after a gap), or
    /// with its pending TLS 1.3 application keys when the handshake keys do not open it (a
    /// Finished the layer missed, or no handshake secrets in the key log). Returns the real
    /// content type and plaintext length (the plaintext is at the start of `body`).
    fn try_open(&mut self, i: usize, header: &[u8; 5], body: &mut [u8]) -> Option<(u8, usize)> {
        let d = &mut self.sides[i];
        let probe = if d.seq_unknown { SEQ_PROBE } else { 0 };
        // Candidates: (from the pending keys, sequence number), most likely first.
        let current = d.keys.as_ref().map(|k| {
            // TLS 1.2 AES-GCM: the explicit nonce is the sequence number with most stacks, so
            // it is tried first however many records the gap took.
            let hint = k.explicit_seq_hint(body).filter(|s| d.seq_unknown && *s >= k.seq);
            hint.into_iter().chain(k.seq..=k.seq.saturating_add(probe)).map(|s| (false, s))
        });
        let pending = d.next.as_ref().filter(|n| n.suite().tls13).map(|_| (0..=probe).map(|s| (true, s)));
        let candidates = current.into_iter().flatten().chain(pending.into_iter().flatten());
        // The common case, one candidate, decrypts in place; otherwise each try starts from a copy.
        let single = probe == 0 && (d.keys.is_none() || d.next.as_ref().is_none_or(|n| !n.suite().tls13));
        if !single {
            self.scratch.clear();
            self.scratch.extend_from_slice(body);
        }
        let mut found = None;
        for (from_next, seq) in candidates {
            if !single {
                body.copy_from_slice(&self.scratch);
            }
            let Some(keys) = (if from_next { d.next.as_ref() } else { d.keys.as_ref() }) else { continue };
            if let Opened::Plain { content_type, len } = keys.open_at(seq, header, body) {
                found = Some((from_next, seq, content_type, len));
                break;
            }
        }
        if !single {
            self.scratch = Vec::new(); // probing is rare: hold no copy between records
        }
        let (from_next, seq, content_type, len) = found?;
        if from_next {
            d.keys = d.next.take();
        }
        if let Some(k) = d.keys.as_mut() {
            k.seq = seq + 1;
        }
        d.seq_unknown = false;
        d.probe_failures = 0;
        Some((content_type, len))
    }

    fn apply_switch(&mut self, side: Side, up: &mut dyn Up) {
        let d = &mut self.sides[idx(side)];
        match std::mem::take(&mut d.switch) {
            Switch::None => {}
            Switch::ToApplication => {
                if let Some(next) = d.next.take() {
                    d.keys = Some(next);
                }
            }
            Switch::NextGeneration => {
                let next = d.keys.as_ref().and_then(|k| k.next_generation().ok());
                if let Some(k) = next {
                    let generation = k.generation;
                    d.keys = Some(k);
                    self.event(side, TlsEvent::KeyUpdate { generation }, up);
                }
            }
        }
    }

    fn handshake_bytes(&mut self, side: Side, bytes: &[u8], up: &mut dyn Up) {
        let i = idx(side);
        let mut hs = std::mem::take(&mut self.sides[i].hs);
        let mut messages: Vec<(u8, u32, Option<Vec<u8>>)> = Vec::new();
        hs.feed(bytes, &mut |m| {
            // Only hellos carry a body worth copying; Finished and KeyUpdate bodies are tiny.
            messages.push((m.msg_type, m.len, m.body.map(<[u8]>::to_vec)));
        });
        self.sides[i].hs = hs;
        for (msg_type, len, body) in messages {
            self.on_message(side, msg_type, len, body.as_deref(), up);
        }
    }

    fn on_message(&mut self, side: Side, msg_type: u8, len: u32, body: Option<&[u8]>, up: &mut dyn Up) {
        use handshake::*;
        let tls13 = self.suite.is_some_and(|s| s.tls13);
        match (side, msg_type) {
            (Side::Client, CLIENT_HELLO) => {
                let Some(body) = body else {
                    return self.event(side, TlsEvent::Error(TlsError::BadHello(HelloError::TooLong(len))), up);
                };
                match parse_client_hello(body) {
                    Ok(ch) => {
                        self.client_random = Some(ch.random);
                        self.client_session_id = ch.session_id.clone();
                        let resumption_offered = ch.psk || !ch.session_id.is_empty() && !ch.versions.contains(&TLS13);
                        let e = TlsEvent::ClientHello {
                            sni: ch.sni,
                            alpn: ch.alpn,
                            versions: ch.versions,
                            resumption_offered,
                        };
                        self.event(side, e, up);
                    }
                    Err(e) => self.event(side, TlsEvent::Error(TlsError::BadHello(e)), up),
                }
            }
            (Side::Broker, SERVER_HELLO) => {
                let Some(body) = body else {
                    return self.event(side, TlsEvent::Error(TlsError::BadHello(HelloError::TooLong(len))), up);
                };
                match parse_server_hello(body) {
                    // HelloRetryRequest: the real ServerHello follows, after the client's second
                    // ClientHello (and its compatibility ChangeCipherSpec, which starts nothing).
                    Ok(sh) if sh.retry => self.retry_version = Some(sh.version),
                    Ok(sh) => {
                        let resumed = if sh.version == TLS13 {
                            sh.psk
                        } else {
                            !sh.session_id.is_empty() && sh.session_id == self.client_session_id
                        };
                        let e = TlsEvent::ServerHello {
                            version: sh.version,
                            suite: sh.suite,
                            alpn: sh.alpn.clone(),
                            resumed,
                        };
                        self.event(side, e, up);
                        if sh.version == TLS13 {
                            // Everything after the ServerHello is protected, both ways.
                            self.sides[0].protected = true;
                            self.sides[1].protected = true;
                        }
                        self.server = Some(sh);
                        self.install_keys(side, resumed, up);
                    }
                    Err(e) => self.event(side, TlsEvent::Error(TlsError::BadHello(e)), up),
                }
            }
            (_, FINISHED) if tls13 => self.sides[idx(side)].switch = Switch::ToApplication,
            (_, KEY_UPDATE) if tls13 => self.sides[idx(side)].switch = Switch::NextGeneration,
            _ => {}
        }
    }

    /// A session that found no key log line: looks again if the key log has new lines. On
    /// success both sides decrypt from here on, probing sequence numbers. True if keys are now
    /// installed for `side`.
    fn retry_late_keys(&mut self, side: Side, up: &mut dyn Up) -> bool {
        let (Some(missed), Some(log)) = (self.missed_at, &self.keylog) else { return false };
        let d = &mut self.sides[idx(side)];
        if log.generation() == missed && d.catch_ups < CATCH_UP_LIMIT {
            d.catch_ups += 1;
            log.catch_up();
        }
        if log.generation() == missed {
            return false;
        }
        let resumed = self.encrypted == Some(EncryptedReason::ResumptionWithoutKeys);
        self.install_keys(side, resumed, up);
        if self.missed_at.is_some() {
            return false;
        }
        let tls13 = self.suite.is_some_and(|s| s.tls13);
        for d in &mut self.sides {
            if !tls13 && d.protected {
                // Its ChangeCipherSpec went by already.
                if let Some(next) = d.next.take() {
                    d.keys = Some(next);
                }
            }
            d.seq_unknown = true;
        }
        let d = &self.sides[idx(side)];
        d.keys.is_some() || d.next.is_some()
    }

    /// After the ServerHello: find the session's secrets and derive both sides' keys.
    fn install_keys(&mut self, side: Side, resumed: bool, up: &mut dyn Up) {
        let Some(sh) = &self.server else { return };
        let (version, suite_id, server_random) = (sh.version, sh.suite, sh.random);
        if version != TLS12 && version != TLS13 {
            return self.set_encrypted(side, EncryptedReason::UnsupportedVersion(version), up);
        }
        let Some(suite) = Suite::from_id(suite_id).filter(|s| s.tls13 == (version == TLS13)) else {
            return self.set_encrypted(side, EncryptedReason::UnsupportedSuite(suite_id), up);
        };
        self.suite = Some(suite);
        let Some(log) = &self.keylog else { return self.set_encrypted(side, EncryptedReason::NoKeyLog, up) };
        let Some(client_random) = self.client_random else {
            return self.set_encrypted(side, EncryptedReason::HandshakeNotSeen, up);
        };
        let generation = log.generation();
        let Some(secrets) = log.lookup(&client_random) else {
            self.missed_at = Some(generation);
            let reason = if resumed { EncryptedReason::ResumptionWithoutKeys } else { EncryptedReason::NoKeyLogLine };
            return self.set_encrypted(side, reason, up);
        };
        self.missed_at = None;
        let ok = if suite.tls13 {
            let make = |s: &Option<Secret>| s.as_ref().and_then(|s| RecordKeys::tls13(suite, s).ok());
            let c = &mut self.sides[0];
            c.keys = make(&secrets.client_handshake);
            c.next = make(&secrets.client_traffic);
            let srv = &mut self.sides[1];
            srv.keys = make(&secrets.server_handshake);
            srv.next = make(&secrets.server_traffic);
            // The traffic secrets carry the MQTT; a client writes CLIENT_TRAFFIC_SECRET_0 last,
            // after its Finished may be on the wire: a followed key log can have read the
            // others only. Handshake secrets alone are not enough (retried on new lines).
            self.sides.iter().all(|d| d.next.is_some())
        } else {
            match secrets.master.as_ref().map(|m| RecordKeys::tls12(suite, m, &client_random, &server_random)) {
                Some(Ok((c, s))) => {
                    // Protection starts at each side's ChangeCipherSpec.
                    self.sides[0].next = Some(c);
                    self.sides[1].next = Some(s);
                    true
                }
                _ => false,
            }
        };
        if !ok {
            for d in &mut self.sides {
                d.keys = None;
                d.next = None;
            }
            self.missed_at = Some(generation); // the missing lines may come (`live`)
            let reason = if secrets == SessionKeys::default() {
                EncryptedReason::NoKeyLogLine
            } else {
                EncryptedReason::IncompleteKeyLogLine
            };
            return self.set_encrypted(side, reason, up);
        }
        self.encrypted = None;
        self.event(side, TlsEvent::Decrypting { version, suite: suite_id }, up);
    }
}

impl Layer for TlsLayer {
    fn feed(&mut self, side: Side, chunk: Chunk<'_>, up: &mut dyn Up) {
        let i = idx(side);
        let mut reader = std::mem::take(&mut self.sides[i].reader);
        reader.feed(chunk, &mut |framed| self.on_framed(side, framed, up));
        self.sides[i].reader = reader;
    }

    fn buffered(&self) -> usize {
        self.sides.iter().map(|d| d.reader.buffered() + d.hs.buffered()).sum::<usize>() + self.scratch.capacity()
    }
}

#[cfg(test)]
mod tests;
