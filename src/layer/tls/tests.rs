//! The TLS layer end to end on RFC 8448's trace, plus hostile and split input.

use super::handshake::tests::{RFC8448_CH, RFC8448_SH_REC};
use super::keys::tests::{C_ALERT_REC, C_AP, C_APP_REC, C_FIN_REC, C_HS, S_AP, S_APP_REC, S_HS, hex};
use super::*;
use proptest::prelude::*;

/// RFC 8448 §3: the server's EncryptedExtensions..Finished record (679 octets).
const S_FLIGHT_REC: &str = "17 03 03 02 a2 d1 ff 33 4a 56 f5 bf f6 59 4a 07 cc 87 b5 80 23 3f 50 0f
    45 e4 89 e7 f3 3a f3 5e df 78 69 fc f4 0a a4 0a a2 b8 ea 73 f8 48 a7 ca
    07 61 2e f9 f9 45 cb 96 0b 40 68 90 51 23 ea 78 b1 11 b4 29 ba 91 91 cd
    05 d2 a3 89 28 0f 52 61 34 aa dc 7f c7 8c 4b 72 9d f8 28 b5 ec f7 b1 3b
    d9 ae fb 0e 57 f2 71 58 5b 8e a9 bb 35 5c 7c 79 02 07 16 cf b9 b1 18 3e
    f3 ab 20 e3 7d 57 a6 b9 d7 47 76 09 ae e6 e1 22 a4 cf 51 42 73 25 25 0c
    7d 0e 50 92 89 44 4c 9b 3a 64 8f 1d 71 03 5d 2e d6 5b 0e 3c dd 0c ba e8
    bf 2d 0b 22 78 12 cb b3 60 98 72 55 cc 74 41 10 c4 53 ba a4 fc d6 10 92
    8d 80 98 10 e4 b7 ed 1a 8f d9 91 f0 6a a6 24 82 04 79 7e 36 a6 a7 3b 70
    a2 55 9c 09 ea d6 86 94 5b a2 46 ab 66 e5 ed d8 04 4b 4c 6d e3 fc f2 a8
    94 41 ac 66 27 2f d8 fb 33 0e f8 19 05 79 b3 68 45 96 c9 60 bd 59 6e ea
    52 0a 56 a8 d6 50 f5 63 aa d2 74 09 96 0d ca 63 d3 e6 88 61 1e a5 e2 2f
    44 15 cf 95 38 d5 1a 20 0c 27 03 42 72 96 8a 26 4e d6 54 0c 84 83 8d 89
    f7 2c 24 46 1a ad 6d 26 f5 9e ca ba 9a cb bb 31 7b 66 d9 02 f4 f2 92 a3
    6a c1 b6 39 c6 37 ce 34 31 17 b6 59 62 22 45 31 7b 49 ee da 0c 62 58 f1
    00 d7 d9 61 ff b1 38 64 7e 92 ea 33 0f ae ea 6d fa 31 c7 a8 4d c3 bd 7e
    1b 7a 6c 71 78 af 36 87 90 18 e3 f2 52 10 7f 24 3d 24 3d c7 33 9d 56 84
    c8 b0 37 8b f3 02 44 da 8c 87 c8 43 f5 e5 6e b4 c5 e8 28 0a 2b 48 05 2c
    f9 3b 16 49 9a 66 db 7c ca 71 e4 59 94 26 f7 d4 61 e6 6f 99 88 2b d8 9f
    c5 08 00 be cc a6 2d 6c 74 11 6d bd 29 72 fd a1 fa 80 f8 5d f8 81 ed be
    5a 37 66 89 36 b3 35 58 3b 59 91 86 dc 5c 69 18 a3 96 fa 48 a1 81 d6 b6
    fa 4f 9d 62 d5 13 af bb 99 2f 2b 99 2f 67 f8 af e6 7f 76 91 3f a3 88 cb
    56 30 c8 ca 01 e0 c6 5d 11 c6 6a 1e 2a c4 c8 59 77 b7 c7 a6 99 9b bf 10
    dc 35 ae 69 f5 51 56 14 63 6c 0b 9b 68 c1 9e d2 e3 1c 0b 3b 66 76 30 38
    eb ba 42 f3 b3 8e dc 03 99 f3 a9 f2 3f aa 63 97 8c 31 7f c9 fa 66 a7 3f
    60 f0 50 4d e9 3b 5b 84 5e 27 55 92 c1 23 35 ee 34 0b bc 4f dd d5 02 78
    40 16 e4 b3 be 7e f0 4d da 49 f4 b4 40 a3 0c b5 d2 af 93 98 28 fd 4a e3
    79 4e 44 f9 4d f5 a6 31 ed e4 2c 17 19 bf da bf 02 53 fe 51 75 be 89 8e
    75 0e dc 53 37 0d 2b";
