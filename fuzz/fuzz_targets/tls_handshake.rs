//! TLS handshake messages (`layer::tls::handshake`): one side's handshake-protocol bytes in
//! arbitrary chunks (input format: `common/mod.rs`, one-sided; gaps reset the reader, as the
//! TLS layer does after a lost record), and every kept body through the hello parsers.
//!
//! Checks: fed whole and in chunks (no gaps), the same messages come out; a kept body is exactly
//! its declared length, at most `MAX_KEPT_BODY`, and only for the four types read; the buffer
//! never exceeds the largest kept body plus a header; the hello parsers never panic, return
//! what the body holds (session id at most 255 bytes, a ClientHello always has a version, a
//! HelloRetryRequest is recognised by its random), and give the same result on the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::layer::Chunk;
use mqtt_keepalive::layer::tls::handshake::{
    CLIENT_HELLO, FINISHED, HRR_RANDOM, HandshakeReader, KEY_UPDATE, MAX_KEPT_BODY, SERVER_HELLO, parse_client_hello,
    parse_server_hello,
};

#[path = "common/mod.rs"]
mod common;

type Msg = (u8, u32, Option<Vec<u8>>);

fn run(stream: &[u8], plan: &[common::Step]) -> Vec<Msg> {
    let mut r = HandshakeReader::default();
    let mut got = Vec::new();
    common::chunks(stream, plan, |chunk| {
        match chunk {
            Chunk::Data(d) => r.feed(d, &mut |m| {
                if let Some(body) = m.body {
                    assert_eq!(body.len() as u64, u64::from(m.len));
                    assert!(body.len() <= MAX_KEPT_BODY);
                    assert!(
                        matches!(m.msg_type, CLIENT_HELLO | SERVER_HELLO | FINISHED | KEY_UPDATE),
                        "{}",
                        m.msg_type
                    );
                } else if matches!(m.msg_type, CLIENT_HELLO | SERVER_HELLO | FINISHED | KEY_UPDATE) {
                    assert!(m.len as usize > MAX_KEPT_BODY, "a {}-byte type {} not kept", m.len, m.msg_type);
                }
                got.push((m.msg_type, m.len, m.body.map(<[u8]>::to_vec)));
            }),
            Chunk::Gap(_) => r.reset(),
        }
        assert!(r.buffered() <= MAX_KEPT_BODY + 4, "{} held", r.buffered());
    });
    got
}

fn hellos(body: &[u8]) {
    match parse_client_hello(body) {
        Ok(ch) => {
            assert!(ch.session_id.len() <= 255 && ch.session_id.len() + 34 <= body.len());
            assert!(!ch.versions.is_empty());
            assert!(2 * (ch.suites.len() + ch.versions.len()) + ch.session_id.len() <= body.len());
            assert!(ch.alpn.len() <= body.len());
            assert_eq!(parse_client_hello(body), Ok(ch));
        }
        Err(e) => assert_eq!(parse_client_hello(body), Err(e)),
    }
    match parse_server_hello(body) {
        Ok(sh) => {
            assert!(sh.session_id.len() + 38 <= body.len());
            assert_eq!(sh.retry, body[2..34] == HRR_RANDOM);
            assert_eq!(parse_server_hello(body), Ok(sh));
        }
        Err(e) => assert_eq!(parse_server_hello(body), Err(e)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((plan, stream, gaps)) = common::one_sided(data) else { return };
    let chunked = run(stream, &plan);
    if !gaps {
        assert_eq!(run(stream, &[]), chunked);
    }
    for (_, _, body) in &chunked {
        if let Some(body) = body {
            hellos(body);
        }
    }
    // The raw stream as one body too (a hello parser sees whatever a peer declares).
    hellos(stream);
});
