//! Handshake messages: framing across records, and the hello facts this tool needs.
//!
//! Contract: [`HandshakeReader`] is fed one side's handshake-protocol bytes (plaintext or
//! decrypted, split across records and segments anyhow) and yields each message's type with its
//! body when the body is one this layer reads (ClientHello, ServerHello, Finished, KeyUpdate:
//! at most [`MAX_KEPT_BODY`] bytes); every other message (certificates, tickets) is skipped by
//! length, never buffered. [`parse_client_hello`] / [`parse_server_hello`] read the randoms,
//! session id, SNI, ALPN, versions (including supported_versions) and suite; a malformed hello is
//! a typed error, never a panic.

/// Handshake message types this layer acts on.
pub const CLIENT_HELLO: u8 = 1;
pub const SERVER_HELLO: u8 = 2;
pub const FINISHED: u8 = 20;
pub const KEY_UPDATE: u8 = 24;

/// The largest body kept for parsing; longer hellos are skipped (and reported malformed).
pub const MAX_KEPT_BODY: usize = 1 << 16;

/// The ServerHello random of a HelloRetryRequest (RFC 8446 §4.1.3).
pub const HRR_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91, 0xC2, 0xA2, 0x11,
    0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// A hello that cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("handshake message truncated in {0}")]
    Truncated(&'static str),
    #[error("handshake message of {0} bytes is longer than the {MAX_KEPT_BODY} bytes read")]
    TooLong(u32),
}

/// What a ClientHello says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    /// server_name (host_name), lossy UTF-8.
    pub sni: Option<String>,
    /// application_layer_protocol_negotiation, offered protocols.
    pub alpn: Vec<String>,
    /// supported_versions, or the legacy version when absent.
    pub versions: Vec<u16>,
    pub suites: Vec<u16>,
    /// A pre_shared_key extension (TLS 1.3 resumption offered).
    pub psk: bool,
}

/// What a ServerHello says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerHello {
    pub random: [u8; 32],
    pub session_id: Vec<u8>,
    /// The negotiated version: supported_versions when present, else the legacy version.
    pub version: u16,
    pub suite: u16,
    /// ALPN selected (TLS 1.2 sends it here; TLS 1.3 in EncryptedExtensions).
    pub alpn: Option<String>,
    /// A pre_shared_key extension: the server accepted TLS 1.3 resumption.
    pub psk: bool,
    /// A HelloRetryRequest, not a real ServerHello.
    pub retry: bool,
}

struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.buf.len() < n {
            return Err(HelloError::Truncated(self.what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    /// A cursor over the next vector with a 2-byte length.
    fn list16(&mut self) -> Result<Cursor<'a>, HelloError> {
        let b = self.vec16()?;
        Ok(self.sub(b))
    }
    /// A cursor over the next vector with a 1-byte length.
    fn list8(&mut self) -> Result<Cursor<'a>, HelloError> {
        let b = self.vec8()?;
        Ok(self.sub(b))
    }
    fn sub(&self, buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, what: self.what }
    }
}

