//! `GET /connect/{provider}/callback`: the state taken back once and rechecked (cookie,
//! expiry, provider, the member and the link it started from), the code redeemed through
//! [`super::Exchange`], who signed in and the granted scopes checked; only then the sealed
//! refresh token is stored and the member made due.

use super::*;

/// `GET /connect/{provider}/callback?state=…&code=…` (or `&error=…`).
pub(crate) async fn callback(
    State(state): State<WebState>,
    Path(segment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let app = setup_of(&state)?;
    let (setup, provider) = flow_of(&app, &segment)?;
    let Some(state_text) = query.get("state").filter(|s| !s.is_empty()) else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "The provider's answer carries no state.",
        ));
    };
    // Before any read: the sign-in must have been started in this browser.
    let bound = crate::auth::cookie(&headers, CONNECT_COOKIE)
        .is_some_and(|cookie| setup.invites.binding_holds(state_text, &cookie));
    if !bound {
        tracing::warn!(provider = %provider, "connect callback without the browser's binding cookie refused");
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "This sign-in was not started in this browser: open your personal connect link here and sign in again.",
        ));
    }
    let pending = match app
        .store
        .take_connect_state(&state_hash(state_text), &setup.key)
        .await
    {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            tracing::info!(provider = %provider, "connect callback with an unknown or used state");
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "This sign-in was already completed or was not started by datacap.",
            ));
        }
        Err(error) => return Err(store_failure(&error)),
    };
    let now = OffsetDateTime::now_utc();
    if pending.expires_at <= now {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "This sign-in took too long and has expired.",
        ));
    }
    if pending.provider != provider {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "This sign-in was started for another provider.",
        ));
    }
    let (company, member) = (pending.company_id.as_str(), pending.member_id.as_str());
    // What `start` checked may have changed meanwhile: check it again before redeeming.
    let unknown = "datacap does not know this member (any more).";
    let context = member_context(&app, company, member, unknown).await?;
    if context.company.connection_mode != ConnectionMode::UserByUser
        || context.company.provider != provider
    {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "Your company no longer connects member by member with this provider.",
        ));
    }
    // The link the sign-in started from must still hold: it may have expired, or been
    // revoked (`datacap revoke-invites`, or used to connect in another tab) meanwhile.
    if pending
        .invite_expires
        .is_some_and(|expires| expires <= now.unix_timestamp())
    {
        tracing::info!(company, member, provider = %provider, "connect callback refused: the link it started from expired meanwhile");
        return Err(refused(
            StatusCode::FORBIDDEN,
            "The connect link you started from expired while you were signing in: ask your admin for a new one.",
        ));
    }
    match app.store.invites_not_before(member).await {
        Ok(Some(not_before))
            if pending.invite_issued.unwrap_or(i64::MIN) <= not_before.unix_timestamp() =>
        {
            tracing::info!(company, member, provider = %provider, "connect callback refused: the link it started from was revoked or used meanwhile");
            return Err(refused(
                StatusCode::FORBIDDEN,
                "The connect link you started from was revoked, or used to connect, while you were signing in: ask your admin for a new one.",
            ));
        }
        Ok(_) => {}
        Err(error) => return Err(store_failure(&error)),
    }
    if let Some(error) = query.get("error") {
        tracing::info!(company, member, provider = %provider, error = %error, "connect flow refused by the provider");
        let text = if error == "access_denied" {
            format!(
                "You declined access at {}, so datacap cannot import your email and calendar.",
                provider.display_name()
            )
        } else {
            format!(
                "{} answered with the error {error:?}.",
                provider.display_name()
            )
        };
        return Err(refused(StatusCode::BAD_REQUEST, &text));
    }
    let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "The provider's answer carries no authorization code.",
        ));
    };
    let Some(client) = setup.provider(provider) else {
        return Err(refused(
            StatusCode::NOT_FOUND,
            "Connecting to this provider is not set up.",
        ));
    };
    let redirect_uri = setup.redirect_uri(provider);
    let grant = match setup
        .exchange
        .exchange(
            provider,
            &context.credential_refs,
            code,
            &redirect_uri,
            &pending.verifier,
        )
        .await
    {
        Ok(grant) => grant,
        Err(error) => {
            tracing::warn!(company, member, provider = %provider, %error, "connect code exchange failed");
            return Err(refused(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "{} did not accept the sign-in: {error}",
                    provider.display_name()
                ),
            ));
        }
    };
    // The member's known aliases (the tenants file's `aliases`) count as the member's.
    let aliases = match app.store.member_aliases(member).await {
        Ok(aliases) => aliases,
        Err(error) => return Err(store_failure(&error)),
    };
    if let Err(problem) = whose_mailbox(
        &grant.identity,
        &context.member_email,
        &aliases,
        context.credential_refs.get("tenant_id").map(String::as_str),
    ) {
        let signed_in = grant.identity.addresses.first().map_or("", String::as_str);
        tracing::warn!(
            company,
            member,
            provider = %provider,
            signed_in,
            signed_in_tenant = grant.identity.tenant_id.as_deref(),
            "connect flow refused: the account that signed in is not the member's"
        );
        let text = match problem {
            Mismatch::Address => format!(
                "You signed in as {}, but this link is for {}. Sign out at {} and sign in as {}.",
                if signed_in.is_empty() {
                    "an account without an address"
                } else {
                    signed_in
                },
                context.member_email,
                provider.display_name(),
                context.member_email
            ),
            Mismatch::Tenant => format!(
                "You signed in with an account of another organization than your company's. Sign in as {} with your work account.",
                context.member_email
            ),
        };
        return Err(refused(StatusCode::FORBIDDEN, &text));
    }
    let granted: Vec<String> = grant.scopes.iter().map(|s| normalized(s)).collect();
    let missing: Vec<&str> = client
        .required_scopes
        .iter()
        .filter(|needed| !granted.contains(&normalized(needed)))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        tracing::info!(company, member, provider = %provider, missing = ?missing, "connect flow lacks scopes");
        return Err(refused(
            StatusCode::BAD_REQUEST,
            &format!(
                "Access was granted without {}: tick every permission on {}'s consent screen.",
                missing.join(", "),
                provider.display_name()
            ),
        ));
    }
    if let Err(error) = app
        .store
        .put_member_grant(
            member,
            MemberConnection::Connected,
            &grant.scopes,
            Some(&grant.refresh_token),
            &setup.key,
            now,
        )
        .await
    {
        return Err(store_failure(&error));
    }
    if let Err(error) = app.store.make_due(member, None, now).await {
        tracing::warn!(company, member, %error, "connected, but the immediate poll could not be scheduled");
    }
    // The link has done its job: it (and every older one) connects nobody again.
    if let Err(error) = app.store.revoke_invites(member, now).await {
        tracing::warn!(company, member, %error, "connected, but the used connect link could not be voided");
    }
    tracing::info!(company, member, provider = %provider, "member connected");
    Ok(member_page(
        StatusCode::OK,
        "You’re connected",
        &format!(
            "{} is connected to {}: datacap imports your email and calendar from there, starting in a moment.",
            context.member_email,
            provider.display_name()
        ),
        &["You can close this tab: there is nothing else to do."],
    ))
}

