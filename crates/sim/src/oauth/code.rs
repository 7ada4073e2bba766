//! Authorization codes: what the authorize endpoint stores with one, and the checks both
//! token endpoints make, in the same order, when one is redeemed (PKCE among them); each
//! provider words its own refusals.

use super::Consent;
use crate::server::Params;
use crate::state::World;

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
fn pkce_ok(challenge: Option<&(String, String)>, verifier: Option<&str>) -> bool {
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

/// Stores a new code (`prefix` gives it the provider's shape) for what `consent` granted
/// to `client_id`, with the request's PKCE challenge and `nonce`, and returns it.
pub(crate) fn issue(
    world: &mut World,
    prefix: &str,
    tenant: usize,
    consent: Consent,
    client_id: &str,
    redirect_uri: &str,
    params: &Params,
) -> String {
    let code = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    let challenge = params.get("code_challenge").map(|c| {
        (
            c.to_owned(),
            params
                .get("code_challenge_method")
                .unwrap_or("plain")
                .to_owned(),
        )
    });
    world.codes.insert(
        code.clone(),
        CodeGrant {
            tenant,
            user: consent.user,
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            scopes: consent.scopes,
            challenge,
            nonce: params.get("nonce").map(str::to_owned),
            used: false,
        },
    );
    code
}

/// Why a code cannot be redeemed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No such code.
    Unknown,
    /// Redeemed before.
    Used,
    /// Issued to another tenant or client.
    OtherClient,
    /// `redirect_uri` is not the authorization request's.
    RedirectMismatch,
    /// The code has a PKCE challenge and the request no `code_verifier`.
    NoVerifier,
    /// The `code_verifier` does not match the challenge.
    WrongVerifier,
}

/// The code `params` redeem at `client_id` of `tenant`, checked in the order both providers
/// check it; the caller marks it used ([`mark_used`]) once it answers with tokens.
pub(crate) fn check(
    world: &World,
    params: &Params,
    tenant: usize,
    client_id: &str,
) -> Result<CodeGrant, Refused> {
    let grant = params
        .get("code")
        .and_then(|code| world.codes.get(code))
        .ok_or(Refused::Unknown)?;
    if grant.used {
        return Err(Refused::Used);
    }
    if grant.tenant != tenant || grant.client_id != client_id {
        return Err(Refused::OtherClient);
    }
    if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(Refused::RedirectMismatch);
    }
    let verifier = params.get("code_verifier");
    if !pkce_ok(grant.challenge.as_ref(), verifier) {
        return Err(if verifier.is_none() {
            Refused::NoVerifier
        } else {
            Refused::WrongVerifier
        });
    }
    Ok(grant.clone())
}

/// Marks the code `params` redeem as used.
pub(crate) fn mark_used(world: &mut World, params: &Params) {
    if let Some(code) = params.get("code").and_then(|c| world.codes.get_mut(c)) {
        code.used = true;
    }
}
