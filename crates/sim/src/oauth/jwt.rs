//! Just enough JWT for the sim: verify the RS256 assertions service accounts send, and mint
//! the HS256 access tokens Microsoft connectors decode for their `roles` / `scp` claims.
//!
//! The sim never trusts its own tokens by signature: it looks them up in its grant table,
//! so the HS256 key only makes the tokens well-formed JWTs.

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::json::{J, obj};

/// Why an assertion was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JwtError {
    /// Not three base64url segments of JSON.
    Malformed,
    /// `alg` is not RS256 or the signature does not verify.
    BadSignature,
}

/// Decodes one base64url segment, padded or not.
pub(crate) fn decode_segment(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .or_else(|_| URL_SAFE.decode(segment))
        .ok()
}

/// Reads the claims of a JWT without checking anything.
pub(crate) fn claims(token: &str) -> Result<serde_json::Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let bytes = decode_segment(payload).ok_or(JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
}

/// Verifies an RS256 JWT against `key` (PKCS#1 `RSAPublicKey` DER) and returns its claims.
pub(crate) fn verify_rs256(token: &str, key: &[u8]) -> Result<serde_json::Value, JwtError> {
    let claims = claims(token)?;
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let header_segment = signing_input.split('.').next().unwrap_or_default();
    let header: serde_json::Value = decode_segment(header_segment)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(JwtError::Malformed)?;
    if header.get("alg").and_then(serde_json::Value::as_str) != Some("RS256") {
        return Err(JwtError::BadSignature);
    }
    let signature = decode_segment(signature).ok_or(JwtError::BadSignature)?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| JwtError::BadSignature)?;
    Ok(claims)
}

/// Signs `claims` as an HS256 JWT.
pub(crate) fn sign_hs256(claims: &J, key: &[u8]) -> String {
    let header = obj! { "typ" => "JWT", "alg" => "HS256", "kid" => "datacap-sim" };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_bytes()),
        URL_SAFE_NO_PAD.encode(claims.to_bytes())
    );
    let signature = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(signing_input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// `BASE64URL(SHA256(verifier))`, the PKCE S256 transform.
pub(crate) fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hs256_tokens_carry_their_claims() {
        let token = sign_hs256(&obj! { "roles" => vec![J::from("Mail.Read")] }, b"k");
        let claims = claims(&token).unwrap();
        assert_eq!(claims["roles"][0], "Mail.Read");
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(claims("a.b"), Err(JwtError::Malformed));
        assert_eq!(claims("a.!!.c"), Err(JwtError::Malformed));
    }

    #[test]
    fn pkce_is_base64url_of_sha256() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gXk-bEjFw"),
            // computed independently: base64url(sha256(v)) in Python
            "KpbPxyScU-wBjVxu1S1lU4a6qU9hFH2RRaBpDCvD_KA"
        );
    }
}
