//! Transport detection above TLS, and the mid-stream WebSocket test.
//!
//! Contract: [`Inner`] is the layer above TLS: on the first plaintext byte from either side it
//! decides between MQTT (bytes pass through) and WebSocket (`G`, `H`: an HTTP upgrade inside
//! TLS, wss), reporting [`Transport::WebSocketTls`] in the second case. [`ws_frames_mid_stream`]
//! says whether a connection joined mid-stream carries WebSocket frames rather than MQTT.

use super::websocket::{self, WsLayer};
use super::{Chunk, Layer, LayerEvent, Transport, Up, pass};
use crate::flow::Side;

/// The layer above TLS: MQTT, or WebSocket once the plaintext says so.
#[derive(Default)]
pub struct Inner {
    decided: bool,
    ws: Option<WsLayer>,
}

impl Inner {
    pub fn new() -> Self {
        Inner::default()
    }
}

impl Layer for Inner {
    fn feed(&mut self, side: Side, chunk: Chunk<'_>, up: &mut dyn Up) {
        if !self.decided
            && let Chunk::Data([first, ..]) = chunk
        {
            self.decided = true;
            if matches!(first, b'G' | b'H') {
                self.ws = Some(WsLayer::new());
                up.event(side, LayerEvent::Transport(Transport::WebSocketTls));
            }
        }
        match &mut self.ws {
            Some(ws) => ws.feed(side, chunk, up),
            None => pass(side, chunk, up),
        }
    }

    fn buffered(&self) -> usize {
        self.ws.as_ref().map_or(0, |w| w.buffered())
    }
}

/// True when `data`, the first bytes seen of `side`'s stream of a connection joined mid-stream,
/// are WebSocket frames rather than MQTT. A broker's MQTT never starts with 0x0_ or 0x8_
/// (SUBSCRIBE only flows from clients), WebSocket frames from a broker always do; a client's
/// frames are masked, so their second byte has its high bit set. Either way the frame header
/// must be plausible, with the next one when it is there.
pub fn ws_frames_mid_stream(data: &[u8], side: Side) -> bool {
    let from_client = side == Side::Client;
    let shape = match (side, data) {
        (Side::Broker, [b, ..]) => b >> 4 == 0 || b >> 4 == 8,
        (Side::Client, [_, len, ..]) => len & 0x80 != 0,
        _ => false,
    };
    shape && websocket::sniff_frame(data, from_client) == websocket::Sniff::Yes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_mqtt_is_never_taken_for_websocket_frames() {
        // CONNACK, PUBLISH, PINGRESP from a broker.
        for mqtt in [&[0x20, 0x02, 0x00, 0x00][..], &[0x30, 0x05, 0x00, 0x01, b't', b'x', b'y'], &[0xd0, 0x00]] {
            assert!(!ws_frames_mid_stream(mqtt, Side::Broker), "{mqtt:x?}");
        }
        // A binary frame of 2 payload bytes (a PINGRESP) followed by another.
        assert!(ws_frames_mid_stream(&[0x82, 0x02, 0xd0, 0x00, 0x82, 0x02, 0xd0, 0x00], Side::Broker));
        // A masked client frame.
        assert!(ws_frames_mid_stream(&[0x82, 0x82, 1, 2, 3, 4, 0xc1, 0x02], Side::Client));
        assert!(!ws_frames_mid_stream(&[0xc0, 0x00], Side::Client), "a PINGREQ");
    }
}