/// RFC 8448 §3: the server's NewSessionTicket record (227 octets).
const S_NST_REC: &str = "17 03 03 00 de 3a 6b 8f 90 41 4a 97 d6 95 9c 34 87 68 0d e5 13 4a 2b 24
    0e 6c ff ac 11 6e 95 d4 1d 6a f8 f6 b5 80 dc f3 d1 1d 63 c7 58 db 28 9a
    01 59 40 25 2f 55 71 3e 06 1d c1 3e 07 88 91 a3 8e fb cf 57 53 ad 8e f1
    70 ad 3c 73 53 d1 6d 9d a7 73 b9 ca 7f 2b 9f a1 b6 c0 d4 a3 d0 3f 75 e0
    9c 30 ba 1e 62 97 2a c4 6f 75 f7 b9 81 be 63 43 9b 29 99 ce 13 06 46 15
    13 98 91 d5 e4 c5 b4 06 f1 6e 3f c1 81 a7 7c a4 75 84 00 25 db 2f 0a 77
    f8 1b 5a b0 5b 94 c0 13 46 75 5f 69 23 2c 86 51 9d 86 cb ee ac 87 aa c3
    47 d1 43 f9 60 5d 64 f6 50 db 4d 02 3e 70 e9 52 ca 49 fe 51 37 12 1c 74
    bc 26 97 68 7e 24 87 46 d6 df 35 30 05 f3 bc e1 86 96 12 9c 81 53 55 6b
    3b 6c 67 79 b3 7b f1 59 85 68 4f";
/// RFC 8448 §3: the server's close_notify record (24 octets).
const S_ALERT_REC: &str = "17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9";
const CLIENT_RANDOM: &str = "cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece7";

fn rfc8448_keylog() -> Arc<KeyLog> {
    Arc::new(KeyLog::parse(&format!(
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET {CLIENT_RANDOM} {C_HS}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {CLIENT_RANDOM} {S_HS}\n\
         CLIENT_TRAFFIC_SECRET_0 {CLIENT_RANDOM} {C_AP}\nSERVER_TRAFFIC_SECRET_0 {CLIENT_RANDOM} {S_AP}\n"
    )))
}

/// The RFC 8448 §3 conversation, in wire order: (side, record bytes).
fn rfc8448_records() -> Vec<(Side, Vec<u8>)> {
    let ch = hex(RFC8448_CH);
    let mut ch_rec = vec![22, 3, 1, 0, ch.len() as u8];
    ch_rec.extend(ch);
    vec![
        (Side::Client, ch_rec),
        (Side::Broker, hex(RFC8448_SH_REC)),
        (Side::Broker, hex(S_FLIGHT_REC)),
        (Side::Client, hex(C_FIN_REC)),
        (Side::Broker, hex(S_NST_REC)),
        (Side::Client, hex(C_APP_REC)),
        (Side::Broker, hex(S_APP_REC)),
        (Side::Client, hex(C_ALERT_REC)),
        (Side::Broker, hex(S_ALERT_REC)),
    ]
}

#[derive(Default, Debug)]
pub(crate) struct Collect {
    pub data: [Vec<u8>; 2],
    pub gaps: Vec<(Side, u64)>,
    pub events: Vec<(Side, TlsEvent)>,
}

impl Up for Collect {
    fn data(&mut self, side: Side, bytes: &[u8]) {
        self.data[idx(side)].extend_from_slice(bytes);
    }
    fn gap(&mut self, side: Side, len: u64) {
        self.gaps.push((side, len));
    }
    fn event(&mut self, side: Side, event: LayerEvent) {
        let LayerEvent::Tls(e) = event else { panic!("only the TLS layer runs here: {event:?}") };
        self.events.push((side, e));
    }
}

impl Collect {
    fn count(&self, f: impl Fn(&TlsEvent) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| f(e)).count()
    }
}

