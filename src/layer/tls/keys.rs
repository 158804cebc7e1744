//! Record protection: cipher suites, key derivation and AEAD record decryption.
//!
//! Contract: from a traffic secret (TLS 1.3: HKDF-Expand-Label, RFC 8446 §7.1/§7.3) or a master
//! secret and the two hello randoms (TLS 1.2: the RFC 5246 §5 PRF "key expansion"), builds the
//! read state of one direction ([`RecordKeys`]) and opens that direction's records in order:
//! nonce = IV xor sequence number (TLS 1.3, TLS 1.2 ChaCha20-Poly1305, RFC 7905) or salt ||
//! explicit nonce (TLS 1.2 AES-GCM, RFC 5288), the record header (1.3) or sequence number, type,
//! version and plaintext length (1.2) as associated data. The AEADs, HMAC, HKDF and SHA-2 are the
//! RustCrypto crates' own; this module only derives, builds nonces and counts. Secrets live in
//! [`Secret`], whose `Debug` never prints them.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384};

/// Bytes of an AEAD tag (all supported suites).
pub const TAG_LEN: usize = 16;
/// Bytes of the explicit nonce that precedes a TLS 1.2 AES-GCM record's ciphertext.
pub const EXPLICIT_NONCE_LEN: usize = 8;

/// Key material: a secret, an AEAD key or a master secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps key material.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
    /// The material (for derivation only; never format it).
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// The AEAD of a suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Cipher {
    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => 32,
        }
    }
}

/// The hash of a suite's key schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
}

impl HashAlg {
    /// Output length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
        }
    }
}

/// A cipher suite this layer can decrypt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// The IANA code point.
    pub id: u16,
    pub cipher: Cipher,
    pub hash: HashAlg,
    /// A TLS 1.3 suite (else TLS 1.2).
    pub tls13: bool,
}

impl Suite {
    /// The suite for an IANA code point, if it is one of the supported AEAD suites.
    pub fn from_id(id: u16) -> Option<Suite> {
        use Cipher::*;
        use HashAlg::*;
        let (cipher, hash, tls13) = match id {
            0x1301 => (Aes128Gcm, Sha256, true),
            0x1302 => (Aes256Gcm, Sha384, true),
            0x1303 => (ChaCha20Poly1305, Sha256, true),
            // ECDHE_RSA / ECDHE_ECDSA / DHE_RSA / RSA with AES-128-GCM-SHA256.
            0xC02F | 0xC02B | 0x009E | 0x009C => (Aes128Gcm, Sha256, false),
            // The same with AES-256-GCM-SHA384.
            0xC030 | 0xC02C | 0x009F | 0x009D => (Aes256Gcm, Sha384, false),
            // ECDHE_RSA / ECDHE_ECDSA / DHE_RSA with ChaCha20-Poly1305-SHA256 (RFC 7905).
            0xCCA8..=0xCCAA => (ChaCha20Poly1305, Sha256, false),
            _ => return None,
        };
        Some(Suite { id, cipher, hash, tls13 })
    }

    /// Bytes a record of this suite adds to its plaintext (TLS 1.3: tag and the inner content
    /// type byte, assuming no padding; TLS 1.2: tag, plus the explicit nonce for AES-GCM).
    pub fn overhead(self) -> usize {
        match (self.tls13, self.cipher) {
            (true, _) => TAG_LEN + 1,
            (false, Cipher::ChaCha20Poly1305) => TAG_LEN,
            (false, _) => TAG_LEN + EXPLICIT_NONCE_LEN,
        }
    }
}

/// A suite's name, for the ones this layer knows by number.
pub fn suite_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0xC02F => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xC02B => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xC030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xC02C => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xCCA8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xCCA9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xCCAA => "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0x009E => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009F => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0x009C => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009D => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0xC013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xC014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xC027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xC028 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        0x002F => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        _ => return None,
    })
}

/// Why key material could not be derived (a secret of the wrong length in the key log).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a secret of {got} bytes does not fit {what}")]
pub struct KeyError {
    pub what: &'static str,
    pub got: usize,
}

