//! OpenID Connect's shared part: the one fake RSA key both providers sign `id_token`s
//! with, its JWKS, and who an `id_token` is about.
//!
//! The connect flow (issue 17) verifies an `id_token` the way it would against Google or
//! Entra: discovery document → `jwks_uri` → RS256 signature → `iss`, `aud`, `exp`, `nonce`.
//! So the sim publishes both providers' documents (`google/oidc.rs`, `microsoft/oidc.rs`,
//! mirrored under their prefixes as every other host is), signs with one fake, test-only
//! RSA key (config/sim/keys/) through `ring` (the workspace's crypto; no new use of the
//! `rsa` crate), and writes the claims the real providers write. `msal` also reads the
//! Microsoft document before any token request and refuses an authority without one.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use sha2::{Digest, Sha256};

use crate::json::{J, obj};

/// The fake, test-only signing key (generated once with `openssl genpkey -algorithm RSA
/// -pkeyopt rsa_keygen_bits:2048`; never use it for anything else).
const KEY_PEM: &str =
    include_str!("../../../../config/sim/keys/FAKE-TEST-ONLY-sim-id-token.key.pem");

/// The sim's `id_token` signing key and its JWK.
pub(crate) struct IdKey {
    pair: RsaKeyPair,
    rng: ring::rand::SystemRandom,
    /// `kid` of the header and the JWK: hex of the first 20 bytes of SHA-256(n).
    pub kid: String,
    n: String,
    e: String,
}

impl IdKey {
    /// Loads the shipped key; `None` only if the file in the binary is broken.
    pub(crate) fn load() -> Option<Arc<IdKey>> {
        let body: String = KEY_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).ok()?;
        let pair = RsaKeyPair::from_pkcs8(&der).ok()?;
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
        let kid = hex_prefix(&Sha256::digest(&public.n));
        Some(Arc::new(IdKey {
            pair,
            rng: ring::rand::SystemRandom::new(),
            kid,
            n: URL_SAFE_NO_PAD.encode(&public.n),
            e: URL_SAFE_NO_PAD.encode(&public.e),
        }))
    }

    /// `header.claims.signature`, RS256 (RSASSA-PKCS1-v1_5 with SHA-256).
    pub(crate) fn sign(&self, claims: &J) -> Option<String> {
        let header = obj! { "alg" => "RS256", "kid" => self.kid.as_str(), "typ" => "JWT" };
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_bytes()),
            URL_SAFE_NO_PAD.encode(claims.to_bytes())
        );
        let mut signature = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                input.as_bytes(),
                &mut signature,
            )
            .ok()?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The JWK set. Google's (`oauth2/v3/certs`) carries `alg`; Entra's (`discovery/v2.0/
    /// keys`) carries `issuer` per key. Neither `x5t` nor `x5c` is sent: the sim has no
    /// certificate for its key.
    pub(crate) fn jwks(&self, issuer: Option<&str>) -> J {
        let mut key = obj! {
            "kty" => "RSA",
            "use" => "sig",
            "kid" => self.kid.as_str(),
        };
        if issuer.is_none() {
            key.push("alg", "RS256");
        }
        key.push("n", self.n.as_str());
        key.push("e", self.e.as_str());
        if let Some(issuer) = issuer {
            key.push("issuer", issuer);
        }
        obj! { "keys" => vec![key] }
    }
}

fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(20).map(|b| format!("{b:02x}")).collect()
}

/// Who an `id_token` is about and for whom it is minted.
pub(crate) struct IdTokenFor<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub scopes: &'a [String],
    pub nonce: Option<&'a str>,
    pub lifetime: i64,
    /// The access token issued beside it, for Google's `at_hash`.
    pub access_token: Option<&'a str>,
}

pub(crate) fn has(scopes: &[String], scope: &str) -> bool {
    scopes.iter().any(|s| s == scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_key_signs_and_verifies() {
        let key = IdKey::load().expect("the shipped key parses");
        let token = key.sign(&obj! { "sub" => "1" }).expect("signs");
        let (input, signature) = token.rsplit_once('.').unwrap();
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = key.pair.public().into();
        public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(signature).unwrap(),
            )
            .expect("verifies with the JWK's n and e");
        assert_eq!(key.kid.len(), 40);
    }
}
