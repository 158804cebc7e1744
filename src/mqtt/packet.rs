//! Bodies of the packets the keepalive analysis needs: CONNECT, CONNACK, DISCONNECT.
//!
//! Contract: each decoder reads only the front of a body (a bounded prefix is enough) and returns
//! what the analysis uses. CONNECT is read up to the client id; the will, username and password
//! that follow are never read, so the password cannot leak. Every other packet type is known by
//! its fixed header alone.

named! {
    /// MQTT protocol versions, named as people write them.
    pub enum Protocol {
        V3_1 => "3.1",
        V3_1_1 => "3.1.1",
        V5 => "5.0",
    }
}

/// What the analysis keeps of a CONNECT.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Connect {
    pub protocol: Protocol,
    pub keepalive: u16,
    pub clean_start: bool,
    pub will: bool,
    pub username: bool,
    pub password: bool,
    /// `None` when the body prefix we kept ended before it.
    pub client_id: Option<String>,
}

/// What the analysis keeps of a CONNACK.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConnAck {
    pub session_present: bool,
    /// Return code (3.1/3.1.1) or reason code (5.0); 0 is success.
    pub code: u8,
    /// MQTT 5 Server Keep Alive property.
    pub server_keepalive: Option<u16>,
}

/// The meaning of a CONNACK return code (MQTT 3.1/3.1.1: 1-5) or reason code (MQTT 5: 0x80 and
/// above), for people.
pub fn connack_code_name(code: u8) -> &'static str {
    match code {
        0 => "accepted",
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorised",
        0x80 => "unspecified error",
        0x81 => "malformed packet",
        0x82 => "protocol error",
        0x83 => "implementation specific error",
        0x84 => "unsupported protocol version",
        0x85 => "client identifier not valid",
        0x86 => "bad user name or password",
        0x87 => "not authorized",
        0x88 => "server unavailable",
        0x89 => "server busy",
        0x8a => "banned",
        0x8c => "bad authentication method",
        0x90 => "topic name invalid",
        0x95 => "packet too large",
        0x97 => "quota exceeded",
        0x99 => "payload format invalid",
        0x9a => "retain not supported",
        0x9b => "QoS not supported",
        0x9c => "use another server",
        0x9d => "server moved",
        0x9f => "connection rate exceeded",
        _ => "unknown code",
    }
}

/// What the analysis keeps of a DISCONNECT.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Disconnect {
    /// MQTT 5 reason code; `None` when absent (always in 3.1.1).
    pub reason_code: Option<u8>,
}