/// HKDF-Expand-Label(secret, label, "", len) of RFC 8446 §7.1.
pub fn hkdf_expand_label(hash: HashAlg, secret: &[u8], label: &[u8], len: usize) -> Result<Vec<u8>, KeyError> {
    let bad = KeyError { what: "the suite's hash", got: secret.len() };
    let mut info = Vec::with_capacity(4 + 6 + label.len());
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push((6 + label.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0); // empty context
    let mut out = vec![0; len];
    let ok = match hash {
        HashAlg::Sha256 => Hkdf::<Sha256>::from_prk(secret).map_err(|_| bad)?.expand(&info, &mut out).is_ok(),
        HashAlg::Sha384 => Hkdf::<Sha384>::from_prk(secret).map_err(|_| bad)?.expand(&info, &mut out).is_ok(),
    };
    if ok { Ok(out) } else { Err(bad) }
}

/// The TLS 1.2 PRF of RFC 5246 §5: P_hash(secret, label + seed), `len` bytes.
pub fn prf(hash: HashAlg, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    match hash {
        HashAlg::Sha256 => p_hash::<Hmac<Sha256>>(secret, label, seed, len),
        HashAlg::Sha384 => p_hash::<Hmac<Sha384>>(secret, label, seed, len),
    }
}

fn p_hash<M: Mac + KeyInit + Clone>(secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    // HMAC takes keys of any length, so new_from_slice cannot fail here.
    let Ok(keyed) = <M as KeyInit>::new_from_slice(secret) else { return Vec::new() };
    let mut out = Vec::with_capacity(len + 64);
    // A(1) = HMAC(secret, label + seed); A(i) = HMAC(secret, A(i-1)).
    let mut a = {
        let mut m = keyed.clone();
        m.update(label);
        m.update(seed);
        m.finalize().into_bytes().to_vec()
    };
    while out.len() < len {
        let mut m = keyed.clone();
        m.update(&a);
        m.update(label);
        m.update(seed);
        out.extend_from_slice(&m.finalize().into_bytes());
        let mut m = keyed.clone();
        m.update(&a);
        a = m.finalize().into_bytes().to_vec();
    }
    out.truncate(len);
    out
}

/// An AEAD instance, keyed.
#[derive(Clone)]
enum Aead {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Aead {
    fn new(cipher: Cipher, key: &[u8]) -> Result<Aead, KeyError> {
        let bad = KeyError { what: "the cipher's key", got: key.len() };
        Ok(match cipher {
            Cipher::Aes128Gcm => Aead::Aes128(Box::new(Aes128Gcm::new_from_slice(key).map_err(|_| bad)?)),
            Cipher::Aes256Gcm => Aead::Aes256(Box::new(Aes256Gcm::new_from_slice(key).map_err(|_| bad)?)),
            Cipher::ChaCha20Poly1305 => Aead::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).map_err(|_| bad)?)),
        })
    }

    /// Decrypts `buf` (ciphertext then tag) in place; true when the tag is right.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> bool {
        let Some(split) = buf.len().checked_sub(TAG_LEN) else { return false };
        let (ct, tag) = buf.split_at_mut(split);
        let tag: &[u8] = tag;
        let Ok(tag) = tag.try_into() else { return false };
        match self {
            Aead::Aes128(a) => a.decrypt_inout_detached(nonce.into(), aad, ct.into(), tag).is_ok(),
            Aead::Aes256(a) => a.decrypt_inout_detached(nonce.into(), aad, ct.into(), tag).is_ok(),
            Aead::ChaCha(a) => a.decrypt_inout_detached(nonce.into(), aad, ct.into(), tag).is_ok(),
        }
    }
}

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aead(<redacted>)")
    }
}

/// The read state of one direction: key, IV, next sequence number (and, in TLS 1.3, the traffic
/// secret, for KeyUpdate). `Debug` shows the suite and counters only.
#[derive(Clone)]
pub struct RecordKeys {
    suite: Suite,
    aead: Aead,
    iv: [u8; 12],
    /// The sequence number of the next record.
    pub seq: u64,
    /// TLS 1.3: the traffic secret these keys come from.
    secret: Option<Secret>,
    /// TLS 1.3: how many KeyUpdates led here (0: the handshake or first application keys).
    pub generation: u32,
}

