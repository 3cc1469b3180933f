//! API keys of `serve`: a file of `NAME SHA256-HEX [read-only]` lines, keys never stored in clear, compared in
//! constant time; `serve new-key` makes a fresh random one.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every key `serve new-key` makes, so a leaked one is recognisable (secret scanners).
pub const KEY_PREFIX: &str = "cxas_";

/// What a key may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Every endpoint.
    ReadWrite,
    /// Only the `GET` endpoints.
    ReadOnly,
}

/// One line of the key file: a name, the SHA-256 of the key, and its access. The key itself is never kept.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// Who the key belongs to (logged; the key never is).
    pub name: String,
    digest: [u8; 32],
    /// What it may reach.
    pub access: Access,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("name", &self.name)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// The keys a service accepts.
#[derive(Clone, Debug, Default)]
pub struct ApiKeys {
    entries: Vec<KeyEntry>,
}

/// Why a key file does not read, naming the line (never a key: the file holds none).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct KeyFileError {
    /// 1-based.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl ApiKeys {
    /// Reads a key file: one `NAME SHA256-HEX [read-only]` per line; blank lines and `#` comments are skipped.
    /// Names are unique, 1 to 64 characters of letters, digits, `-`, `_` and `.`.
    pub fn parse(text: &str) -> Result<Self, KeyFileError> {
        let mut entries = Vec::new();
        let mut names = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| KeyFileError {
                line: i + 1,
                reason: reason.to_owned(),
            };
            let mut words = line.split_whitespace();
            let (Some(name), Some(hash)) = (words.next(), words.next()) else {
                return Err(bad("expected NAME SHA256-HEX [read-only]"));
            };
            let access = match words.next() {
                None => Access::ReadWrite,
                Some("read-only") => Access::ReadOnly,
                Some(_) => return Err(bad("the third word may only be read-only")),
            };
            if words.next().is_some() {
                return Err(bad("expected NAME SHA256-HEX [read-only]"));
            }
            if !is_valid_name(name) {
                return Err(bad("a name is 1 to 64 letters, digits, '-', '_' or '.'"));
            }
            let digest = decode_digest(hash).ok_or_else(|| {
                bad("the key's SHA-256 must be 64 hex digits (a key in clear is never accepted)")
            })?;
            if !names.insert(name.to_owned()) {
                return Err(bad("the name is already used by an earlier line"));
            }
            entries.push(KeyEntry {
                name: name.to_owned(),
                digest,
                access,
            });
        }
        Ok(Self { entries })
    }

    /// The entry a presented key matches, if any. Every entry is compared, each in constant time, so the time
    /// taken says nothing about which entry (or how much of a digest) matched.
    pub fn check(&self, presented: &str) -> Option<&KeyEntry> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&digest)) {
                found = Some(e);
            }
        }
        found
    }

    /// How many keys.
    pub fn count(&self) -> usize {
        self.entries.len()
    }
}

/// Whether `name` may name a key: 1 to 64 letters, digits, `-`, `_` and `.`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn decode_digest(hex_text: &str) -> Option<[u8; 32]> {
    if hex_text.len() != 64 {
        return None;
    }
    let bytes = hex::decode(hex_text.to_ascii_lowercase()).ok()?;
    bytes.try_into().ok()
}

/// A fresh key: [`KEY_PREFIX`] and 32 random bytes from the OS, base64url without padding.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The key file line for `key`: `NAME SHA256-HEX[ read-only]`.
pub fn key_line(name: &str, key: &str, access: Access) -> String {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    match access {
        Access::ReadWrite => format!("{name} {digest}"),
        Access::ReadOnly => format!("{name} {digest} read-only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_matches_its_line_and_nothing_else() {
        let key = new_key().unwrap();
        assert!(
            key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 43,
            "{key}"
        );
        assert_ne!(key, new_key().unwrap(), "keys are random");
        let file = format!(
            "# ops keys\n\n{}\n{}\n",
            key_line("ops", &key, Access::ReadWrite),
            key_line("dash", "another", Access::ReadOnly)
        );
        assert!(!file.contains(&key), "the file never holds the key");
        let keys = ApiKeys::parse(&file).unwrap();
        assert_eq!(keys.count(), 2);
        let e = keys.check(&key).unwrap();
        assert_eq!((e.name.as_str(), e.access), ("ops", Access::ReadWrite));
        assert_eq!(keys.check("another").unwrap().access, Access::ReadOnly);
        assert!(keys.check(&key[..key.len() - 1]).is_none());
        assert!(keys.check("").is_none());
        assert!(!format!("{keys:?}").contains(&hex::encode(Sha256::digest(key.as_bytes()))));
    }

    #[test]
    fn a_bad_line_is_named() {
        let digest = "ab".repeat(32);
        for (text, line, reason) in [
            ("ops".to_owned(), 1, "expected"),
            (format!("ops {digest} admin"), 1, "read-only"),
            (format!("\nops {}", "ab".repeat(31)), 2, "64 hex"),
            ("ops cxas_plainkey".to_owned(), 1, "64 hex"),
            (format!("o p {digest}"), 1, "read-only"),
            (format!("ops {digest}\nops {digest}"), 2, "already used"),
            (format!("bad/name {digest}"), 1, "a name is"),
        ] {
            let e = ApiKeys::parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
        }
        let upper = ApiKeys::parse(&format!("ops {}", digest.to_uppercase())).unwrap();
        assert_eq!(upper.count(), 1);
    }
}
