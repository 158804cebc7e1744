//! The HTTP/1.1 opening handshake of a WebSocket connection (RFC 6455 §4): the client's upgrade
//! request and the broker's answer, parsed with `httparse`.
//!
//! Contract: [`parse_request`] and [`parse_response`] read one complete head (up to and
//! including the blank line) from the start of a buffer, or say it is incomplete; they keep only
//! the few values the analysis reports, each cut to [`MAX_VALUE`] bytes. [`sniff_upgrade`] tells
//! from a connection's first client bytes whether they are a WebSocket upgrade request. The
//! caller bounds the buffer ([`super::MAX_HEAD`]).

use super::Sniff;

/// Most bytes kept of a reported value (request path, subprotocol, reason phrase).
pub const MAX_VALUE: usize = 256;
/// Most header lines in a head; more is malformed.
pub const MAX_HEADERS: usize = 64;

/// Why a head is not what the handshake needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed HTTP head ({0})")]
    Malformed(&'static str),
    #[error("HTTP request is not a WebSocket upgrade (no GET with Upgrade: websocket)")]
    NotAnUpgrade,
}

/// The values kept of a client's upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    /// `Sec-WebSocket-Protocol` as offered (e.g. `mqtt`, or a list), if any.
    pub protocol: Option<String>,
}

/// The values kept of the broker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// `Sec-WebSocket-Protocol` as accepted, if any.
    pub protocol: Option<String>,
    /// `Sec-WebSocket-Extensions` as accepted (e.g. `permessage-deflate`), if any.
    pub extensions: Option<String>,
}

fn value(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_VALUE)];
    String::from_utf8_lossy(cut).into_owned()
}

fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// True when a comma-separated header value lists `token` (case-insensitive).
fn lists(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn malformed(e: httparse::Error) -> HeadError {
    HeadError::Malformed(match e {
        httparse::Error::TooManyHeaders => "too many header lines",
        httparse::Error::Version => "not HTTP/1.x",
        httparse::Error::Status => "bad status code",
        httparse::Error::Token => "bad token",
        httparse::Error::NewLine => "bad line ending",
        httparse::Error::HeaderName | httparse::Error::HeaderValue => "bad header",
    })
}

/// The client's request at the start of `b`, and its length in bytes; `Ok(None)` while incomplete.
pub fn parse_request(b: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(b).map_err(malformed)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let upgrade = header(req.headers, "upgrade").is_some_and(|v| lists(v, "websocket"));
    if req.method != Some("GET") || !upgrade {
        return Err(HeadError::NotAnUpgrade);
    }
    let request = Request {
        path: value(req.path.unwrap_or_default().as_bytes()),
        protocol: header(req.headers, "sec-websocket-protocol").map(value),
    };
    Ok(Some((request, len)))
}

/// The broker's response at the start of `b`, and its length in bytes; `Ok(None)` while incomplete.
pub fn parse_response(b: &[u8]) -> Result<Option<(Response, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(b).map_err(malformed)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let response = Response {
        status: res.code.unwrap_or_default(),
        reason: value(res.reason.unwrap_or_default().as_bytes()),
        protocol: header(res.headers, "sec-websocket-protocol").map(value),
        extensions: header(res.headers, "sec-websocket-extensions").map(value),
    };
    Ok(Some((response, len)))
}

/// Whether `b`, the first bytes a client sent, open a WebSocket upgrade: an HTTP `GET` whose head
/// has `Upgrade: websocket`. `NeedMore` until the request line and the headers up to that one
/// (or the end of the head) have arrived; `No` once the head exceeds [`super::MAX_HEAD`].
pub fn sniff_upgrade(b: &[u8]) -> Sniff {
    const GET: &[u8] = b"GET ";
    if !b.starts_with(&GET[..b.len().min(GET.len())]) {
        return Sniff::No;
    }
    let b = &b[..b.len().min(super::MAX_HEAD)];
    let mut lines = b.split(|&c| c == b'\n');
    let mut complete = b.iter().filter(|&&c| c == b'\n').count();
    lines.next(); // the request line
    while complete > 1 {
        complete -= 1;
        let line = lines.next().unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Sniff::No; // end of the head: no Upgrade header
        }
        if let Some(colon) = line.iter().position(|&c| c == b':')
            && line[..colon].trim_ascii().eq_ignore_ascii_case(b"upgrade")
        {
            return if lists(&line[colon + 1..], "websocket") { Sniff::Yes } else { Sniff::No };
        }
    }
    if b.len() >= super::MAX_HEAD { Sniff::No } else { Sniff::NeedMore }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// mqtt.js's upgrade request, as recorded (ws 8).
    const MQTTJS_REQUEST: &[u8] = b"GET /mqtt HTTP/1.1\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n\
        Connection: Upgrade\r\n\
        Upgrade: websocket\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Sec-WebSocket-Protocol: mqtt\r\n\
        Host: 127.0.0.1:8080\r\n\r\n";

    #[test]
    fn request_path_and_protocol() {
        let mut b = MQTTJS_REQUEST.to_vec();
        b.extend_from_slice(&[0x82, 0x80]); // a frame follows the head
        let (req, len) = parse_request(&b).unwrap().unwrap();
        assert_eq!(len, MQTTJS_REQUEST.len());
        assert_eq!(req, Request { path: "/mqtt".into(), protocol: Some("mqtt".into()) });
        assert_eq!(parse_request(&MQTTJS_REQUEST[..40]), Ok(None));
    }

    #[test]
    fn request_that_is_not_an_upgrade() {
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Err(HeadError::NotAnUpgrade));
        assert_eq!(parse_request(b"POST / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"), Err(HeadError::NotAnUpgrade));
        assert!(matches!(parse_request(b"\x10\x0c\x00\x04MQTT"), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn responses_accepted_and_refused() {
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
            Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";
        let (res, len) = parse_response(ok).unwrap().unwrap();
        assert_eq!(len, ok.len());
        assert_eq!((res.status, res.protocol.as_deref(), res.extensions), (101, Some("mqtt"), None));
        let refused = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 11\r\n\r\nBad Request";
        let (res, _) = parse_response(refused).unwrap().unwrap();
        assert_eq!((res.status, res.reason.as_str()), (400, "Bad Request"));
    }

    #[test]
    fn values_are_cut() {
        let long = format!("GET /{} HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", "a".repeat(5000));
        let (req, _) = parse_request(long.as_bytes()).unwrap().unwrap();
        assert_eq!(req.path.len(), MAX_VALUE);
    }

    #[test]
    fn sniff_an_upgrade() {
        assert_eq!(sniff_upgrade(MQTTJS_REQUEST), Sniff::Yes);
        // Upgrade is on line 5: until that line is complete, more is needed.
        let line = b"Upgrade: websocket\r\n";
        let upto = MQTTJS_REQUEST.windows(line.len()).position(|w| w == line).unwrap() + line.len();
        for n in 0..MQTTJS_REQUEST.len() {
            let want = if n < upto { Sniff::NeedMore } else { Sniff::Yes };
            assert_eq!(sniff_upgrade(&MQTTJS_REQUEST[..n]), want, "{n} bytes");
        }
        assert_eq!(sniff_upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Sniff::No);
        assert_eq!(sniff_upgrade(b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n"), Sniff::No);
        assert_eq!(sniff_upgrade(b"\x10\x0c\x00\x04MQTT"), Sniff::No);
        assert_eq!(sniff_upgrade(b"\x16\x03\x01"), Sniff::No);
        assert_eq!(sniff_upgrade(b"GE"), Sniff::NeedMore);
        let flood = [b"GET / HTTP/1.1\r\n".as_slice(), &b"X: y\r\n".repeat(10_000)].concat();
        assert_eq!(sniff_upgrade(&flood), Sniff::No);
    }
}