fn run(layer: &mut TlsLayer, feed: &[(Side, Chunk<'_>)]) -> Collect {
    let mut up = Collect::default();
    for (side, chunk) in feed {
        let chunk = match chunk {
            Chunk::Data(d) => Chunk::Data(d),
            Chunk::Gap(n) => Chunk::Gap(*n),
        };
        layer.feed(*side, chunk, &mut up);
    }
    up
}

fn whole(records: &[(Side, Vec<u8>)]) -> Vec<(Side, Chunk<'_>)> {
    records.iter().map(|(s, r)| (*s, Chunk::Data(r))).collect()
}

#[test]
fn rfc8448_trace_decrypts_both_ways_with_the_key_log() {
    let records = rfc8448_records();
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let up = run(&mut layer, &whole(&records));
    let payload: Vec<u8> = (0u8..50).collect();
    assert_eq!(up.data, [payload.clone(), payload], "{:?}", up.events);
    assert!(up.gaps.is_empty());
    let close = Alert { level: 1, description: 0 };
    let want_events = [
        (
            Side::Client,
            TlsEvent::ClientHello {
                sni: Some("server".into()),
                alpn: vec![],
                versions: vec![TLS13],
                resumption_offered: false,
            },
        ),
        (Side::Broker, TlsEvent::ServerHello { version: TLS13, suite: 0x1301, alpn: None, resumed: false }),
        (Side::Broker, TlsEvent::Decrypting { version: TLS13, suite: 0x1301 }),
        (Side::Client, TlsEvent::Alert { alert: close, encrypted: true }),
        (Side::Broker, TlsEvent::Alert { alert: close, encrypted: true }),
    ];
    assert_eq!(up.events, want_events);
    assert!(close.is_close_notify() && !close.is_fatal());
    let s = layer.stats();
    assert_eq!((s.records, s.decrypted, s.opaque, s.decrypt_failures, s.errors), (9, 7, 0, 0, 0));
    assert_eq!(layer.buffered(), 0, "at record boundaries nothing is held");
    assert!(Alert { level: 2, description: 40 }.is_fatal() && Alert { level: 1, description: 50 }.is_fatal());
}

#[test]
fn the_layer_is_send_and_its_debug_output_has_no_key_material() {
    fn send<T: Send + 'static>(_: &T) {}
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    send(&layer);
    let _boxed: Box<dyn Layer + Send> = Box::new(TlsLayer::new(None));
    let up = run(&mut layer, &whole(&rfc8448_records()));
    let text = format!("{layer:?} {layer:#?} {:?}", up.events);
    for secret in [C_HS, S_HS, C_AP, S_AP, "17422dda", "3fce5160"] {
        assert!(!text.contains(&secret[..8]), "{text}");
    }
    // Nor as decimal bytes (the client application secret starts 0x9e 0x40 0x64).
    assert!(!text.contains("158, 64, 100"), "{text}");
}

#[test]
fn a_hello_retry_request_is_not_the_server_hello() {
    // CH, HelloRetryRequest (the ServerHello with the HRR random), the client's compatibility
    // ChangeCipherSpec and second ClientHello, then the real ServerHello and the rest.
    let records = rfc8448_records();
    let mut hrr = records[1].1.clone();
    hrr[11..43].copy_from_slice(&handshake::HRR_RANDOM);
    let mut feed =
        vec![records[0].clone(), (Side::Broker, hrr), (Side::Client, vec![20, 3, 3, 0, 1, 1]), records[0].clone()];
    feed.extend(records[1..].iter().cloned());
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let up = run(&mut layer, &whole(&feed));
    let payload: Vec<u8> = (0u8..50).collect();
    assert_eq!(up.data, [payload.clone(), payload]);
    assert_eq!(up.count(|e| matches!(e, TlsEvent::ServerHello { .. })), 1);
    assert_eq!(up.count(|e| matches!(e, TlsEvent::ClientHello { .. })), 2, "the second ClientHello is plaintext");
}

#[test]
fn rfc8448_trace_without_keys_is_encrypted_with_opaque_records() {
    let records = rfc8448_records();
    for (keylog, reason) in
        [(None, EncryptedReason::NoKeyLog), (Some(Arc::new(KeyLog::parse(""))), EncryptedReason::NoKeyLogLine)]
    {
        let mut layer = TlsLayer::new(keylog);
        let up = run(&mut layer, &whole(&records));
        assert_eq!(up.data, [Vec::<u8>::new(), Vec::new()]);
        assert_eq!(up.count(|e| *e == TlsEvent::Encrypted { reason }), 1);
        let opaque: Vec<_> = up
            .events
            .iter()
            .filter_map(|(side, e)| match e {
                TlsEvent::Opaque { content_type, len, plaintext_len } => {
                    Some((*side, *content_type, *len, *plaintext_len))
                }
                _ => None,
            })
            .collect();
        // 50 bytes of application data: 50 + content type + 16-byte tag = 67.
        assert!(opaque.contains(&(Side::Client, 23, 67, Some(50))), "{opaque:?}");
        assert_eq!(opaque.len(), 7);
        assert_eq!(layer.encrypted_reason(), Some(reason));
    }
}

#[test]
fn a_missing_handshake_secret_still_decrypts_application_data() {
    // Only the application traffic secrets: the handshake records stay unreadable, the
    // application keys are tried (and adopted) when a record does not open otherwise.
    let records = rfc8448_records();
    let log = Arc::new(KeyLog::parse(&format!(
        "CLIENT_TRAFFIC_SECRET_0 {CLIENT_RANDOM} {C_AP}\nSERVER_TRAFFIC_SECRET_0 {CLIENT_RANDOM} {S_AP}\n"
    )));
    let mut layer = TlsLayer::new(Some(log));
    let up = run(&mut layer, &whole(&records));
    assert_eq!(up.data[0], (0u8..50).collect::<Vec<_>>());
    // Server: the NST opens at seq 0 with the application keys, then the data at seq 1.
    assert_eq!(up.data[1], (0u8..50).collect::<Vec<_>>());
    assert_eq!(layer.stats().decrypt_failures, 2, "the two handshake-key records");
}

#[test]
fn a_bad_tag_is_counted_and_becomes_a_gap() {
    let mut records = rfc8448_records();
    records[5].1[30] ^= 0x80; // the client's application data record
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let up = run(&mut layer, &whole(&records));
    assert_eq!(up.data[0], Vec::<u8>::new());
    assert_eq!(up.gaps, [(Side::Client, UNKNOWN_LEN)]);
    assert_eq!(up.count(|e| matches!(e, TlsEvent::DecryptFailed { content_type: 23, len: 67 })), 1);
    // The next record (the client's close_notify, seq 1) still opens: the sequence advanced.
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Alert { encrypted: true, .. })), 2);
    assert_eq!(layer.stats().decrypt_failures, 1);
}

