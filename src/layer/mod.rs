//! The byte path inside a connection: what lies between TCP reassembly and the MQTT stream
//! decoder.
//!
//! Contract: a connection's [`Stack`] is fed each side's reassembled TCP stream in order (data
//! and gaps, as [`Chunk`]s) and hands the MQTT bytes of each side to an [`Up`], in order, with
//! gaps, plus what the transport layers saw of their own framing ([`LayerEvent`]). A [`Layer`]
//! is one such transformation (TLS records, WebSocket frames); layers stack, outermost first.
//! Plain MQTT over TCP is the empty stack: bytes pass through untouched, with no dispatch and
//! no copy. Layers never read a clock and never see the session rules: the connection stamps
//! what they hand up with the packet time.
//!
//! Transport detection ([`Stack::Detect`], [`detect`]): on a connection seen from its first
//! byte, the first byte of the first data decides: a TLS handshake record (0x16) -> [`tls`],
//! an HTTP request or answer (`G`, `H`) -> [`websocket`], anything else -> plain MQTT. Inside
//! TLS the same test on the first plaintext byte decides between MQTT and WebSocket (wss). On a
//! connection joined mid-stream, a TLS record header or a WebSocket frame header (checked
//! with the next header when it is there) decides, else plain MQTT. The decision is reported
//! once as [`LayerEvent::Transport`].

pub mod detect;
pub mod tls;
pub mod websocket;

use std::sync::Arc;

use crate::flow::Side;
pub use crate::flow::reassembly::Chunk;

/// Length of a gap whose size in the layer above is not known (a TCP hole inside a TLS record
/// loses the rest of that record's plaintext, however long it was).
pub const UNKNOWN_LEN: u64 = u64::MAX;

/// Where a layer hands what it decoded.
pub trait Up {
    /// The next in-order bytes of the layer above, from `side`.
    fn data(&mut self, side: Side, bytes: &[u8]);
    /// `len` bytes of the layer above from `side` are lost ([`UNKNOWN_LEN`]: how many is not
    /// known); the layer above loses its framing unless the gap falls inside a length it knows.
    fn gap(&mut self, side: Side, len: u64);
    /// Something the layer saw of its own framing, from `side`.
    fn event(&mut self, side: Side, event: LayerEvent);
}

/// One transformation of a connection's two byte streams.
pub trait Layer {
    /// The next in-order chunk of `side`'s stream as this layer receives it.
    fn feed(&mut self, side: Side, chunk: Chunk<'_>, up: &mut dyn Up);
    /// Bytes this layer holds (partial records or frames), for the tracker's memory cap.
    fn buffered(&self) -> usize;
}

named! {
    /// What carries a connection's MQTT.
    pub enum Transport {
        /// MQTT directly over TCP.
        Tcp => "tcp",
        Tls => "tls",
        WebSocket => "websocket",
        /// WebSocket inside TLS (wss).
        WebSocketTls => "websocket+tls",
        /// Not decided (no data seen).
        Unknown => "unknown",
    }
}

impl Transport {
    /// True when the connection runs over TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::WebSocketTls)
    }
}

/// What the layers need besides the bytes.
#[derive(Clone, Default)]
pub struct LayerConfig {
    /// TLS secrets (`--tls-keylog`), shared by every connection.
    pub keylog: Option<Arc<tls::KeyLog>>,
}

/// What a transport layer reports of its own framing.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerEvent {
    /// The transport was decided (see the module doc); from the side whose bytes decided it.
    Transport(Transport),
    /// What the TLS layer saw: hellos, keys or why there are none, opaque records, alerts.
    Tls(tls::TlsEvent),
    /// From the WebSocket layer ([`websocket::WsLayer`]).
    WebSocket(websocket::WsEvent),
}

