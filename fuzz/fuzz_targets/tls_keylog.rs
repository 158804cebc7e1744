//! The TLS key log parser (`layer::tls::keylog`): any text as an SSLKEYLOGFILE.
//!
//! Checks, against a line-by-line model: each line is a secret, skipped or malformed, never two;
//! the whole text's counts are the sums of its lines'; a line reported malformed keeps nothing
//! (no session, no secret, the generation unchanged); a secret line keeps exactly its secret,
//! under its client random and label, and the whole log holds, for each client random and label,
//! the secret of the last such line; nothing else is kept (the number of sessions is that of
//! distinct randoms with a secret line).
#![no_main]
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use mqtt_keepalive::layer::tls::{KeyLog, Secret, SessionKeys};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn slot<'a>(keys: &'a mut SessionKeys, label: &str) -> &'a mut Option<Secret> {
    match label {
        "CLIENT_RANDOM" => &mut keys.master,
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut keys.client_handshake,
        "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut keys.server_handshake,
        "CLIENT_TRAFFIC_SECRET_0" => &mut keys.client_traffic,
        "SERVER_TRAFFIC_SECRET_0" => &mut keys.server_traffic,
        other => panic!("a secret under label {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let log = KeyLog::parse(&text);
    let stats = log.stats();
    let (mut secrets, mut malformed) = (0, 0);
    let mut model: HashMap<[u8; 32], SessionKeys> = HashMap::new();
    for line in text.lines() {
        let one = KeyLog::parse(line);
        let s = one.stats();
        assert!(s.secrets + s.malformed <= 1, "{line:?}: {s:?}");
        secrets += s.secrets;
        malformed += s.malformed;
        if s.malformed == 1 || s.secrets == 0 {
            assert_eq!((s.sessions, s.secrets, one.generation()), (0, 0, 0), "{line:?} kept something");
            continue;
        }
        // A secret line: LABEL RANDOM SECRET, as the parser read it.
        let parts: Vec<&str> = line.trim().split_ascii_whitespace().collect();
        let [label, random, secret] = parts[..] else { panic!("{line:?} kept with {} fields", parts.len()) };
        let random: [u8; 32] = unhex(random).try_into().unwrap();
        let secret = Secret::new(unhex(secret));
        assert!(!secret.is_empty() && secret.len() <= 64);
        let mut want = SessionKeys::default();
        *slot(&mut want, label) = Some(secret.clone());
        assert_eq!(s.sessions, 1);
        assert_eq!(one.lookup(&random), Some(want), "{line:?}");
        *slot(model.entry(random).or_default(), label) = Some(secret);
    }
    assert_eq!((stats.secrets, stats.malformed, stats.sessions), (secrets, malformed, model.len()));
    assert_eq!(log.generation(), secrets);
    for (random, keys) in &model {
        assert_eq!(log.lookup(random).as_ref(), Some(keys));
    }
});