#[test]
fn a_tcp_gap_across_records_resyncs_and_probes_the_sequence() {
    // The client's Finished and application data are lost in one gap that ends inside the
    // alert record's predecessor; the alert is found again and opens at seq 1.
    let records = rfc8448_records();
    let mut feed = whole(&records[..3]);
    let lost = records[3].1.len() + records[5].1.len();
    feed.push((Side::Broker, Chunk::Data(&records[4].1)));
    feed.push((Side::Client, Chunk::Gap(lost as u64)));
    let junk_then_alert: Vec<u8> = [&[0x17u8, 0x03][..], &records[7].1].concat();
    feed.push((Side::Client, Chunk::Gap(2)));
    feed.push((Side::Client, Chunk::Data(&junk_then_alert)));
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let up = run(&mut layer, &feed);
    assert!(up.gaps.contains(&(Side::Client, UNKNOWN_LEN)));
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Resync { skipped: 2 })), 1, "{:?}", up.events);
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Alert { encrypted: true, .. })), 1, "{:?}", up.events);
}

#[test]
fn a_gap_inside_a_record_loses_only_that_record() {
    let records = rfc8448_records();
    let mut feed = whole(&records[..5]);
    let app = &records[5].1;
    feed.push((Side::Client, Chunk::Data(&app[..20])));
    feed.push((Side::Client, Chunk::Gap(10)));
    feed.push((Side::Client, Chunk::Data(&app[30..])));
    feed.push((Side::Client, Chunk::Data(&records[7].1)));
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let up = run(&mut layer, &feed);
    assert_eq!(up.count(|e| *e == TlsEvent::RecordLost { content_type: 23, len: 67 }), 1);
    assert_eq!(up.gaps, [(Side::Client, UNKNOWN_LEN)]);
    // The close_notify at seq 1 opens without probing.
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Alert { encrypted: true, .. })), 1);
    assert_eq!(layer.stats().decrypt_failures, 0);
}

