//! The members' personal connect links: HMAC-signed (company, member, expiry, issue time)
//! under `[web]`'s signing key, so nobody can make a link for someone else; checked on
//! every use.

use super::*;

/// Signs and checks the members' personal connect links.
pub struct InviteKey {
    key: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for InviteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteKey([redacted])")
    }
}

/// Why an invite does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteProblem {
    Malformed,
    BadSignature,
    Expired,
}

impl InviteKey {
    pub fn new(key: [u8; 32]) -> InviteKey {
        InviteKey {
            key: SecretBox::new(Box::new(key)),
        }
    }

    /// An invite for (`company`, `member`) issued now and valid until `expires_at`.
    pub fn invite(&self, company: &str, member: &str, expires_at: OffsetDateTime) -> String {
        self.invite_issued(company, member, OffsetDateTime::now_utc(), expires_at)
    }

    /// An invite for (`company`, `member`) issued at `issued_at` (a revocation voids the
    /// invites issued before it) and valid until `expires_at`.
    pub fn invite_issued(
        &self,
        company: &str,
        member: &str,
        issued_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> String {
        let payload = format!(
            "{}.{}.{}.{}",
            b64(company.as_bytes()),
            b64(member.as_bytes()),
            expires_at.unix_timestamp(),
            issued_at.unix_timestamp()
        );
        let signature = sign(self.key.expose_secret(), "invite", &payload);
        format!("{payload}.{}", b64(&signature))
    }

    /// The value of the connect cookie that binds `state` to the browser that started the
    /// flow: an HMAC of the state, so the callback checks it without reading anything.
    pub fn binding(&self, state: &str) -> String {
        b64(&sign(self.key.expose_secret(), "connect-binding", state))
    }

    pub(super) fn binding_holds(&self, state: &str, cookie: &str) -> bool {
        unb64(cookie).is_some_and(|signature| {
            verify(
                self.key.expose_secret(),
                "connect-binding",
                state,
                &signature,
            )
        })
    }

    /// A member's personal connect link on the server at `public_url`.
    pub fn link(
        &self,
        public_url: &str,
        provider: Provider,
        company: &str,
        member: &str,
        expires_at: OffsetDateTime,
    ) -> String {
        format!(
            "{}/connect/{}/start?invite={}",
            public_url.trim_end_matches('/'),
            provider_segment(provider),
            self.invite(company, member, expires_at)
        )
    }

    /// The (company, member) of a valid invite.
    pub fn check(
        &self,
        invite: &str,
        now: OffsetDateTime,
    ) -> Result<(String, String), InviteProblem> {
        self.check_issued(invite, now)
            .map(|(company, member, _)| (company, member))
    }

    /// The (company, member, issue time in Unix seconds) of a valid invite; links made
    /// before invites carried their issue time count as issued at the beginning of time,
    /// so any revocation voids them.
    pub fn check_issued(
        &self,
        invite: &str,
        now: OffsetDateTime,
    ) -> Result<(String, String, i64), InviteProblem> {
        self.check_invite(invite, now)
            .map(|checked| (checked.company, checked.member, checked.issued))
    }

    /// A valid invite, with its issue and expiry times.
    pub fn check_invite(
        &self,
        invite: &str,
        now: OffsetDateTime,
    ) -> Result<CheckedInvite, InviteProblem> {
        let (payload, signature) = invite.rsplit_once('.').ok_or(InviteProblem::Malformed)?;
        let signature = unb64(signature).ok_or(InviteProblem::Malformed)?;
        if !verify(self.key.expose_secret(), "invite", payload, &signature) {
            return Err(InviteProblem::BadSignature);
        }
        let mut parts = payload.split('.');
        let text = |part: Option<&str>| {
            part.and_then(unb64)
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or(InviteProblem::Malformed)
        };
        let company = text(parts.next())?;
        let member = text(parts.next())?;
        let expires: i64 = parts
            .next()
            .and_then(|e| e.parse().ok())
            .ok_or(InviteProblem::Malformed)?;
        let issued: i64 = match parts.next() {
            None => i64::MIN,
            Some(text) => text.parse().map_err(|_| InviteProblem::Malformed)?,
        };
        if parts.next().is_some() {
            return Err(InviteProblem::Malformed);
        }
        if expires <= now.unix_timestamp() {
            return Err(InviteProblem::Expired);
        }
        Ok(CheckedInvite {
            company,
            member,
            issued,
            expires,
        })
    }
}

/// What a valid invite names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedInvite {
    pub company: String,
    pub member: String,
    /// Unix seconds (`i64::MIN` for links made before invites carried it).
    pub issued: i64,
    /// Unix seconds.
    pub expires: i64,
}
