//! MQTT decoding: fixed header ([`header`]), the few bodies we read ([`packet`]), and the
//! per-direction stream decoder with resynchronisation ([`stream`]).

pub mod header;
pub mod packet;
pub mod stream;

pub use header::{FixedHeader, PacketType};
pub use packet::{ConnAck, Connect, Disconnect, Protocol};
pub use stream::{Body, Malformed, Packet, StreamDecoder, StreamEvent};