#[test]
fn hostile_records_are_counted_errors() {
    let records = rfc8448_records();
    let mut feed = whole(&records[..2]);
    let empty = [23u8, 3, 3, 0, 0];
    let too_long = [23u8, 3, 3, 0x48, 0x01];
    let truncated_hello = [22u8, 3, 3, 0, 6, 1, 0, 0, 2, 3, 3];
    feed.push((Side::Client, Chunk::Data(&empty)));
    feed.push((Side::Client, Chunk::Data(&too_long)));
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let up = run(&mut layer, &feed);
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Error(TlsError::EmptyRecord { .. }))), 1);
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Error(TlsError::RecordTooLong { len: 0x4801 }))), 1);
    let mut layer = TlsLayer::new(None);
    let up = run(&mut layer, &[(Side::Client, Chunk::Data(&truncated_hello))]);
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Error(TlsError::BadHello(_)))), 1, "{:?}", up.events);
    assert_eq!(layer.stats().errors, 1);
}

#[test]
fn mid_stream_records_are_opaque_without_a_suite() {
    let records = rfc8448_records();
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let up = run(&mut layer, &whole(&records[5..6]));
    assert_eq!(
        up.events,
        [
            (Side::Client, TlsEvent::Encrypted { reason: EncryptedReason::HandshakeNotSeen }),
            (Side::Client, TlsEvent::Opaque { content_type: 23, len: 67, plaintext_len: None })
        ]
    );
}

/// A TLS 1.3 TLS_AES_128_GCM_SHA256 record sealed under `secret` (test-only: the layer never
/// encrypts), checked against RFC 8448 below.
fn seal13(secret: &[u8], seq: u64, inner_type: u8, plain: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use keys::{HashAlg, hkdf_expand_label};
    let key = hkdf_expand_label(HashAlg::Sha256, secret, b"key", 16).unwrap();
    let iv = hkdf_expand_label(HashAlg::Sha256, secret, b"iv", 12).unwrap();
    let mut nonce: [u8; 12] = iv.try_into().unwrap();
    for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *n ^= s;
    }
    let mut buf = plain.to_vec();
    buf.push(inner_type);
    let len = (buf.len() + 16) as u16;
    let header = [23, 3, 3, (len >> 8) as u8, len as u8];
    let aead = aes_gcm::Aes128Gcm::new_from_slice(&key).unwrap();
    let tag = aead.encrypt_inout_detached(&nonce.into(), &header, buf.as_mut_slice().into()).unwrap();
    [&header[..], &buf, &tag].concat()
}

#[test]
fn key_update_moves_the_sender_to_the_next_generation() {
    assert_eq!(seal13(&hex(C_AP), 0, 23, &(0u8..50).collect::<Vec<_>>()), hex(C_APP_REC), "the test sealer");
    let records = rfc8448_records();
    let gen1 = keys::hkdf_expand_label(keys::HashAlg::Sha256, &hex(C_AP), b"traffic upd", 32).unwrap();
    let gen2 = keys::hkdf_expand_label(keys::HashAlg::Sha256, &gen1, b"traffic upd", 32).unwrap();
    let mut feed: Vec<(Side, Vec<u8>)> = records[..7].to_vec();
    // KeyUpdate(update_not_requested) under generation 0 (seq 1), then data under generation 1,
    // another KeyUpdate, and data under generation 2.
    feed.push((Side::Client, seal13(&hex(C_AP), 1, 22, &[24, 0, 0, 1, 0])));
    feed.push((Side::Client, seal13(&gen1, 0, 23, &[0xc0, 0x00])));
    feed.push((Side::Client, seal13(&gen1, 1, 22, &[24, 0, 0, 1, 0])));
    feed.push((Side::Client, seal13(&gen2, 0, 23, &[0xe0, 0x00])));
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let up = run(&mut layer, &whole(&feed));
    let mut want: Vec<u8> = (0u8..50).collect();
    want.extend([0xc0, 0x00, 0xe0, 0x00]);
    assert_eq!(up.data[0], want);
    let updates: Vec<_> = up.events.iter().filter(|(_, e)| matches!(e, TlsEvent::KeyUpdate { .. })).collect();
    assert_eq!(
        updates,
        [
            &(Side::Client, TlsEvent::KeyUpdate { generation: 1 }),
            &(Side::Client, TlsEvent::KeyUpdate { generation: 2 })
        ]
    );
    assert_eq!(layer.stats().decrypt_failures, 0);
}

