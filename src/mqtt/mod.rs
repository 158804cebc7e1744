//! MQTT decoding: fixed header ([`header`]), the few bodies we read ([`packet`]), the
//! per-direction stream decoder ([`stream`]) and how it finds framing again ([`resync`]).

pub mod header;
pub mod packet;
pub mod resync;
pub mod stream;

pub use header::{FixedHeader, PacketType};
pub use packet::{ConnAck, Connect, Disconnect, Protocol};
pub use stream::{Body, Malformed, Packet, StreamDecoder, StreamEvent};
