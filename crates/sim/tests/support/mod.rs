//! What the sim's tests and its benchmark share: a service-account assertion signed RS256
//! with the fake key in config/sim/keys, as the Google connector signs its own (ring).

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Signs `input` RS256 with the fake service-account key (ring, as the connector does).
fn rs256(input: &str) -> Vec<u8> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;
    let key = PrivatePkcs8KeyDer::from_pem_file(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem"),
    )
    .unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()).unwrap();
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    signature
}

/// A JWT of `claims`, signed with [`rs256`].
pub fn sign(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let input = format!("{header}.{payload}");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(rs256(&input)))
}