#[test]
fn keys_that_reach_the_key_log_late_are_picked_up_mid_session() {
    let records = rfc8448_records();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.log");
    std::fs::write(&path, "").unwrap();
    let log = Arc::new(KeyLog::open(&path).unwrap());
    let mut layer = TlsLayer::new(Some(log.clone()));
    let mut up = Collect::default();
    for (side, r) in &records[..5] {
        layer.feed(*side, Chunk::Data(r), &mut up);
    }
    assert_eq!(layer.encrypted_reason(), Some(EncryptedReason::NoKeyLogLine));
    // The client's line is written (and read) now: the next records decrypt.
    std::fs::write(
        &path,
        format!(
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET {CLIENT_RANDOM} {C_HS}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {CLIENT_RANDOM} {S_HS}\n\
             CLIENT_TRAFFIC_SECRET_0 {CLIENT_RANDOM} {C_AP}\nSERVER_TRAFFIC_SECRET_0 {CLIENT_RANDOM} {S_AP}\n"
        ),
    )
    .unwrap();
    assert_eq!(log.refresh().unwrap(), 4);
    for (side, r) in &records[5..] {
        layer.feed(*side, Chunk::Data(r), &mut up);
    }
    let payload: Vec<u8> = (0u8..50).collect();
    assert_eq!(up.data, [payload.clone(), payload]);
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Decrypting { .. })), 1);
    assert_eq!(layer.encrypted_reason(), None);
}

#[test]
fn a_followed_key_log_is_read_when_a_session_misses_its_keys() {
    use std::io::Write;
    // `live`: the key log is read once a second, but the client writes its lines during the
    // handshake and sends its Finished and CONNECT right after: the CONNECT must decrypt too.
    // OpenSSL writes CLIENT_TRAFFIC_SECRET_0 last, after its Finished may be on the wire.
    let records = rfc8448_records();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.log");
    let log = Arc::new(KeyLog::follow(&path).unwrap());
    let mut layer = TlsLayer::new(Some(log.clone()));
    let mut up = Collect::default();
    for (side, r) in &records[..3] {
        layer.feed(*side, Chunk::Data(r), &mut up);
    }
    assert_eq!(layer.encrypted_reason(), Some(EncryptedReason::NoKeyLogLine));
    let mut f = std::fs::File::create(&path).unwrap();
    write!(
        f,
        "SERVER_HANDSHAKE_TRAFFIC_SECRET {CLIENT_RANDOM} {S_HS}\nSERVER_TRAFFIC_SECRET_0 {CLIENT_RANDOM} {S_AP}\n\
         CLIENT_HANDSHAKE_TRAFFIC_SECRET {CLIENT_RANDOM} {C_HS}\n"
    )
    .unwrap();
    // No scheduled refresh: the records themselves make the key log read the file; handshake
    // secrets without the client's traffic secret are not enough to decrypt MQTT.
    for (side, r) in &records[3..5] {
        layer.feed(*side, Chunk::Data(r), &mut up);
    }
    assert_eq!(log.stats().secrets, 3, "the client's Finished made the key log read the file");
    writeln!(f, "CLIENT_TRAFFIC_SECRET_0 {CLIENT_RANDOM} {C_AP}").unwrap();
    for (side, r) in &records[5..] {
        layer.feed(*side, Chunk::Data(r), &mut up);
    }
    let payload: Vec<u8> = (0u8..50).collect();
    assert_eq!(up.data, [payload.clone(), payload], "{up:?}");
    // The server's flight, the client's Finished and the NewSessionTicket went by.
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Opaque { .. })), 3, "{up:?}");
    assert_eq!(layer.encrypted_reason(), None);
    // A key log from `open` (`analyze`) had all its lines when opened: a miss reads nothing more.
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "").unwrap();
    let opened = Arc::new(KeyLog::open(&empty).unwrap());
    std::fs::copy(&path, &empty).unwrap();
    let mut layer = TlsLayer::new(Some(opened));
    let mut up = Collect::default();
    for (side, r) in &records {
        layer.feed(*side, Chunk::Data(r), &mut up);
    }
    assert_eq!(up.data, [Vec::<u8>::new(), Vec::new()]);
}

