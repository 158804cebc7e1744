//! A minimal MQTT client transport for the probe: TCP, TLS (rustls), WebSocket (tungstenite) and
//! WebSocket over TLS, plus encoders for the few packets the probe sends.
//!
//! Contract: [`Conn::recv`] waits at most the given time and reports either the bytes that came,
//! a timeout, or how the broker closed the connection ([`CloseHow`]: a TCP FIN (EOF), a TCP RST
//! (connection reset), or a WebSocket close frame). It never decodes MQTT: callers frame the bytes
//! (see [`super::scenario`]). [`Conn::send`] writes whole MQTT packets. Nothing here reads a clock.
//! The password given to [`connect_packet`] goes only onto the wire; no error or debug output
//! carries it.
//!
//! WebSocket is tungstenite's synchronous client over our own stream (plain or rustls), with no
//! TLS feature of its own: it is maintained, passes the Autobahn suite, and fits the blocking,
//! one-thread-per-connection design; a hand-written framing layer would have to redo masking,
//! fragmentation and the close handshake.

use super::{ProbeError, Scheme, Target};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

/// TLS settings for `mqtts://` and `wss://`.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Trust only the certificates in this PEM file (default: the system's roots).
    pub cafile: Option<PathBuf>,
    /// Accept any server certificate (still TLS, no authentication of the broker).
    pub insecure: bool,
    /// Client certificate chain (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub key: Option<PathBuf>,
}

/// A TCP stream, plain or inside TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// How the broker ended a connection, as the probe's socket saw it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CloseHow {
    /// End of stream: the broker sent a FIN (or a TLS close_notify and a FIN).
    Fin,
    /// The connection was reset.
    Rst,
    /// A WebSocket close frame, with its status code (1005 when it had none).
    WsClose(u16),
}

/// What one wait on a connection gave.
#[derive(Debug)]
pub enum Recv {
    Data(Vec<u8>),
    Timeout,
    Closed(CloseHow),
}

/// One open connection to the broker.
pub enum Conn {
    Raw(Stream),
    Ws(Box<tungstenite::WebSocket<Stream>>),
}

/// How long connecting (TCP, TLS and WebSocket handshakes) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection to `target` (TCP, then TLS and WebSocket handshakes as the scheme says).
pub fn open(target: &Target, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Conn, ProbeError> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| ProbeError::Resolve { host: target.host.clone(), source: e })?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| ProbeError::Connect {
        target: target.display(),
        source: last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")),
    })?;
    tcp.set_nodelay(true).ok();
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT)).ok();
    tcp.set_write_timeout(Some(CONNECT_TIMEOUT)).ok();
    let stream = if target.scheme.is_tls() {
        let config = tls.ok_or_else(|| ProbeError::Tls("no TLS configuration".into()))?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| ProbeError::Tls(format!("{} is not a valid server name", target.host)))?;
        let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| ProbeError::Tls(e.to_string()))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        // Drive the handshake now, so a certificate problem is reported as such.
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| ProbeError::Tls(tls_reason(&e)))?;
        }
        Stream::Tls(Box::new(s))
    } else {
        Stream::Plain(tcp)
    };
    match target.scheme {
        Scheme::Mqtt | Scheme::Mqtts => Ok(Conn::Raw(stream)),
        Scheme::Ws | Scheme::Wss => {
            let url = format!("{}://{}:{}{}", target.scheme.ws_name(), target.host_for_url(), target.port, target.path);
            let mut req = url.as_str().into_client_request().map_err(|e| ProbeError::WebSocket(e.to_string()))?;
            req.headers_mut().insert("Sec-WebSocket-Protocol", tungstenite::http::HeaderValue::from_static("mqtt"));
            let (ws, _) = tungstenite::client::client(req, stream).map_err(|e| match e {
                tungstenite::HandshakeError::Failure(e) => ProbeError::WebSocket(e.to_string()),
                tungstenite::HandshakeError::Interrupted(_) => ProbeError::WebSocket("handshake timed out".into()),
            })?;
            Ok(Conn::Ws(Box::new(ws)))
        }
    }
}

