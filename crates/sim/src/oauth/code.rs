//! Authorization codes: what the authorize endpoint stores with one, and the PKCE check
//! the token endpoint makes when it is redeemed.

/// An issued authorization code.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub tenant: usize,
    pub user: usize,
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub challenge: Option<(String, String)>,
    /// The authorization request's `nonce`, echoed in the `id_token`.
    pub nonce: Option<String>,
    pub used: bool,
}

/// Checks a PKCE verifier against the challenge stored with a code.
pub(crate) fn pkce_ok(challenge: Option<&(String, String)>, verifier: Option<&str>) -> bool {
    match (challenge, verifier) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((challenge, method)), Some(verifier)) => {
            if method.eq_ignore_ascii_case("S256") {
                crate::oauth::jwt::pkce_s256(verifier) == *challenge
            } else {
                verifier == challenge
            }
        }
    }
}