/// A connection's layers: what its bytes go through before the MQTT decoder.
#[derive(Default)]
pub enum Stack {
    /// Not decided yet: the first data decides (see the module doc); seen from the first byte.
    #[default]
    Detect,
    /// Not decided yet, on a connection joined mid-stream.
    DetectMidStream,
    /// MQTT directly over TCP.
    Plain,
    /// Layers, outermost first.
    Layers(Vec<Box<dyn Layer + Send>>),
}

impl Stack {
    /// Feeds one chunk of `side`'s TCP stream through the layers to `up` (statically
    /// dispatched for plain MQTT, the hot path), deciding the layers first when undecided.
    #[inline]
    pub fn feed<U: Up>(&mut self, side: Side, chunk: Chunk<'_>, up: &mut U, cfg: &LayerConfig) {
        match (&*self, chunk) {
            (Stack::Detect | Stack::DetectMidStream, Chunk::Data([first, ..])) => {
                self.decide(side, *first, chunk, up, cfg);
            }
            // The first bytes were lost: what comes next is judged as on a connection joined
            // mid-stream (a TLS record, WebSocket frames), not as a stream's first bytes.
            (Stack::Detect, Chunk::Gap(_)) => *self = Stack::DetectMidStream,
            _ => {}
        }
        match self {
            Stack::Plain | Stack::Detect | Stack::DetectMidStream => match chunk {
                Chunk::Data(d) => up.data(side, d),
                Chunk::Gap(n) => up.gap(side, n),
            },
            Stack::Layers(layers) => feed_from(layers, side, chunk, up),
        }
    }

    /// Chooses the layers from the first data (`first` is its first byte) and reports it.
    #[cold]
    fn decide<U: Up>(&mut self, side: Side, first: u8, chunk: Chunk<'_>, up: &mut U, cfg: &LayerConfig) {
        let Chunk::Data(data) = chunk else { return };
        let tls =
            || Stack::Layers(vec![Box::new(tls::TlsLayer::new(cfg.keylog.clone())), Box::new(detect::Inner::new())]);
        let (stack, transport) = match self {
            Stack::Detect => match first {
                0x16 => (tls(), Transport::Tls),
                b'G' | b'H' => (Stack::Layers(vec![Box::new(websocket::WsLayer::new())]), Transport::WebSocket),
                _ => (Stack::Plain, Transport::Tcp),
            },
            _ => {
                if tls::sniff_record(data) == tls::Sniff::Yes {
                    (tls(), Transport::Tls)
                } else if detect::ws_frames_mid_stream(data, side) {
                    (Stack::Layers(vec![Box::new(websocket::WsLayer::mid_stream())]), Transport::WebSocket)
                } else {
                    (Stack::Plain, Transport::Tcp)
                }
            }
        };
        *self = stack;
        up.event(side, LayerEvent::Transport(transport));
    }

    /// True when no layer holds state: MQTT directly over TCP, or not decided yet.
    pub fn has_no_layers(&self) -> bool {
        !matches!(self, Stack::Layers(_))
    }

    /// Bytes held by the layers.
    pub fn buffered(&self) -> usize {
        match self {
            Stack::Plain | Stack::Detect | Stack::DetectMidStream => 0,
            Stack::Layers(layers) => layers.iter().map(|l| l.buffered()).sum(),
        }
    }
}

pub(crate) fn pass(side: Side, chunk: Chunk<'_>, up: &mut dyn Up) {
    match chunk {
        Chunk::Data(d) => up.data(side, d),
        Chunk::Gap(n) => up.gap(side, n),
    }
}

/// Feeds `layers[0]`, whose output feeds `layers[1]`, and so on; the last one's output goes to
/// `up`.
fn feed_from(layers: &mut [Box<dyn Layer + Send>], side: Side, chunk: Chunk<'_>, up: &mut dyn Up) {
    let Some((first, rest)) = layers.split_first_mut() else { return pass(side, chunk, up) };
    let mut next = Next { rest, up };
    first.feed(side, chunk, &mut next);
}

