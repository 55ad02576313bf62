//! Secrets: API tokens (random, shown once, stored as SHA-256) and the key that encrypts
//! project database URLs at rest (AES-256-GCM).

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Error, Result};

/// What every token starts with, so that secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "phony_";

/// A fresh token: 256 random bits, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{TOKEN_PREFIX}{}", hex(&bytes))
}

/// The SHA-256 of a token: what the metadata keeps.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares two hashes in constant time.
pub fn same_hash(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A new id: `prefix` and 12 random hex digits.
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 6] = rand::random();
    format!("{prefix}_{}", hex(&bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The key that encrypts database URLs.
#[derive(Clone)]
pub struct SecretKey(Aes256Gcm);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// The key given as 64 hex digits (`PHONY_SECRET_KEY`), else the one in `file`, created
    /// with mode 0600 on first use.
    pub fn load(given: Option<&str>, file: &Path) -> Result<Self> {
        if let Some(given) = given {
            return Self::from_hex(given).ok_or_else(|| {
                Error::Config("PHONY_SECRET_KEY must be 64 hex digits (32 bytes)".into())
            });
        }
        match std::fs::read_to_string(file) {
            Ok(text) => Self::from_hex(&text).ok_or_else(|| {
                Error::Config(format!(
                    "{} does not hold a key (64 hex digits)",
                    file.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes: [u8; 32] = rand::random();
                write_private(file, &hex(&bytes))?;
                tracing::info!("created the secret key file {}", file.display());
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) => Err(Error::Io {
                doing: format!("reading {}", file.display()),
                source: e,
            }),
        }
    }

    fn from_hex(text: &str) -> Option<Self> {
        let bytes = unhex(text)?;
        (bytes.len() == 32).then(|| Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        SecretKey(Aes256Gcm::new(aes_gcm::Key::<Aes256Gcm>::from_slice(bytes)))
    }

    /// `nonce || ciphertext` of `plain`.
    pub fn seal(&self, plain: &str) -> Result<Vec<u8>> {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .0
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| Error::Config("encrypting a secret failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`seal`](Self::seal) made.
    pub fn open(&self, sealed: &[u8]) -> Result<String> {
        let fail = || {
            Error::Config(
                "a stored secret cannot be decrypted: is PHONY_SECRET_KEY (or the key file) the one it was written with?"
                    .into(),
            )
        };
        if sealed.len() < 12 {
            return Err(fail());
        }
        let (nonce, body) = sealed.split_at(12);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| fail())?;
        String::from_utf8(plain).map_err(|_| fail())
    }
}

/// Writes `text` to a new file readable by its owner only.
fn write_private(file: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let io = |source| Error::Io {
        doing: format!("creating {}", file.display()),
        source,
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut f = options.open(file).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_hash_to_32_bytes() {
        let t = new_token();
        assert_eq!(t.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(token_hash(&t).len(), 32);
        assert!(same_hash(&token_hash(&t), &token_hash(&t)));
        assert!(!same_hash(&token_hash(&t), &token_hash(&new_token())));
    }

    #[test]
    fn a_sealed_url_opens_with_its_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.key");
        let key = SecretKey::load(None, &file).unwrap();
        let sealed = key.seal("postgres://u:pw@h/db").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("pw"));
        assert_eq!(key.open(&sealed).unwrap(), "postgres://u:pw@h/db");
        // The file is reused, and private.
        let again = SecretKey::load(None, &file).unwrap();
        assert_eq!(again.open(&sealed).unwrap(), "postgres://u:pw@h/db");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = SecretKey::load(Some(&"ab".repeat(32)), &file).unwrap();
        assert!(other.open(&sealed).is_err());
    }
}
