//! Service accounts' RSA public keys, read from PEM (SPKI or PKCS#1) into the PKCS#1 DER
//! ring verifies JWT-bearer assertions with.

use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;

/// An RSA public key from PEM, as PKCS#1 `RSAPublicKey` DER: `BEGIN PUBLIC KEY` (SPKI,
/// the key's `BIT STRING`) or `BEGIN RSA PUBLIC KEY` (PKCS#1 already).
pub(crate) fn rsa_public_key_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(pem) {
        return spki_rsa_key(spki.as_ref()).ok_or_else(|| "not an RSA key".to_owned());
    }
    // `BEGIN RSA PUBLIC KEY` is PKCS#1 itself (a label rustls-pki-types does not read).
    let text = std::str::from_utf8(pem).map_err(|_| "not text".to_owned())?;
    let body = text
        .split_once("-----BEGIN RSA PUBLIC KEY-----")
        .and_then(|(_, rest)| rest.split_once("-----END RSA PUBLIC KEY-----"))
        .map(|(body, _)| body)
        .ok_or_else(|| "no PUBLIC KEY or RSA PUBLIC KEY section".to_owned())?;
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|_| "the RSA PUBLIC KEY section is not base64".to_owned())?;
    match der_tlv(&der) {
        Some((0x30, _, [])) => Ok(der),
        _ => Err("the RSA PUBLIC KEY section is not one DER sequence".to_owned()),
    }
}

/// The `RSAPublicKey` inside an RSA `SubjectPublicKeyInfo`: `SEQUENCE { SEQUENCE {
/// rsaEncryption, NULL }, BIT STRING { 0 unused bits, RSAPublicKey } }`.
fn spki_rsa_key(der: &[u8]) -> Option<Vec<u8>> {
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (0x30, spki, _) = der_tlv(der)? else {
        return None;
    };
    let (0x30, algorithm, rest) = der_tlv(spki)? else {
        return None;
    };
    let (0x06, oid, _) = der_tlv(algorithm)? else {
        return None;
    };
    if oid != RSA_ENCRYPTION {
        return None;
    }
    let (0x03, bits, _) = der_tlv(rest)? else {
        return None;
    };
    let (0, key) = bits.split_first()? else {
        return None;
    };
    Some(key.to_vec())
}

/// One DER tag-length-value: (tag, content, what follows). Definite lengths only.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |acc, byte| (acc << 8) | usize::from(*byte));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Service-account public keys load from SPKI (`BEGIN PUBLIC KEY`) and PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`) PEM to the same PKCS#1 DER; anything else is refused.
    #[test]
    fn public_keys_load_from_spki_and_pkcs1_pem() {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/sim/keys");
        let read = |name: &str| std::fs::read(keys.join(name)).expect("test key");
        let spki = rsa_public_key_der(&read("FAKE-TEST-ONLY-google-service-account.pub.pem"))
            .expect("spki");
        let pkcs1 =
            rsa_public_key_der(&read("FAKE-TEST-ONLY-google-service-account.pkcs1.pub.pem"))
                .expect("pkcs1");
        assert_eq!(spki, pkcs1);
        assert!(
            rsa_public_key_der(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
        assert!(rsa_public_key_der(b"not a key").is_err());
        assert!(rsa_public_key_der(&read("FAKE-TEST-ONLY-sim-tls.pem")).is_err());
        // Truncated DER never panics.
        for cut in 0..spki.len().min(40) {
            let _ = spki_rsa_key(&spki[..cut]);
        }
    }
}