/// A TLS 1.2 hello pair without extensions: session id `sid` both ways, the server picks `suite`.
fn tls12_hellos(client_sid: &[u8], server_sid: &[u8], suite: u16) -> [(Side, Vec<u8>); 2] {
    let hello = |msg_type: u8, random: u8, sid: &[u8], suites: &[u8]| {
        let mut body = vec![3, 3];
        body.extend([random; 32]);
        body.push(sid.len() as u8);
        body.extend_from_slice(sid);
        body.extend_from_slice(suites);
        let mut msg = vec![msg_type, 0, 0, body.len() as u8];
        msg.extend(body);
        let mut rec = vec![22, 3, 3, 0, msg.len() as u8];
        rec.extend(msg);
        rec
    };
    let s = suite.to_be_bytes();
    [
        (Side::Client, hello(1, 0x11, client_sid, &[0, 4, 0xc0, 0x2f, 0xc0, 0x13, 1, 0])),
        (Side::Broker, hello(2, 0x22, server_sid, &[s[0], s[1], 0])),
    ]
}

#[test]
fn sessions_without_usable_keys_say_why() {
    let master = Arc::new(KeyLog::parse(&format!("CLIENT_RANDOM {} {}\n", "11".repeat(32), "33".repeat(48))));
    let empty = Arc::new(KeyLog::parse(""));
    let cases = [
        (tls12_hellos(&[], &[7; 32], 0xc013), &master, EncryptedReason::UnsupportedSuite(0xc013)),
        (tls12_hellos(&[7; 32], &[7; 32], 0xc02f), &empty, EncryptedReason::ResumptionWithoutKeys),
        (tls12_hellos(&[7; 32], &[8; 32], 0xc02f), &empty, EncryptedReason::NoKeyLogLine),
    ];
    for (hellos, log, reason) in cases {
        let mut layer = TlsLayer::new(Some(log.clone()));
        let up = run(&mut layer, &whole(&hellos));
        assert_eq!(up.count(|e| *e == TlsEvent::Encrypted { reason }), 1, "{reason:?}: {:?}", up.events);
        assert_eq!(layer.stats().errors, 0);
    }
    // With the master secret and an AEAD suite: keys are derived (activated at ChangeCipherSpec).
    let mut layer = TlsLayer::new(Some(master));
    let up = run(&mut layer, &whole(&tls12_hellos(&[], &[7; 32], 0xc02f)));
    assert_eq!(up.count(|e| *e == TlsEvent::Decrypting { version: TLS12, suite: 0xc02f }), 1);
}

/// A TLS 1.2 AES-128-GCM record (RFC 5288) sealed under `key`/`salt` (test-only), its explicit
/// nonce the sequence number as OpenSSL sends it.
fn seal12(key: &[u8], salt: &[u8], seq: u64, content_type: u8, plain: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(salt);
    nonce[4..].copy_from_slice(&seq.to_be_bytes());
    let mut aad = seq.to_be_bytes().to_vec();
    aad.extend([content_type, 3, 3]);
    aad.extend((plain.len() as u16).to_be_bytes());
    let mut buf = plain.to_vec();
    let aead = aes_gcm::Aes128Gcm::new_from_slice(key).unwrap();
    let tag = aead.encrypt_inout_detached(&nonce.into(), &aad, buf.as_mut_slice().into()).unwrap();
    let len = (8 + buf.len() + 16) as u16;
    [&[content_type, 3, 3, (len >> 8) as u8, len as u8][..], &seq.to_be_bytes(), &buf, &tag].concat()
}