fn tls_reason(e: &io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(r) => r.to_string(),
        None => e.to_string(),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

/// An I/O error while reading, as a close or a failure.
fn read_error(e: io::Error) -> io::Result<Recv> {
    match e.kind() {
        _ if is_timeout(&e) => Ok(Recv::Timeout),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => Ok(Recv::Closed(CloseHow::Rst)),
        // rustls: the TCP stream ended without a close_notify.
        io::ErrorKind::UnexpectedEof => Ok(Recv::Closed(CloseHow::Fin)),
        _ => Err(e),
    }
}

impl Conn {
    fn stream(&self) -> &Stream {
        match self {
            Conn::Raw(s) => s,
            Conn::Ws(ws) => ws.get_ref(),
        }
    }

    /// Writes one whole MQTT packet.
    pub fn send(&mut self, packet: &[u8]) -> io::Result<()> {
        match self {
            Conn::Raw(s) => {
                s.write_all(packet)?;
                s.flush()
            }
            Conn::Ws(ws) => ws.send(Message::binary(packet.to_vec())).map_err(ws_io),
        }
    }

    /// Waits up to `timeout` (at least 1 ms) for bytes or the end of the connection.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Recv> {
        self.stream().tcp().set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        match self {
            Conn::Raw(s) => {
                let mut buf = [0u8; 4096];
                match s.read(&mut buf) {
                    Ok(0) => Ok(Recv::Closed(CloseHow::Fin)),
                    Ok(n) => Ok(Recv::Data(buf[..n].to_vec())),
                    Err(e) => read_error(e),
                }
            }
            Conn::Ws(ws) => match ws.read() {
                Ok(Message::Binary(b)) => Ok(Recv::Data(b.to_vec())),
                Ok(Message::Close(frame)) => {
                    Ok(Recv::Closed(CloseHow::WsClose(frame.map_or(1005, |f| u16::from(f.code)))))
                }
                // Text, ping, pong: not MQTT; tungstenite answers pings itself.
                Ok(_) => Ok(Recv::Data(Vec::new())),
                Err(tungstenite::Error::Io(e)) => read_error(e),
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    Ok(Recv::Closed(CloseHow::Fin))
                }
                Err(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
                    Ok(Recv::Closed(CloseHow::Fin))
                }
                Err(e) => Err(ws_io(e)),
            },
        }
    }

    /// Closes our side (after a DISCONNECT): a WebSocket close frame, a TLS close_notify, then
    /// the TCP FIN. Errors are ignored: the peer may be gone already.
    pub fn shutdown(&mut self) {
        let stream = match self {
            Conn::Ws(ws) => {
                let _ = ws.close(None);
                let _ = ws.flush();
                ws.get_mut()
            }
            Conn::Raw(s) => s,
        };
        if let Stream::Tls(s) = stream {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
        let _ = stream.tcp().shutdown(std::net::Shutdown::Both);
    }
}

fn ws_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// Builds the rustls client configuration from the options.
pub fn tls_config(opts: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls(e.to_string()))?;
    let builder = if opts.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &opts.cafile {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| ProbeError::File { path: path.clone(), reason: e.to_string() })?;
                if certs.is_empty() {
                    return Err(ProbeError::File { path: path.clone(), reason: "no certificate in it".into() });
                }
                for c in certs {
                    roots.add(c).map_err(|e| ProbeError::File {
                        path: path.clone(),
                        reason: format!("bad certificate: {e}"),
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(ProbeError::Tls("no system root certificates found: give --cafile".into()));
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ProbeError::File { path: cert.clone(), reason: e.to_string() })?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ProbeError::File { path: key.clone(), reason: e.to_string() })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| ProbeError::Tls(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(ProbeError::Usage("--cert and --key go together".into())),
    };
    Ok(Arc::new(config))
}

/// `--insecure`: accepts any certificate, but still checks the handshake signatures with the
/// provider's algorithms (no cryptography here).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

// ---- MQTT packets the probe sends ----

/// MQTT versions the probe speaks.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Version {
    V311,
    V5,
}

/// A CONNECT's fields.
pub struct ConnectSpec<'a> {
    pub version: Version,
    pub client_id: &'a str,
    pub keepalive: u16,
    /// Will topic and payload (QoS 0, not retained).
    pub will: Option<(&'a str, &'a [u8])>,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
}

fn put_remaining_length(out: &mut Vec<u8>, n: usize) {
    crate::mqtt::header::encode_remaining_length(n, out);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Fields are bounded by the caller (client ids, topics, credentials); longer ones are cut.
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    put_remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// A CONNECT with clean start.
pub fn connect_packet(c: &ConnectSpec<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    put_bytes(&mut body, b"MQTT");
    body.push(if c.version == Version::V5 { 5 } else { 4 });
    let mut flags = 0x02; // clean start
    if c.will.is_some() {
        flags |= 0x04; // will, QoS 0, not retained
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&c.keepalive.to_be_bytes());
    if c.version == Version::V5 {
        body.push(0); // no properties
    }
    put_bytes(&mut body, c.client_id.as_bytes());
    if let Some((topic, payload)) = c.will {
        if c.version == Version::V5 {
            body.push(0); // no will properties
        }
        put_bytes(&mut body, topic.as_bytes());
        put_bytes(&mut body, payload);
    }
    if let Some(u) = c.username {
        put_bytes(&mut body, u.as_bytes());
    }
    if let Some(p) = c.password {
        put_bytes(&mut body, p);
    }
    packet(0x10, &body)
}

/// PINGREQ.
pub fn pingreq_packet() -> Vec<u8> {
    vec![0xc0, 0x00]
}

/// A normal DISCONNECT (reason 0x00 in MQTT 5): the broker discards the Will.
pub fn disconnect_packet(version: Version) -> Vec<u8> {
    match version {
        Version::V311 => vec![0xe0, 0x00],
        Version::V5 => vec![0xe0, 0x01, 0x00],
    }
}

/// SUBSCRIBE to one topic filter at QoS 0, packet id 1.
pub fn subscribe_packet(version: Version, filter: &str) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if version == Version::V5 {
        body.push(0); // no properties
    }
    put_bytes(&mut body, filter.as_bytes());
    body.push(0x00); // QoS 0
    packet(0x82, &body)
}

