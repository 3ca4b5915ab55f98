//! API keys: format, checksum, generation and the lookup handle.
//!
//! A key is `osir_<env>_<32 chars of [a-z0-9]>`: 25 random characters then a
//! 7-character checksum (CRC-32/IEEE of everything before it, base 36,
//! zero-padded). The checksum lets the gateway refuse invented keys without
//! asking the store, and lets secret scanners recognise real ones.
//!
//! Invariant: an [`ApiKey`] never prints itself. `Debug` and `Display` show
//! only the hint (`osir_live_…o5p6`); the only things derived from it that
//! leave the process are its [`KeyHash`] and that hint.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Total length of a key: `osir_` + 4-letter env + `_` + 32.
pub const KEY_LEN: usize = 42;
const RANDOM_LEN: usize = 25;
const CHECK_LEN: usize = 7;
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Which world a key acts in: live keys cost real money, test keys never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    /// Real charges.
    Live,
    /// Sandboxed; may be routed to an upstream's `test_url`.
    Test,
}

impl Env {
    /// The word used in keys, records and the `X-Osir-Env` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Live => "live",
            Env::Test => "test",
        }
    }

    /// Parses `live` or `test` (exactly; keys are lowercase).
    pub fn parse(s: &str) -> Option<Env> {
        match s {
            "live" => Some(Env::Live),
            "test" => Some(Env::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a presented credential is not a well-formed key. Never carries the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    /// Wrong length, prefix, environment or alphabet.
    #[error("malformed API key")]
    Malformed,
    /// Well-formed, but the last 7 characters are not the checksum.
    #[error("API key checksum does not match")]
    BadChecksum,
}

/// A syntactically valid API key, held on the stack (no allocation).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    bytes: [u8; KEY_LEN],
}

impl ApiKey {
    /// Validates the shape (and the checksum when `verify_checksum`), so a
    /// malformed key is refused before any store lookup.
    pub fn parse(text: &str, verify_checksum: bool) -> Result<ApiKey, KeyFormatError> {
        let b = text.as_bytes();
        if b.len() != KEY_LEN || !b.starts_with(b"osir_") || b[9] != b'_' {
            return Err(KeyFormatError::Malformed);
        }
        if &b[5..9] != b"live" && &b[5..9] != b"test" {
            return Err(KeyFormatError::Malformed);
        }
        // Every byte looked at, without a branch: the compiler checks
        // several at a time.
        let alphabet = b[10..].iter().fold(true, |ok, c| {
            ok & (c.wrapping_sub(b'a') < 26 || c.wrapping_sub(b'0') < 10)
        });
        if !alphabet {
            return Err(KeyFormatError::Malformed);
        }
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(b);
        if verify_checksum {
            let expected = checksum(&bytes[..KEY_LEN - CHECK_LEN]);
            if bytes[KEY_LEN - CHECK_LEN..] != expected {
                return Err(KeyFormatError::BadChecksum);
            }
        }
        Ok(ApiKey { bytes })
    }

    /// A new key from the OS CSPRNG, uniform over `[a-z0-9]` (rejection
    /// sampling, so no modulo bias), with its checksum.
    pub fn generate(env: Env) -> Result<ApiKey, getrandom::Error> {
        let mut bytes = [0u8; KEY_LEN];
        bytes[..5].copy_from_slice(b"osir_");
        bytes[5..9].copy_from_slice(env.as_str().as_bytes());
        bytes[9] = b'_';
        let mut filled = 0;
        let mut pool = [0u8; 64];
        while filled < RANDOM_LEN {
            getrandom::getrandom(&mut pool)?;
            for &r in &pool {
                // 252 = 7 * 36: bytes at or above it would favour low symbols.
                if r < 252 && filled < RANDOM_LEN {
                    bytes[10 + filled] = ALPHABET[(r % 36) as usize];
                    filled += 1;
                }
            }
        }
        let sum = checksum(&bytes[..KEY_LEN - CHECK_LEN]);
        bytes[KEY_LEN - CHECK_LEN..].copy_from_slice(&sum);
        Ok(ApiKey { bytes })
    }

    /// The environment encoded in the key itself.
    pub fn env(&self) -> Env {
        if &self.bytes[5..9] == b"live" {
            Env::Live
        } else {
            Env::Test
        }
    }

    /// The store's lookup handle: SHA-256 of the key text.
    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.bytes).into())
    }

    /// The public display hint, `osir_live_…o5p6`.
    pub fn hint(&self) -> String {
        let tail = &self.bytes[KEY_LEN - 4..];
        format!(
            "{}…{}",
            String::from_utf8_lossy(&self.bytes[..10]),
            String::from_utf8_lossy(tail)
        )
    }

    /// The secret itself. Call only to show a new key to its owner once.
    pub fn expose_secret(&self) -> &str {
        // The bytes were checked (or generated) to be ASCII.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.hint())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hint())
    }
}