/// The glue between one layer and the rest of the stack.
struct Next<'a, 'b> {
    rest: &'a mut [Box<dyn Layer + Send>],
    up: &'b mut dyn Up,
}

impl Up for Next<'_, '_> {
    fn data(&mut self, side: Side, bytes: &[u8]) {
        feed_from(self.rest, side, Chunk::Data(bytes), self.up);
    }
    fn gap(&mut self, side: Side, len: u64) {
        feed_from(self.rest, side, Chunk::Gap(len), self.up);
    }
    fn event(&mut self, side: Side, event: LayerEvent) {
        self.up.event(side, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer that drops every other byte of the client's stream and doubles gaps.
    struct Halve;
    impl Layer for Halve {
        fn feed(&mut self, side: Side, chunk: Chunk<'_>, up: &mut dyn Up) {
            match chunk {
                Chunk::Data(d) => up.data(side, &d.iter().step_by(2).copied().collect::<Vec<_>>()),
                Chunk::Gap(n) => up.gap(side, n.saturating_mul(2)),
            }
        }
        fn buffered(&self) -> usize {
            0
        }
    }

    #[derive(Default)]
    struct Collect(Vec<(Side, Vec<u8>)>, Vec<u64>);
    impl Up for Collect {
        fn data(&mut self, side: Side, bytes: &[u8]) {
            self.0.push((side, bytes.to_vec()));
        }
        fn gap(&mut self, _: Side, len: u64) {
            self.1.push(len);
        }
        fn event(&mut self, _: Side, _: LayerEvent) {}
    }

    #[derive(Default)]
    struct Transports(Vec<Transport>);
    impl Up for Transports {
        fn data(&mut self, _: Side, _: &[u8]) {}
        fn gap(&mut self, _: Side, _: u64) {}
        fn event(&mut self, _: Side, event: LayerEvent) {
            if let LayerEvent::Transport(t) = event {
                self.0.push(t);
            }
        }
    }

    #[test]
    fn the_first_bytes_decide_the_transport() {
        let cfg = LayerConfig::default();
        let decide = |chunks: &[Chunk<'_>]| {
            let (mut stack, mut up) = (Stack::Detect, Transports::default());
            for c in chunks {
                stack.feed(Side::Client, *c, &mut up, &cfg);
            }
            up.0
        };
        assert_eq!(decide(&[Chunk::Data(&[0x10, 0x0c])]), [Transport::Tcp]);
        assert_eq!(decide(&[Chunk::Data(&[0x16, 0x03, 0x01, 0x00, 0x05])]), [Transport::Tls]);
        assert_eq!(decide(&[Chunk::Data(b"GET /mqtt HTTP/1.1\r\n")]), [Transport::WebSocket]);
        // The ClientHello lost to the capture: the next record is application data, still TLS.
        let record = [0x17, 0x03, 0x03, 0x00, 0x02, 0xaa, 0xbb, 0x17, 0x03, 0x03, 0x00, 0x01, 0xcc];
        assert_eq!(decide(&[Chunk::Gap(300), Chunk::Data(&record)]), [Transport::Tls]);
        assert_eq!(decide(&[Chunk::Gap(300), Chunk::Data(&[0xc0, 0x00])]), [Transport::Tcp]);
    }

    #[test]
    fn layers_apply_outermost_first_and_plain_passes_through() {
        let mut up = Collect::default();
        let cfg = LayerConfig::default();
        Stack::Plain.feed(Side::Client, Chunk::Data(b"abcd"), &mut up, &cfg);
        let mut two = Stack::Layers(vec![Box::new(Halve), Box::new(Halve)]);
        two.feed(Side::Broker, Chunk::Data(b"abcdefgh"), &mut up, &cfg);
        two.feed(Side::Broker, Chunk::Gap(3), &mut up, &cfg);
        assert_eq!(up.0, [(Side::Client, b"abcd".to_vec()), (Side::Broker, b"ae".to_vec())]);
        assert_eq!(up.1, [12]);
    }
}