/// Reads a ClientHello body (after the 4-byte handshake header).
pub fn parse_client_hello(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut c = Cursor { buf: body, what: "ClientHello" };
    let legacy = c.u16()?;
    let mut hello = ClientHello { random: c.take(32)?.try_into().unwrap_or([0; 32]), ..Default::default() };
    hello.session_id = c.vec8()?.to_vec();
    let mut suites = c.list16()?;
    while !suites.buf.is_empty() {
        hello.suites.push(suites.u16()?);
    }
    c.vec8()?; // compression methods
    each_extension(&mut c, |ty, mut data| {
        match ty {
            0 => {
                // server_name_list: type 0 = host_name.
                let mut list = data.list16()?;
                while !list.buf.is_empty() {
                    let kind = list.u8()?;
                    let name = list.vec16()?;
                    if kind == 0 && hello.sni.is_none() {
                        hello.sni = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
            16 => hello.alpn = alpn_list(&mut data)?,
            43 => {
                let mut list = data.list8()?;
                while !list.buf.is_empty() {
                    hello.versions.push(list.u16()?);
                }
            }
            41 => hello.psk = true,
            _ => {}
        }
        Ok(())
    })?;
    if hello.versions.is_empty() {
        hello.versions.push(legacy);
    }
    Ok(hello)
}

/// Calls `f` with each extension of a hello (its type and data), when the hello has any.
fn each_extension<'a>(
    c: &mut Cursor<'a>,
    mut f: impl FnMut(u16, Cursor<'a>) -> Result<(), HelloError>,
) -> Result<(), HelloError> {
    if c.buf.is_empty() {
        return Ok(());
    }
    let mut exts = c.list16()?;
    while !exts.buf.is_empty() {
        let ty = exts.u16()?;
        f(ty, exts.list16()?)?;
    }
    Ok(())
}

fn alpn_list(data: &mut Cursor<'_>) -> Result<Vec<String>, HelloError> {
    let mut list = data.list16()?;
    let mut out = Vec::new();
    while !list.buf.is_empty() {
        out.push(String::from_utf8_lossy(list.vec8()?).into_owned());
    }
    Ok(out)
}

/// Reads a ServerHello body (after the 4-byte handshake header).
pub fn parse_server_hello(body: &[u8]) -> Result<ServerHello, HelloError> {
    let mut c = Cursor { buf: body, what: "ServerHello" };
    let legacy = c.u16()?;
    let mut hello = ServerHello { random: c.take(32)?.try_into().unwrap_or([0; 32]), ..Default::default() };
    hello.retry = hello.random == HRR_RANDOM;
    hello.session_id = c.vec8()?.to_vec();
    hello.suite = c.u16()?;
    c.u8()?; // compression method
    hello.version = legacy;
    each_extension(&mut c, |ty, mut data| {
        match ty {
            43 => hello.version = data.u16()?,
            16 => hello.alpn = alpn_list(&mut data)?.into_iter().next(),
            41 => hello.psk = true,
            _ => {}
        }
        Ok(())
    })?;
    Ok(hello)
}

/// A complete handshake message.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub msg_type: u8,
    /// The body, for the types this layer reads (None: skipped by length, or too long).
    pub body: Option<&'a [u8]>,
    /// The declared body length.
    pub len: u32,
}

/// Frames one side's handshake messages; see the module doc.
#[derive(Debug, Default)]
pub struct HandshakeReader {
    header: Vec<u8>,
    /// The current message: (type, declared length, bytes still to come, kept body).
    current: Option<(u8, u32, u32, Option<Vec<u8>>)>,
}

fn kept(msg_type: u8) -> bool {
    matches!(msg_type, CLIENT_HELLO | SERVER_HELLO | FINISHED | KEY_UPDATE)
}

impl HandshakeReader {
    /// Feeds bytes; `out` gets each complete message.
    pub fn feed(&mut self, mut data: &[u8], out: &mut dyn FnMut(Message<'_>)) {
        while !data.is_empty() {
            let Some((msg_type, len, left, body)) = &mut self.current else {
                let need = 4 - self.header.len();
                let n = need.min(data.len());
                self.header.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.header.len() == 4 {
                    let h = std::mem::take(&mut self.header);
                    let len = u32::from_be_bytes([0, h[1], h[2], h[3]]);
                    let body = (kept(h[0]) && len as usize <= MAX_KEPT_BODY)
                        .then(|| Vec::with_capacity(len.min(4096) as usize));
                    self.current = Some((h[0], len, len, body));
                    self.finish_if_done(out);
                }
                continue;
            };
            let n = (*left as usize).min(data.len());
            if let Some(b) = body {
                b.extend_from_slice(&data[..n]);
            }
            *left -= n as u32;
            let _ = (msg_type, len);
            data = &data[n..];
            self.finish_if_done(out);
        }
    }

    fn finish_if_done(&mut self, out: &mut dyn FnMut(Message<'_>)) {
        if let Some((msg_type, len, 0, body)) = &self.current {
            out(Message { msg_type: *msg_type, body: body.as_deref(), len: *len });
            self.current = None;
        }
    }

    /// Forgets a partial message (after a gap: the rest of it is lost).
    pub fn reset(&mut self) {
        self.header.clear();
        self.current = None;
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.header.len() + self.current.as_ref().and_then(|c| c.3.as_ref()).map_or(0, Vec::capacity)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layer::tls::keys::tests::hex;

    /// RFC 8448 §3, the ClientHello handshake message (196 octets).
    pub(crate) const RFC8448_CH: &str = "01 00 00 c0 03 03 cb 34 ec b1 e7 81 63 ba 1c 38 c6 da cb 19 6a 6d ff a2
        1a 8d 99 12 ec 18 a2 ef 62 83 02 4d ec e7 00 00 06 13 01 13 03 13 02 01
        00 00 91 00 00 00 0b 00 09 00 00 06 73 65 72 76 65 72 ff 01 00 01 00 00
        0a 00 14 00 12 00 1d 00 17 00 18 00 19 01 00 01 01 01 02 01 03 01 04 00
        23 00 00 00 33 00 26 00 24 00 1d 00 20 99 38 1d e5 60 e4 bd 43 d2 3d 8e
        43 5a 7d ba fe b3 c0 6e 51 c1 3c ae 4d 54 13 69 1e 52 9a af 2c 00 2b 00
        03 02 03 04 00 0d 00 20 00 1e 04 03 05 03 06 03 02 03 08 04 08 05 08 06
        04 01 05 01 06 01 02 01 04 02 05 02 06 02 02 02 00 2d 00 02 01 01 00 1c
        00 02 40 01";
    /// RFC 8448 §3, the ServerHello record (95 octets).
    pub(crate) const RFC8448_SH_REC: &str = "16 03 03 00 5a 02 00 00 56 03 03 a6 af 06 a4 12 18 60 dc 5e 6e 60 24 9c
        d3 4c 95 93 0c 8a c5 cb 14 34 da c1 55 77 2e d3 e2 69 28 00 13 01 00 00
        2e 00 33 00 24 00 1d 00 20 c9 82 88 76 11 20 95 fe 66 76 2b db f7 c6 72
        e1 56 d6 cc 25 3b 83 3d f1 dd 69 b1 b0 4e 75 1f 0f 00 2b 00 02 03 04";

    #[test]
    fn rfc8448_hellos() {
        let ch = hex(RFC8448_CH);
        let hello = parse_client_hello(&ch[4..]).unwrap();
        assert_eq!(hello.random[..4], [0xcb, 0x34, 0xec, 0xb1]);
        assert_eq!(hello.sni.as_deref(), Some("server"));
        assert_eq!(hello.versions, [0x0304]);
        assert_eq!(hello.suites, [0x1301, 0x1303, 0x1302]);
        assert!(hello.alpn.is_empty() && !hello.psk);
        let sh = hex(RFC8448_SH_REC);
        let hello = parse_server_hello(&sh[9..]).unwrap();
        assert_eq!((hello.version, hello.suite, hello.retry, hello.psk), (0x0304, 0x1301, false, false));
        assert_eq!(hello.random[..4], [0xa6, 0xaf, 0x06, 0xa4]);
    }

    #[test]
    fn every_truncation_of_a_hello_is_an_error_not_a_panic() {
        let ch = hex(RFC8448_CH);
        // A hello may end right after its compression method(s): no extensions is valid.
        let no_extensions = 2 + 32 + 1 + 2 + 6 + 2;
        for cut in 0..ch.len() - 4 {
            assert_eq!(parse_client_hello(&ch[4..4 + cut]).is_err(), cut != no_extensions, "cut at {cut}");
        }
        let sh = hex(RFC8448_SH_REC);
        let no_extensions = 2 + 32 + 1 + 2 + 1;
        for cut in 0..sh.len() - 9 {
            assert_eq!(parse_server_hello(&sh[9..9 + cut]).is_err(), cut != no_extensions, "cut at {cut}");
        }
    }

    #[test]
    fn messages_split_anyhow_are_framed_and_others_skipped() {
        let mut stream = hex(RFC8448_CH);
        // A 70000-byte Certificate (type 11) is skipped, not kept.
        stream.extend_from_slice(&[11, 0x01, 0x11, 0x70]);
        stream.extend(std::iter::repeat_n(0x55, 0x011170));
        stream.extend_from_slice(&[KEY_UPDATE, 0, 0, 1, 1]);
        for step in [1, 3, 7, 500, stream.len()] {
            let mut r = HandshakeReader::default();
            let mut got = Vec::new();
            let mut max_buffered = 0;
            for piece in stream.chunks(step) {
                r.feed(piece, &mut |m| got.push((m.msg_type, m.len, m.body.map(<[u8]>::to_vec))));
                max_buffered = max_buffered.max(r.buffered());
            }
            assert_eq!(got.len(), 3, "step {step}");
            assert_eq!((got[0].0, got[0].2.as_deref()), (CLIENT_HELLO, Some(&hex(RFC8448_CH)[4..])));
            assert_eq!((got[1].0, got[1].1, got[1].2.is_none()), (11, 0x011170, true));
            assert_eq!(got[2], (KEY_UPDATE, 1, Some(vec![1])));
            assert!(max_buffered < 8192, "step {step}: {max_buffered}");
        }
    }
}