impl std::fmt::Debug for RecordKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordKeys")
            .field("suite", &format_args!("{:#06x}", self.suite.id))
            .field("seq", &self.seq)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What opening a record gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// The plaintext (TLS 1.3: with the inner content type and padding removed) and its real
    /// content type.
    Plain { content_type: u8, len: usize },
    /// The tag did not verify.
    BadTag,
}

impl RecordKeys {
    /// TLS 1.3 keys from a traffic secret (RFC 8446 §7.3).
    pub fn tls13(suite: Suite, secret: &Secret) -> Result<RecordKeys, KeyError> {
        let want = suite.hash.output_len();
        if secret.len() != want {
            return Err(KeyError { what: "the suite's hash", got: secret.len() });
        }
        let key = hkdf_expand_label(suite.hash, secret.expose(), b"key", suite.cipher.key_len())?;
        let iv = hkdf_expand_label(suite.hash, secret.expose(), b"iv", 12)?;
        Ok(RecordKeys {
            suite,
            aead: Aead::new(suite.cipher, &key)?,
            iv: iv.try_into().map_err(|_| KeyError { what: "an IV", got: 0 })?,
            seq: 0,
            secret: Some(secret.clone()),
            generation: 0,
        })
    }

    /// The keys after a KeyUpdate: the next traffic secret ("traffic upd"), sequence 0.
    pub fn next_generation(&self) -> Result<RecordKeys, KeyError> {
        let Some(secret) = &self.secret else { return Err(KeyError { what: "a TLS 1.3 secret", got: 0 }) };
        let next = Secret::new(hkdf_expand_label(
            self.suite.hash,
            secret.expose(),
            b"traffic upd",
            self.suite.hash.output_len(),
        )?);
        let mut keys = RecordKeys::tls13(self.suite, &next)?;
        keys.generation = self.generation.saturating_add(1);
        Ok(keys)
    }