/// Why the signed-in account is not the member's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mismatch {
    /// None of its addresses is the member's.
    Address,
    /// Its Microsoft tenant is not the company's.
    Tenant,
}

/// The account that signed in must be the member's mailbox: one of its addresses is the
/// member's address or one of the member's known aliases (compared without case), and
/// (Microsoft, when the company's tenant is known) its `tid` is the company's tenant.
pub(super) fn whose_mailbox(
    identity: &Identity,
    member_email: &str,
    member_aliases: &[String],
    company_tenant: Option<&str>,
) -> Result<(), Mismatch> {
    let members: Vec<&str> = std::iter::once(member_email)
        .chain(member_aliases.iter().map(String::as_str))
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .collect();
    if !identity.addresses.iter().any(|address| {
        members
            .iter()
            .any(|own| address.trim().eq_ignore_ascii_case(own))
    }) {
        return Err(Mismatch::Address);
    }
    if let Some(expected) = company_tenant
        && !identity
            .tenant_id
            .as_deref()
            .is_some_and(|tid| tid.eq_ignore_ascii_case(expected))
    {
        return Err(Mismatch::Tenant);
    }
    Ok(())
}

/// A granted scope in the form the required list uses.
pub(super) fn normalized(scope: &str) -> String {
    scope
        .strip_prefix("https://graph.microsoft.com/")
        .unwrap_or(scope)
        .to_ascii_lowercase()
}