/// Why a body could not be decoded.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum BodyError {
    #[error("CONNECT with unknown protocol name")]
    ProtocolName,
    #[error("CONNECT with protocol level {0} for its protocol name")]
    ProtocolLevel(u8),
    #[error("CONNECT with the reserved flag set")]
    ConnectFlags,
    #[error("{0} body shorter than its fields")]
    Short(&'static str),
    #[error("malformed MQTT 5 properties")]
    Properties,
    #[error("{0} with a body where none is allowed")]
    UnexpectedBody(&'static str),
}

/// A big-endian cursor over a body prefix.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn varint(&mut self) -> Option<u32> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

/// Decodes the front of a CONNECT body. `prefix` may be shorter than the body.
pub fn decode_connect(prefix: &[u8]) -> Result<Connect, BodyError> {
    let short = BodyError::Short("CONNECT");
    let mut r = Reader { buf: prefix };
    let name = r.string().ok_or(short)?;
    let level = r.u8().ok_or(short)?;
    // The high bit is mosquitto's bridge marker, not part of the level.
    let protocol = match (name, level & 0x7f) {
        (b"MQIsdp", 3) => Protocol::V3_1,
        (b"MQTT", 4) => Protocol::V3_1_1,
        (b"MQTT", 5) => Protocol::V5,
        (b"MQIsdp" | b"MQTT", other) => return Err(BodyError::ProtocolLevel(other)),
        _ => return Err(BodyError::ProtocolName),
    };
    let flags = r.u8().ok_or(short)?;
    if flags & 0x01 != 0 {
        return Err(BodyError::ConnectFlags);
    }
    let keepalive = r.u16().ok_or(short)?;
    let client_id = (|| {
        if protocol == Protocol::V5 {
            let props = r.varint()?;
            r.take(props as usize)?;
        }
        r.string().map(|id| String::from_utf8_lossy(id).into_owned())
    })();
    Ok(Connect {
        protocol,
        keepalive,
        clean_start: flags & 0x02 != 0,
        will: flags & 0x04 != 0,
        username: flags & 0x80 != 0,
        password: flags & 0x40 != 0,
        client_id,
    })
}

/// Decodes a CONNACK body (both 3.1.1's two bytes and 5.0's properties).
pub fn decode_connack(body: &[u8]) -> Result<ConnAck, BodyError> {
    let mut r = Reader { buf: body };
    let ack_flags = r.u8().ok_or(BodyError::Short("CONNACK"))?;
    let code = r.u8().ok_or(BodyError::Short("CONNACK"))?;
    let server_keepalive = if r.buf.is_empty() { None } else { find_two_byte_property(&mut r, SERVER_KEEP_ALIVE)? };
    Ok(ConnAck { session_present: ack_flags & 0x01 != 0, code, server_keepalive })
}

/// Decodes a DISCONNECT body: empty, or an MQTT 5 reason code (and properties, unread).
pub fn decode_disconnect(body: &[u8]) -> Disconnect {
    Disconnect { reason_code: body.first().copied() }
}

const SERVER_KEEP_ALIVE: u8 = 0x13;

/// Walks an MQTT 5 property list (length first) for a two-byte property.
fn find_two_byte_property(r: &mut Reader<'_>, wanted: u8) -> Result<Option<u16>, BodyError> {
    let len = r.varint().ok_or(BodyError::Properties)?;
    let mut props = Reader { buf: r.take(len as usize).ok_or(BodyError::Properties)? };
    let mut found = None;
    while !props.buf.is_empty() {
        let id = props.u8().ok_or(BodyError::Properties)?;
        let ok = match id {
            // Two-byte integers.
            0x13 | 0x21 | 0x22 | 0x23 => {
                let v = props.u16();
                if id == wanted {
                    found = v;
                }
                v.is_some()
            }
            // Bytes.
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2a => props.u8().is_some(),
            // Four-byte integers.
            0x02 | 0x11 | 0x18 | 0x27 => props.take(4).is_some(),
            // Variable byte integer.
            0x0b => props.varint().is_some(),
            // UTF-8 strings and binary data.
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1a | 0x1c | 0x1f => props.string().is_some(),
            // String pair.
            0x26 => props.string().is_some() && props.string().is_some(),
            _ => false,
        };
        if !ok {
            return Err(BodyError::Properties);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_3_1_1() {
        let body = [
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x04, // level 4 = 3.1.1
            0xc6, // username, password, will, clean session
            0x00, 0x0a, // keep alive = 10 s
            0x00, 0x03, b'c', b'i', b'd', // client id
            0x00, 0x01, b't', 0x00, 0x01, b'm', // will topic + message
            0x00, 0x01, b'u', 0x00, 0x06, b's', b'e', b'c', b'r', b'e', b't', // user, password
        ];
        let c = decode_connect(&body).unwrap();
        assert_eq!(c.protocol, Protocol::V3_1_1);
        assert_eq!(c.keepalive, 10);
        assert!(c.clean_start && c.will && c.username && c.password);
        assert_eq!(c.client_id.as_deref(), Some("cid"));
    }

    #[test]
    fn connect_3_1_and_bridge_bit() {
        let body = [
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', // protocol name
            0x83, // level 3, bridge bit
            0x02, // clean session
            0x00, 0x3c, // keep alive = 60 s
            0x00, 0x01, b'x', // client id
        ];
        let c = decode_connect(&body).unwrap();
        assert_eq!((c.protocol, c.keepalive, c.will), (Protocol::V3_1, 60, false));
    }

    #[test]
    fn connect_5_skips_properties_to_reach_the_client_id() {
        let body = [
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // MQTT 5
            0x02, // clean start
            0x00, 0x05, // keep alive = 5 s
            0x05, 0x11, 0x00, 0x00, 0x00, 0x3c, // properties: session expiry = 60
            0x00, 0x02, b'i', b'd', // client id
        ];
        let c = decode_connect(&body).unwrap();
        assert_eq!((c.protocol, c.keepalive), (Protocol::V5, 5));
        assert_eq!(c.client_id.as_deref(), Some("id"));
    }

    #[test]
    fn connect_prefix_cut_before_client_id_keeps_the_keepalive() {
        let body = [0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x0a, 0x00, 0x09, b'a'];
        let c = decode_connect(&body).unwrap();
        assert_eq!((c.keepalive, c.client_id), (10, None));
    }

    #[test]
    fn bogus_connects_are_errors() {
        assert_eq!(decode_connect(b"\x00\x04HTTP\x04\x02\x00\x0a"), Err(BodyError::ProtocolName));
        assert_eq!(decode_connect(b"\x00\x04MQTT\x07\x02\x00\x0a"), Err(BodyError::ProtocolLevel(7)));
        assert_eq!(decode_connect(b"\x00\x04MQTT\x04\x03\x00\x0a"), Err(BodyError::ConnectFlags));
        assert_eq!(decode_connect(b"\x00\x04MQ"), Err(BodyError::Short("CONNECT")));
    }

    #[test]
    fn connack_3_1_1_and_5_with_server_keep_alive() {
        assert_eq!(
            decode_connack(&[0x01, 0x00]).unwrap(),
            ConnAck { session_present: true, code: 0, server_keepalive: None }
        );
        let v5 = [
            0x00, 0x00, // no session, success
            0x08, // properties length
            0x22, 0x00, 0x0a, // topic alias maximum = 10
            0x13, 0x00, 0x0f, // server keep alive = 15 s
            0x24, 0x01, // maximum QoS = 1
        ];
        assert_eq!(decode_connack(&v5).unwrap().server_keepalive, Some(15));
        assert_eq!(decode_connack(&[0x00, 0x00, 0x00]).unwrap().server_keepalive, None);
        assert_eq!(decode_connack(&[0x00, 0x00, 0x03, 0x7f, 0x00, 0x00]), Err(BodyError::Properties));
        assert_eq!(decode_connack(&[0x00]), Err(BodyError::Short("CONNACK")));
    }

    #[test]
    fn disconnect_reason_code() {
        assert_eq!(decode_disconnect(&[]).reason_code, None);
        assert_eq!(decode_disconnect(&[0x8d]).reason_code, Some(0x8d)); // keep alive timeout
    }
}