/// The 7-character base-36 CRC-32 of `prefix` (`osir_<env>_<25 random>`).
fn checksum(prefix: &[u8]) -> [u8; CHECK_LEN] {
    let mut crc = crc32fast::hash(prefix);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(crc % 36) as usize];
        crc /= 36;
    }
    out
}

/// Does this text look like a key with a valid checksum? For scanners and tests.
pub fn looks_like_key(text: &str) -> bool {
    ApiKey::parse(text, true).is_ok()
}

/// SHA-256 of a key: the only form in which a key is stored or compared.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Lowercase hex, as written in the store.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(ALPHABET[(b >> 4) as usize] as char);
            s.push(ALPHABET[(b & 15) as usize] as char);
        }
        s
    }

    /// Parses 64 lowercase hex characters (store records, invalidation messages).
    pub fn from_hex(s: &str) -> Option<KeyHash> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0])?;
            let lo = hex_val(pair[1])?;
            out[i] = (hi << 4) | lo;
        }
        Some(KeyHash(out))
    }

    /// A small number spreading hashes over shards (cache epochs).
    pub fn shard(&self, shards: usize) -> usize {
        self.0[0] as usize % shards
    }

    /// 64 bits of the hash: enough to tell keys apart in a bounded set
    /// (a SHA-256 is uniform, so any 8 bytes will do).
    pub fn fingerprint(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[24..32]);
        u64::from_le_bytes(b)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_carry_their_env() {
        for env in [Env::Live, Env::Test] {
            let k = ApiKey::generate(env).unwrap();
            let text = k.expose_secret().to_owned();
            assert_eq!(text.len(), KEY_LEN);
            assert!(text.starts_with(&format!("osir_{env}_")));
            let back = ApiKey::parse(&text, true).unwrap();
            assert_eq!(back, k);
            assert_eq!(back.env(), env);
        }
    }

    #[test]
    fn checksum_matches_crc32_in_base36() {
        let k = ApiKey::generate(Env::Live).unwrap();
        let text = k.expose_secret();
        let crc = crc32fast::hash(&text.as_bytes()[..35]);
        let tail = u32::from_str_radix(&text[35..], 36).unwrap();
        assert_eq!(crc, tail);
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let good = ApiKey::generate(Env::Test)
            .unwrap()
            .expose_secret()
            .to_owned();
        let cases = [
            String::new(),
            good[..41].to_owned(),
            format!("{good}a"),
            good.replace("osir_test_", "osir_prod_"),
            good.replace("osir_", "OSIR_"),
            good.to_uppercase(),
            format!("{}-{}", &good[..20], &good[21..]),
            good.replacen('_', "-", 1),
        ];
        for c in cases {
            assert_eq!(
                ApiKey::parse(&c, false),
                Err(KeyFormatError::Malformed),
                "{c:?}"
            );
        }
    }

    #[test]
    fn bad_checksum_is_rejected_only_when_verifying() {
        let good = ApiKey::generate(Env::Live)
            .unwrap()
            .expose_secret()
            .to_owned();
        let last = good.as_bytes()[41];
        let other = if last == b'0' { '1' } else { '0' };
        let bad = format!("{}{}", &good[..41], other);
        assert_eq!(ApiKey::parse(&bad, true), Err(KeyFormatError::BadChecksum));
        assert!(ApiKey::parse(&bad, false).is_ok());
        // The contract's illustration has a wrong checksum on purpose.
        let example = "osir_live_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6";
        assert_eq!(
            ApiKey::parse(example, true),
            Err(KeyFormatError::BadChecksum)
        );
        assert_eq!(
            ApiKey::parse(example, false).unwrap().hint(),
            "osir_live_…o5p6"
        );
    }

    #[test]
    fn debug_and_display_redact() {
        let k = ApiKey::generate(Env::Live).unwrap();
        let secret = k.expose_secret().to_owned();
        for shown in [format!("{k:?}"), format!("{k}")] {
            assert!(!shown.contains(&secret[10..]), "{shown}");
            assert!(shown.contains(&secret[38..]));
        }
    }

    #[test]
    fn generation_is_roughly_uniform() {
        let mut counts = [0u32; 36];
        for _ in 0..8000 {
            let k = ApiKey::generate(Env::Test).unwrap();
            for &c in &k.expose_secret().as_bytes()[10..35] {
                let i = ALPHABET.iter().position(|&a| a == c).unwrap();
                counts[i] += 1;
            }
        }
        // 200,000 draws over 36 symbols: about 5556 each (sigma ~73); a
        // modulo bias of 256 % 36 would push the first four near 6250.
        for (i, &n) in counts.iter().enumerate() {
            assert!((5150..5960).contains(&n), "symbol {i}: {n}");
        }
    }

    #[test]
    fn hash_hex_roundtrip() {
        let k = ApiKey::generate(Env::Live).unwrap();
        let h = k.hash();
        let hex = h.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(KeyHash::from_hex(&hex), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
    }
}