    /// TLS 1.2 keys of both directions, (client write, server write), from the master secret
    /// (RFC 5246 §6.3; AEAD suites have no MAC keys, RFC 5288 §3 / RFC 7905 §2).
    pub fn tls12(
        suite: Suite,
        master: &Secret,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Result<(RecordKeys, RecordKeys), KeyError> {
        if master.len() != 48 {
            return Err(KeyError { what: "a TLS 1.2 master secret", got: master.len() });
        }
        let key_len = suite.cipher.key_len();
        let iv_len = if suite.cipher == Cipher::ChaCha20Poly1305 { 12 } else { 4 };
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(server_random);
        seed[32..].copy_from_slice(client_random);
        let block = prf(suite.hash, master.expose(), b"key expansion", &seed, 2 * (key_len + iv_len));
        let (ck, rest) = block.split_at(key_len);
        let (sk, rest) = rest.split_at(key_len);
        let (civ, siv) = rest.split_at(iv_len);
        let make = |key: &[u8], iv: &[u8]| -> Result<RecordKeys, KeyError> {
            let mut full = [0u8; 12];
            full[..iv.len()].copy_from_slice(iv);
            Ok(RecordKeys { suite, aead: Aead::new(suite.cipher, key)?, iv: full, seq: 0, secret: None, generation: 0 })
        };
        Ok((make(ck, civ)?, make(sk, siv)?))
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Opens the record (`header` its 5 bytes, `body` its fragment, decrypted in place) with
    /// sequence number `seq`; does not advance the sequence number.
    pub fn open_at(&self, seq: u64, header: &[u8; 5], body: &mut [u8]) -> Opened {
        if self.suite.tls13 {
            let nonce = xor_seq(&self.iv, seq);
            if !self.aead.open(&nonce, header, body) {
                return Opened::BadTag;
            }
            // TLSInnerPlaintext: content, content type (non-zero), zero padding.
            let plain = &body[..body.len() - TAG_LEN];
            match plain.iter().rposition(|&b| b != 0) {
                Some(at) => Opened::Plain { content_type: plain[at], len: at },
                None => Opened::BadTag, // all padding: RFC 8446 §5.4 says unexpected_message
            }
        } else {
            let (nonce, start) = match self.suite.cipher {
                Cipher::ChaCha20Poly1305 => (xor_seq(&self.iv, seq), 0),
                _ => {
                    if body.len() < EXPLICIT_NONCE_LEN {
                        return Opened::BadTag;
                    }
                    let mut n = self.iv;
                    n[4..].copy_from_slice(&body[..EXPLICIT_NONCE_LEN]);
                    (n, EXPLICIT_NONCE_LEN)
                }
            };
            let Some(plain_len) = body.len().checked_sub(start + TAG_LEN) else { return Opened::BadTag };
            let mut aad = [0u8; 13];
            aad[..8].copy_from_slice(&seq.to_be_bytes());
            aad[8..11].copy_from_slice(&header[..3]);
            aad[11..].copy_from_slice(&(plain_len as u16).to_be_bytes());
            if !self.aead.open(&nonce, &aad, &mut body[start..]) {
                return Opened::BadTag;
            }
            if start > 0 {
                body.copy_within(start..start + plain_len, 0);
            }
            Opened::Plain { content_type: header[0], len: plain_len }
        }
    }

    /// The TLS 1.2 AES-GCM explicit nonce of a record, read as a sequence number (OpenSSL and
    /// most stacks send the sequence number there): a hint for resynchronising after a gap.
    pub fn explicit_seq_hint(&self, body: &[u8]) -> Option<u64> {
        if self.suite.tls13 || self.suite.cipher == Cipher::ChaCha20Poly1305 {
            return None;
        }
        Some(u64::from_be_bytes(body.get(..8)?.try_into().ok()?))
    }
}

fn xor_seq(iv: &[u8; 12], seq: u64) -> [u8; 12] {
    let mut n = *iv;
    for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    n
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
    }

    // RFC 8448 §3 (Simple 1-RTT Handshake, TLS_AES_128_GCM_SHA256).
    pub(crate) const C_HS: &str = "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21";
    pub(crate) const S_HS: &str = "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38";
    pub(crate) const C_AP: &str = "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5";
    pub(crate) const S_AP: &str = "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643";
    pub(crate) const C_APP_REC: &str = "17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea
        42 f9 14 aa 66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b
        62 97 4e 1f 5a 62 92 a2 97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4";
    pub(crate) const S_APP_REC: &str = "17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc
        32 25 d0 5f 82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8
        fc c4 9c 4b f2 e5 f0 a2 1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d";
    pub(crate) const C_FIN_REC: &str = "17 03 03 00 35 75 ec 4d c2 38 cc e6 0b 29 80 44 a7 1e 21 9c 56 cc 77 b0
        51 7f e9 b9 3c 7a 4b fc 44 d8 7f 38 f8 03 38 ac 98 fc 46 de b3 84 bd 1c
        ae ac ab 68 67 d7 26 c4 05 46";
    pub(crate) const C_ALERT_REC: &str = "17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3";

    fn open(keys: &RecordKeys, seq: u64, record: &[u8]) -> Option<(u8, Vec<u8>)> {
        let header: [u8; 5] = record[..5].try_into().unwrap();
        let mut body = record[5..].to_vec();
        match keys.open_at(seq, &header, &mut body) {
            Opened::Plain { content_type, len } => Some((content_type, body[..len].to_vec())),
            Opened::BadTag => None,
        }
    }

    #[test]
    fn rfc8448_traffic_keys_and_ivs() {
        // {server} derive write traffic keys for handshake data.
        let key = hkdf_expand_label(HashAlg::Sha256, &hex(S_HS), b"key", 16).unwrap();
        let iv = hkdf_expand_label(HashAlg::Sha256, &hex(S_HS), b"iv", 12).unwrap();
        assert_eq!(key, hex("3fce516009c21727d0f2e4e86ee403bc"));
        assert_eq!(iv, hex("5d313eb2671276ee13000b30"));
        // {client} derive write traffic keys for application data.
        assert_eq!(
            hkdf_expand_label(HashAlg::Sha256, &hex(C_AP), b"key", 16).unwrap(),
            hex("17422dda596ed5d9acd890e3c63f5051")
        );
        assert_eq!(hkdf_expand_label(HashAlg::Sha256, &hex(C_AP), b"iv", 12).unwrap(), hex("5b78923dee08579033e523d9"));
        assert_eq!(
            hkdf_expand_label(HashAlg::Sha256, &hex(S_AP), b"key", 16).unwrap(),
            hex("9f02283b6c9c07efc26bb9f2ac92e356")
        );
        assert_eq!(hkdf_expand_label(HashAlg::Sha256, &hex(C_HS), b"iv", 12).unwrap(), hex("5bd3c71b836e0b76bb73265f"));
    }

    #[test]
    fn rfc8448_records_open_with_the_right_sequence_number_only() {
        let suite = Suite::from_id(0x1301).unwrap();
        let client_hs = RecordKeys::tls13(suite, &Secret::new(hex(C_HS))).unwrap();
        let (ty, fin) = open(&client_hs, 0, &hex(C_FIN_REC)).unwrap();
        assert_eq!((ty, fin[0], fin.len()), (22, 20, 36), "handshake: Finished, 32-byte verify_data");
        let client_ap = RecordKeys::tls13(suite, &Secret::new(hex(C_AP))).unwrap();
        assert_eq!(open(&client_ap, 0, &hex(C_APP_REC)), Some((23, (0u8..50).collect())));
        assert_eq!(open(&client_ap, 1, &hex(C_APP_REC)), None, "wrong sequence number");
        assert_eq!(open(&client_ap, 1, &hex(C_ALERT_REC)), Some((21, vec![1, 0])), "close_notify");
        let server_ap = RecordKeys::tls13(suite, &Secret::new(hex(S_AP))).unwrap();
        // The server's seq 0 is its NewSessionTicket.
        assert_eq!(open(&server_ap, 1, &hex(S_APP_REC)), Some((23, (0u8..50).collect())));
        let mut tampered = hex(C_APP_REC);
        tampered[20] ^= 1;
        assert_eq!(open(&client_ap, 0, &tampered), None);
    }

    #[test]
    fn key_update_derives_the_next_secret() {
        // RFC 8446 §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length).
        let suite = Suite::from_id(0x1301).unwrap();
        let gen0 = RecordKeys::tls13(suite, &Secret::new(hex(C_AP))).unwrap();
        let gen1 = gen0.next_generation().unwrap();
        let next = hkdf_expand_label(HashAlg::Sha256, &hex(C_AP), b"traffic upd", 32).unwrap();
        let direct = RecordKeys::tls13(suite, &Secret::new(next)).unwrap();
        assert_eq!((gen1.generation, gen1.iv, gen1.seq), (1, direct.iv, 0));
        assert_ne!(gen1.iv, gen0.iv);
    }

    #[test]
    fn tls12_prf_matches_the_published_sha256_vector() {
        // The TLS 1.2 PRF vector posted to the IETF TLS WG list (2010), also in mbedTLS and Botan.
        let out = prf(
            HashAlg::Sha256,
            &hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35"),
            b"test label",
            &hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c"),
            100,
        );
        assert_eq!(
            out,
            hex("e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af
                 0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701
                 87347b66")
        );
    }

    #[test]
    fn tls12_prf_sha384_matches_openssl() {
        // `openssl kdf -keylen 48 -kdfopt digest:SHA2-384 -kdfopt key:secret -kdfopt seed:seed TLS1-PRF`
        // (the label is the start of the seed there).
        let out = prf(HashAlg::Sha384, b"secret", b"test ", b"label", 48);
        assert_eq!(out, hex(SHA384_OPENSSL));
    }
    const SHA384_OPENSSL: &str =
        "90DD2147856B5DF946022220D6570053C9FF60645A8E121AF3CC0DED2BE5A1FAD8F7C452BB352C77C3BD97EC93ADFDE4";

    #[test]
    fn secrets_never_print() {
        let s = Secret::new(vec![0xab; 32]);
        let keys = RecordKeys::tls13(Suite::from_id(0x1301).unwrap(), &s).unwrap();
        for text in [format!("{s:?}"), format!("{keys:?}"), format!("{keys:#?}")] {
            assert!(
                !text.to_lowercase().contains("ab, 171") && !text.contains("171") && !text.contains("abab"),
                "{text}"
            );
        }
    }
}
