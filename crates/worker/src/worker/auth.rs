//! How a job authenticates: the company's credentials (resolved through the binary's
//! `CredentialResolver`, cached per company), plus the member's decrypted grant for
//! user-by-user; and saving a refresh token the provider rotated.

use secrecy::SecretString;

use super::*;

impl Worker {
    /// How the job authenticates: the company's credentials, plus the member's refresh
    /// token for user-by-user (`None` company-wide). `Ok(None)`: the member has no usable
    /// grant (re-checked later). `Err`: a failure of our own (credentials unreadable, no
    /// connector, no key).
    pub(super) async fn job_auth(
        &self,
        context: &JobContext,
        job: &Job,
        dead_grant: bool,
    ) -> Result<Option<(Auth, Option<SecretString>)>, String> {
        let inner = &self.inner;
        if !inner.connectors.has(job.provider()) {
            return Err(format!("no connector configured for {}", job.provider()));
        }
        let company_auth = self
            .company_auth(context)
            .map_err(|error| error.to_string())?;
        match (context.company.connection_mode, company_auth) {
            (
                ConnectionMode::CompanyWide,
                auth @ (Auth::GoogleServiceAccount(_) | Auth::MicrosoftApp(_)),
            ) => Ok(Some((auth, None))),
            (ConnectionMode::UserByUser, auth @ Auth::OAuthClient(_)) => {
                let grant = inner
                    .store
                    .member_grant(&job.context.member_id, inner.key.as_deref())
                    .await
                    .map_err(|error| {
                        if matches!(error, datacap_store::StoreError::Database(_)) {
                            inner.health.database_failed();
                        }
                        error.to_string()
                    })?;
                let Some(grant) = grant else {
                    return Ok(None);
                };
                // A member who disconnected is not polled, whatever token is left.
                if grant.state == MemberConnection::NotConnected {
                    return Ok(None);
                }
                // A grant the provider declared dead is not sent on every poll: only a
                // slow recheck, in case the member's admin restored it (issue 21 §5). The
                // claim's view of the grant decides, so both channels of a batch claimed
                // while it was connected are tried alike.
                if dead_grant && grant.state == MemberConnection::Invalid {
                    let recheck = time::Duration::try_from(inner.config.invalid_grant_recheck)
                        .unwrap_or(time::Duration::DAY);
                    if OffsetDateTime::now_utc() < grant.updated_at + recheck {
                        return Ok(None);
                    }
                    info!("rechecking a grant the provider declared dead");
                }
                Ok(grant
                    .refresh_token
                    .map(|refresh_token| (auth, Some(refresh_token))))
            }
            (mode, _) => Err(format!(
                "credentials of company {} do not fit its {} connection",
                context.company_id, mode
            )),
        }
    }

    pub(super) fn company_auth(&self, context: &JobContext) -> Result<Auth, CredentialError> {
        let ttl = self.inner.config.credentials_ttl;
        if let Some((at, cached)) = lock(&self.inner.credentials).get(&context.company_id)
            && at.elapsed() < ttl
        {
            return cached.clone();
        }
        let resolved = self.inner.resolver.resolve(&CompanyCredentials {
            company_id: &context.company_id,
            provider: context.company.provider,
            connection_mode: context.company.connection_mode,
            refs: &context.credential_refs,
        });
        lock(&self.inner.credentials).insert(
            context.company_id.clone(),
            (Instant::now(), resolved.clone()),
        );
        resolved
    }

    /// Persists a refresh token the provider rotated, sealed, before the attempt is
    /// written (so a crash in between never loses it).
    pub(super) async fn save_rotated_token(
        &self,
        job: &Job,
        token: &RotatedToken,
        now: OffsetDateTime,
    ) {
        let inner = &self.inner;
        let Some(key) = inner.key.as_deref() else {
            error!("a rotated refresh token cannot be stored: no encryption key configured");
            return;
        };
        match crate::rotation::seal(&inner.store, key, &job.context.member_id, token, now).await {
            Ok(()) => events::token_rotated(job.provider()),
            Err(error) => events::own_failure("rotated_token", &error, None),
        }
    }
}