#[test]
fn tls12_gcm_resumes_after_a_long_gap_from_the_explicit_nonce() {
    // A TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256 session: the hellos, both ChangeCipherSpecs, the
    // Finished messages, then 100 client PINGREQs. Records 1..=80 are lost in one TCP gap, more
    // than SEQ_PROBE: the explicit nonce says where the sequence stands.
    let master = vec![0x33; 48];
    let log = Arc::new(KeyLog::parse(&format!("CLIENT_RANDOM {} {}\n", "11".repeat(32), "33".repeat(48))));
    let mut seed = [0x22u8; 32].to_vec(); // server random, then client random
    seed.extend([0x11; 32]);
    let block = keys::prf(keys::HashAlg::Sha256, &master, b"key expansion", &seed, 40);
    let (ckey, skey, csalt, ssalt) = (&block[..16], &block[16..32], &block[32..36], &block[36..40]);
    let ccs = vec![20, 3, 3, 0, 1, 1];
    let finished = [20u8, 0, 0, 12].iter().copied().chain([0xf1; 12]).collect::<Vec<_>>();
    let [ch, sh] = tls12_hellos(&[], &[7; 32], 0xc02f);
    let mut feed = vec![ch, sh];
    feed.push((Side::Client, ccs.clone()));
    feed.push((Side::Client, seal12(ckey, csalt, 0, 22, &finished)));
    feed.push((Side::Broker, ccs));
    feed.push((Side::Broker, seal12(skey, ssalt, 0, 22, &finished)));
    let pings: Vec<Vec<u8>> = (1..=100).map(|seq| seal12(ckey, csalt, seq, 23, &[0xc0, 0x00])).collect();
    let lost: u64 = pings[..80].iter().map(|r| r.len() as u64).sum();
    let mut layer = TlsLayer::new(Some(log));
    let mut up = run(&mut layer, &whole(&feed));
    layer.feed(Side::Client, Chunk::Gap(lost), &mut up);
    for r in &pings[80..] {
        layer.feed(Side::Client, Chunk::Data(r), &mut up);
    }
    assert_eq!(up.data[0], [0xc0, 0x00].repeat(20), "{:?}", up.events);
    assert_eq!(layer.stats().decrypt_failures, 0);
    assert_eq!(layer.stats().decrypted, 2 + 20, "both Finished messages and the 20 pings");
    assert_eq!(up.count(|e| matches!(e, TlsEvent::Resync { skipped: 0 })), 1);
}

/// Feeds the RFC 8448 conversation with each side's stream cut at `cuts` (positions in that
/// side's stream), coalescing records between cuts; returns the plaintext.
fn run_cut(cuts: &[usize]) -> ([Vec<u8>; 2], TlsStats) {
    let records = rfc8448_records();
    let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
    let mut up: Collect = Collect::default();
    // Per side: the concatenated stream, fed in pieces, interleaved in record order so each side
    // still sees the other's ServerHello first (a piece may hold several records).
    let mut pos = [0usize; 2];
    let mut streams: [Vec<u8>; 2] = Default::default();
    let mut ends: Vec<(Side, usize)> = Vec::new();
    for (side, r) in &records {
        streams[idx(*side)].extend_from_slice(r);
        ends.push((*side, streams[idx(*side)].len()));
    }
    for (side, end) in ends {
        let i = idx(side);
        let mut at = pos[i];
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|c| *c > at && *c < end).collect();
        bounds.sort_unstable();
        bounds.dedup();
        bounds.push(end);
        for b in bounds {
            layer.feed(side, Chunk::Data(&streams[i][at..b]), &mut up);
            at = b;
        }
        pos[i] = end;
    }
    (up.data, *layer.stats())
}

#[test]
fn split_at_every_single_position_gives_the_same_plaintext() {
    let (want, _) = run_cut(&[]);
    assert_eq!(want[0].len(), 50);
    for cut in 1..1200 {
        let (got, stats) = run_cut(&[cut]);
        assert_eq!(got, want, "cut at {cut}");
        assert_eq!(stats.decrypt_failures, 0);
    }
}

proptest! {
    #[test]
    fn split_and_coalesced_anyhow_gives_the_same_plaintext(cuts in proptest::collection::vec(1usize..1200, 0..40)) {
        let (got, stats) = run_cut(&cuts);
        let payload: Vec<u8> = (0u8..50).collect();
        prop_assert_eq!(got, [payload.clone(), payload]);
        prop_assert_eq!(stats.decrypt_failures, 0);
    }

    #[test]
    fn arbitrary_bytes_and_gaps_never_panic_and_stay_bounded(
        pieces in proptest::collection::vec((any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..3000), 0u64..40_000), 0..30)
    ) {
        let records = rfc8448_records();
        let mut layer = TlsLayer::new(Some(rfc8448_keylog()));
        let mut up = Collect::default();
        for (side, r) in &records[..3] {
            layer.feed(*side, Chunk::Data(r), &mut up);
        }
        for (client, gap, mut bytes, n) in pieces {
            let side = if client { Side::Client } else { Side::Broker };
            if gap {
                layer.feed(side, Chunk::Gap(n), &mut up);
            } else {
                // Sometimes a plausible header with a hostile length.
                if n % 3 == 0 && bytes.len() >= 5 {
                    bytes[..5].copy_from_slice(&[23, 3, 3, (n >> 8) as u8, n as u8]);
                }
                layer.feed(side, Chunk::Data(&bytes), &mut up);
            }
            prop_assert!(layer.buffered() <= 4 * (record::HUNT_WINDOW + 3000), "{}", layer.buffered());
        }
    }
}
