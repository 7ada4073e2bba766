//! Encryption at rest for stored secrets (members' refresh tokens): XChaCha20-Poly1305
//! with a random 192-bit nonce, the key id stored beside the ciphertext for rotation, and
//! the row's company and member ids as associated data, so a ciphertext copied to another
//! row does not open.
//!
//! The key comes in as text (the binary reads it from the file or env var named in
//! config); this module only parses it. Keys and plaintexts live in `secrecy` types and
//! never appear in `Debug`, `Display` or an error.

use base64::Engine;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};

const NONCE_LEN: usize = 24;

/// Why a key could not be used or a secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "encryption key {key_id:?} is not 32 bytes of base64 or hex (got {detail}); generate one with `openssl rand -base64 32`"
    )]
    BadKey { key_id: String, detail: String },
    #[error("encryption key id must not be empty")]
    EmptyKeyId,
    #[error(
        "secret of member {member_id:?} was sealed with key {stored:?}, the configured key is {configured:?}"
    )]
    KeyMismatch {
        member_id: String,
        stored: String,
        configured: String,
    },
    #[error(
        "secret of member {member_id:?} in company {company_id:?} does not open with key {key_id:?}: wrong key, or the ciphertext belongs to another row"
    )]
    Undecryptable {
        company_id: String,
        member_id: String,
        key_id: String,
    },
    #[error(
        "the configured encryption key {key_id:?} is not the key this database was set up with"
    )]
    WrongKey { key_id: String },
    #[error("no encryption key is configured, but member {member_id:?} has a stored secret")]
    MissingKey { member_id: String },
    #[error("the new encryption key id {key_id:?} is the current one: give the new key its own id")]
    SameKeyId { key_id: String },
}

/// A 32-byte key with the id stored beside every ciphertext it seals.
pub struct EncryptionKey {
    id: String,
    key: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl EncryptionKey {
    /// Parses 32 bytes written as base64 (standard alphabet) or 64 hex digits; surrounding
    /// whitespace, like a file's trailing newline, is ignored.
    pub fn parse(id: &str, text: &SecretString) -> Result<EncryptionKey, CryptoError> {
        if id.trim().is_empty() {
            return Err(CryptoError::EmptyKeyId);
        }
        let trimmed = text.expose_secret().trim();
        let bad = |detail: String| CryptoError::BadKey {
            key_id: id.to_owned(),
            detail,
        };
        let bytes = if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(trimmed).map_err(|_| bad("invalid hex".to_owned()))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(trimmed)
                .map_err(|_| bad("neither 64 hex digits nor valid base64".to_owned()))?
        };
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| bad(format!("{} bytes", bytes.len())))?;
        Ok(EncryptionKey {
            id: id.to_owned(),
            key: SecretBox::new(Box::new(key)),
        })
    }

    /// The id stored with every ciphertext this key seals.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.key.expose_secret()))
    }

    /// Seals `plaintext` for the row of (`company_id`, `member_id`): 24-byte nonce, then
    /// ciphertext and tag.
    pub fn seal(&self, company_id: &str, member_id: &str, plaintext: &SecretString) -> Sealed {
        let nonce = XNonce::generate();
        let aad = associated_data(company_id, member_id);
        // Encryption with an in-memory buffer fails only for messages over 256 GiB.
        let ciphertext = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        bytes.extend_from_slice(nonce.as_slice());
        bytes.extend_from_slice(&ciphertext);
        Sealed {
            key_id: self.id.clone(),
            bytes,
        }
    }

    /// Opens a secret sealed for (`company_id`, `member_id`).
    pub fn open(
        &self,
        company_id: &str,
        member_id: &str,
        sealed: &Sealed,
    ) -> Result<SecretString, CryptoError> {
        if sealed.key_id != self.id {
            return Err(CryptoError::KeyMismatch {
                member_id: member_id.to_owned(),
                stored: sealed.key_id.clone(),
                configured: self.id.clone(),
            });
        }
        let undecryptable = || CryptoError::Undecryptable {
            company_id: company_id.to_owned(),
            member_id: member_id.to_owned(),
            key_id: self.id.clone(),
        };
        if sealed.bytes.len() < NONCE_LEN {
            return Err(undecryptable());
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| undecryptable())?;
        let aad = associated_data(company_id, member_id);
        let plaintext = self
            .cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable())?;
        let text = String::from_utf8(plaintext).map_err(|_| undecryptable())?;
        Ok(SecretString::from(text))
    }
}

/// A sealed secret as stored: the key id and nonce-prefixed ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
fn associated_data(company_id: &str, member_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + company_id.len() + member_id.len());
    aad.extend_from_slice(b"datacap/v1");
    for part in [company_id, member_id] {
        aad.extend_from_slice(&(part.len() as u64).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> EncryptionKey {
        let text = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        EncryptionKey::parse(id, &SecretString::from(text)).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = key("k1", 7);
        let sealed = k.seal("acme", "ana", &SecretString::from("refresh-1"));
        let opened = k.open("acme", "ana", &sealed).unwrap();
        assert_eq!(opened.expose_secret(), "refresh-1");
        assert!(!format!("{k:?}{sealed:?}").contains("refresh"));
    }

    #[test]
    fn moved_or_wrong_key_fails() {
        let k = key("k1", 7);
        let sealed = k.seal("acme", "ana", &SecretString::from("refresh-1"));
        assert!(matches!(
            k.open("acme", "bob", &sealed),
            Err(CryptoError::Undecryptable { .. })
        ));
        assert!(matches!(
            k.open("a", "cmeana", &sealed),
            Err(CryptoError::Undecryptable { .. })
        ));
        assert!(matches!(
            key("k1", 8).open("acme", "ana", &sealed),
            Err(CryptoError::Undecryptable { .. })
        ));
        assert!(matches!(
            key("k2", 7).open("acme", "ana", &sealed),
            Err(CryptoError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn parses_hex_and_rejects_short_keys() {
        let hex_text = SecretString::from("ab".repeat(32));
        assert!(EncryptionKey::parse("k", &hex_text).is_ok());
        let short = SecretString::from("c2hvcnQ=");
        let error = EncryptionKey::parse("k", &short).unwrap_err();
        assert_eq!(
            error.to_string(),
            "encryption key \"k\" is not 32 bytes of base64 or hex (got 5 bytes); generate one with `openssl rand -base64 32`"
        );
        assert!(EncryptionKey::parse(" ", &hex_text).is_err());
    }
}