/// Cuts whole MQTT packets off the front of `buf`: `(first byte, body)` each. Incomplete data
/// stays in `buf`. An impossible length is an error.
pub fn take_packets(buf: &mut Vec<u8>) -> Result<Vec<(u8, Vec<u8>)>, &'static str> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        if rest.len() < 2 {
            break;
        }
        let mut len = 0usize;
        let mut header_len = None;
        for i in 0..4 {
            let Some(&b) = rest.get(1 + i) else { break };
            len |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                header_len = Some(2 + i);
                break;
            }
            if i == 3 {
                return Err("remaining length longer than 4 bytes");
            }
        }
        let Some(h) = header_len else { break };
        if rest.len() < h + len {
            break;
        }
        out.push((rest[0], rest[h..h + len].to_vec()));
        at += h + len;
    }
    buf.drain(..at);
    Ok(out)
}

/// A PUBLISH body's topic and payload (`None` when malformed).
pub fn publish_topic_payload(first: u8, body: &[u8], version: Version) -> Option<(String, Vec<u8>)> {
    let len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let topic = String::from_utf8_lossy(body.get(2..2 + len)?).into_owned();
    let mut at = 2 + len;
    if (first >> 1) & 0x03 != 0 {
        at += 2; // packet id
    }
    if version == Version::V5 {
        let mut props = 0usize;
        for i in 0..4 {
            let b = *body.get(at)?;
            at += 1;
            props |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        at += props;
    }
    Some((topic, body.get(at..)?.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::packet::decode_connect;

    #[test]
    fn connect_3_1_1_with_will_and_credentials_decodes_with_the_analyzer() {
        let p = connect_packet(&ConnectSpec {
            version: Version::V311,
            client_id: "mkp-1-silent-5",
            keepalive: 5,
            will: Some(("probe/t", b"gone")),
            username: Some("u"),
            password: Some(b"secret"),
        });
        assert_eq!(p[0], 0x10);
        let c = decode_connect(&p[2..]).unwrap();
        assert_eq!(c.keepalive, 5);
        assert!(c.will && c.username && c.password && c.clean_start);
        assert_eq!(c.client_id.as_deref(), Some("mkp-1-silent-5"));
        assert_eq!(usize::from(p[1]), p.len() - 2, "remaining length");
    }

    #[test]
    fn connect_5_has_empty_property_lists() {
        let p = connect_packet(&ConnectSpec {
            version: Version::V5,
            client_id: "c",
            keepalive: 0,
            will: Some(("t", b"")),
            username: None,
            password: None,
        });
        let expected = [
            0x10, 0x14, // CONNECT, remaining 20
            0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, // MQTT 5
            0x06, // will, clean start
            0x00, 0x00, // keepalive 0
            0x00, // properties
            0x00, 0x01, b'c', // client id
            0x00, // will properties
            0x00, 0x01, b't', // will topic
            0x00, 0x00, // will payload
        ];
        assert_eq!(p, expected);
    }

    #[test]
    fn long_remaining_lengths_are_encoded_in_several_bytes() {
        let mut out = Vec::new();
        put_remaining_length(&mut out, 321);
        assert_eq!(out, [0xc1, 0x02]);
    }

    #[test]
    fn take_packets_keeps_partial_data() {
        let mut buf = vec![0xd0, 0x00, 0x20, 0x03, 0x00, 0x00]; // PINGRESP, then 2 of 3 CONNACK bytes
        let got = take_packets(&mut buf).unwrap();
        assert_eq!(got, [(0xd0, vec![])]);
        assert_eq!(buf, [0x20, 0x03, 0x00, 0x00]);
        buf.push(0x00);
        assert_eq!(take_packets(&mut buf).unwrap(), [(0x20, vec![0, 0, 0])]);
        assert!(buf.is_empty());
        let mut bad = vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(take_packets(&mut bad).is_err());
    }

    #[test]
    fn publish_topic_and_payload_in_both_versions() {
        let v3 = [0x00, 0x03, b'a', b'/', b'b', b'h', b'i'];
        assert_eq!(publish_topic_payload(0x30, &v3, Version::V311), Some(("a/b".into(), b"hi".to_vec())));
        let v5 = [0x00, 0x01, b't', 0x00, 0x07, 0x02, 0x01, 0x01, b'x']; // QoS 1 id 7, 2 bytes of props
        assert_eq!(publish_topic_payload(0x32, &v5, Version::V5), Some(("t".into(), b"x".to_vec())));
        assert_eq!(publish_topic_payload(0x30, &[0x00], Version::V311), None);
    }

    #[test]
    fn subscribe_and_disconnect_bytes() {
        assert_eq!(
            subscribe_packet(Version::V311, "p/#"),
            [0x82, 0x08, 0x00, 0x01, 0x00, 0x03, b'p', b'/', b'#', 0x00]
        );
        assert_eq!(disconnect_packet(Version::V5), [0xe0, 0x01, 0x00]);
        assert_eq!(pingreq_packet(), [0xc0, 0x00]);
    }
}
