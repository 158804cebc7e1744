//! The MQTT fixed header: packet type, flags and remaining length (MQTT 3.1.1 §2.2, 5.0 §2.1).
//!
//! Contract: [`check`] reads a fixed header from the front of a buffer: `Ok(None)` when more
//! bytes are needed, an error when the bytes cannot be a fixed header (bad remaining-length
//! encoding, reserved type 0, flags the spec forbids). It never reads the body.

use serde::Serialize;
use std::fmt;

/// MQTT control packet types.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PacketType {
    Reserved = 0,
    Connect,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    PingReq,
    PingResp,
    Disconnect,
    /// AUTH in MQTT 5; reserved in 3.1.1.
    Auth,
}

impl PacketType {
    /// All types in wire order, indexable by the type nibble.
    pub const ALL: [PacketType; 16] = [
        PacketType::Reserved,
        PacketType::Connect,
        PacketType::ConnAck,
        PacketType::Publish,
        PacketType::PubAck,
        PacketType::PubRec,
        PacketType::PubRel,
        PacketType::PubComp,
        PacketType::Subscribe,
        PacketType::SubAck,
        PacketType::Unsubscribe,
        PacketType::UnsubAck,
        PacketType::PingReq,
        PacketType::PingResp,
        PacketType::Disconnect,
        PacketType::Auth,
    ];

    /// The type for the high nibble of a fixed header's first byte.
    pub fn from_nibble(n: u8) -> PacketType {
        PacketType::ALL[usize::from(n & 0x0f)]
    }

    /// Lower-case name, as tshark and the reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            PacketType::Reserved => "reserved",
            PacketType::Connect => "connect",
            PacketType::ConnAck => "connack",
            PacketType::Publish => "publish",
            PacketType::PubAck => "puback",
            PacketType::PubRec => "pubrec",
            PacketType::PubRel => "pubrel",
            PacketType::PubComp => "pubcomp",
            PacketType::Subscribe => "subscribe",
            PacketType::SubAck => "suback",
            PacketType::Unsubscribe => "unsubscribe",
            PacketType::UnsubAck => "unsuback",
            PacketType::PingReq => "pingreq",
            PacketType::PingResp => "pingresp",
            PacketType::Disconnect => "disconnect",
            PacketType::Auth => "auth",
        }
    }

    /// Flags the spec requires for this type, or `None` when they vary (PUBLISH).
    fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest remaining length the 4-byte encoding can express (256 MiB - 1).
pub const MAX_REMAINING_LENGTH: u32 = 268_435_455;

/// A decoded fixed header.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FixedHeader {
    pub packet_type: PacketType,
    pub flags: u8,
    /// Bytes after the fixed header.
    pub remaining: u32,
    /// Length of the fixed header itself (2..=5).
    pub header_len: u8,
}

impl FixedHeader {
    /// Length of the whole packet on the wire.
    pub fn packet_len(&self) -> u64 {
        u64::from(self.header_len) + u64::from(self.remaining)
    }
}

/// Why bytes are not a fixed header.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("remaining length longer than 4 bytes")]
    RemainingLength,
    #[error("reserved packet type 0")]
    ReservedType,
    #[error("{packet_type} with forbidden flags {flags:#06b}")]
    Flags { packet_type: PacketType, flags: u8 },
}

/// Appends `n` in the remaining-length encoding (7 bits a byte, low first, high bit = more),
/// for the code that writes MQTT (the probe's client, synthetic captures).
pub fn encode_remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return;
        }
    }
}

/// Reads the fixed header at the front of `buf`.
pub fn check(buf: &[u8]) -> Result<Option<FixedHeader>, HeaderError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let packet_type = PacketType::from_nibble(first >> 4);
    let flags = first & 0x0f;
    if packet_type == PacketType::Reserved {
        return Err(HeaderError::ReservedType);
    }
    let flags_ok = match packet_type.required_flags() {
        Some(required) => flags == required,
        None => flags & 0b0110 != 0b0110, // PUBLISH QoS 3 is forbidden
    };
    if !flags_ok {
        return Err(HeaderError::Flags { packet_type, flags });
    }
    let mut remaining: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else { return Ok(None) };
        remaining |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some(FixedHeader { packet_type, flags, remaining, header_len: 2 + i as u8 }));
        }
    }
    Err(HeaderError::RemainingLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pingreq_is_two_bytes() {
        let h = check(&[0xc0, 0x00]).unwrap().unwrap();
        assert_eq!(h.packet_type, PacketType::PingReq);
        assert_eq!((h.remaining, h.header_len, h.packet_len()), (0, 2, 2));
    }

    #[test]
    fn remaining_length_encodings() {
        // Examples from MQTT 3.1.1 §2.2.3.
        let cases: [(&[u8], u32); 6] = [
            (&[0x30, 0x00], 0),
            (&[0x30, 0x7f], 127),
            (&[0x30, 0x80, 0x01], 128),
            (&[0x30, 0xff, 0x7f], 16_383),
            (&[0x30, 0x80, 0x80, 0x01], 16_384),
            (&[0x30, 0xff, 0xff, 0xff, 0x7f], MAX_REMAINING_LENGTH),
        ];
        for (bytes, expected) in cases {
            let h = check(bytes).unwrap().unwrap();
            assert_eq!(h.remaining, expected, "{bytes:x?}");
            assert_eq!(usize::from(h.header_len), bytes.len());
        }
    }

    #[test]
    fn encoded_remaining_lengths_read_back() {
        for n in [0, 127, 128, 16_383, 16_384, MAX_REMAINING_LENGTH as usize] {
            let mut bytes = vec![0x30];
            encode_remaining_length(n, &mut bytes);
            assert_eq!(check(&bytes).unwrap().map(|h| h.remaining as usize), Some(n));
        }
    }

    #[test]
    fn incomplete_header_asks_for_more() {
        assert_eq!(check(&[]), Ok(None));
        assert_eq!(check(&[0x30]), Ok(None));
        assert_eq!(check(&[0x30, 0x80]), Ok(None)); // split remaining length
        assert_eq!(check(&[0x30, 0xff, 0xff, 0xff]), Ok(None));
    }

    #[test]
    fn five_byte_remaining_length_is_an_error() {
        assert_eq!(check(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), Err(HeaderError::RemainingLength));
    }

    #[test]
    fn reserved_type_and_bad_flags_are_errors() {
        assert_eq!(check(&[0x00, 0x00]), Err(HeaderError::ReservedType));
        assert!(matches!(check(&[0xc1, 0x00]), Err(HeaderError::Flags { .. })));
        assert!(matches!(check(&[0x80, 0x05]), Err(HeaderError::Flags { .. }))); // SUBSCRIBE needs 0b0010
        assert!(matches!(check(&[0x36, 0x05]), Err(HeaderError::Flags { .. }))); // PUBLISH QoS 3
        assert!(check(&[0x82, 0x05]).unwrap().is_some());
        assert!(check(&[0x3d, 0x05]).unwrap().is_some()); // PUBLISH dup, QoS 2, retain
    }
}
