//! The connect flow's own tests: invites, states, authorize URLs, whose mailbox.

use super::redeem::*;
use super::*;
use time::macros::datetime;

#[test]
fn invites_are_signed_bound_and_expire() {
    let now = datetime!(2026-11-29 12:00 UTC);
    let key = InviteKey::new([3; 32]);
    let invite = key.invite("acme", "ana", now + time::Duration::days(1));
    assert_eq!(
        key.check(&invite, now),
        Ok(("acme".to_owned(), "ana".to_owned()))
    );
    assert_eq!(
        key.check(&invite, now + time::Duration::days(2)),
        Err(InviteProblem::Expired)
    );
    assert_eq!(
        InviteKey::new([4; 32]).check(&invite, now),
        Err(InviteProblem::BadSignature)
    );
    // Swapping the member keeps the signature of another payload: refused.
    let (payload, signature) = invite.rsplit_once('.').unwrap();
    let forged = payload.replace(&b64(b"ana"), &b64(b"bob"));
    assert_eq!(
        key.check(&format!("{forged}.{signature}"), now),
        Err(InviteProblem::BadSignature)
    );
    assert_eq!(key.check("nonsense", now), Err(InviteProblem::Malformed));
    // The issue time travels signed with the invite.
    let issued = key.invite_issued(
        "acme",
        "ana",
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    );
    assert_eq!(
        key.check_issued(&issued, now),
        Ok((
            "acme".to_owned(),
            "ana".to_owned(),
            (now - time::Duration::hours(1)).unix_timestamp()
        ))
    );
    assert!(!format!("{key:?}").contains('3'));
}

/// One row: the identity the provider reported, the member's address and the
/// company's tenant, and the verdict.
fn check(
    addresses: &[&str],
    tid: Option<&str>,
    member: &str,
    tenant: Option<&str>,
) -> Result<(), Mismatch> {
    check_aliased(addresses, tid, member, &[], tenant)
}

/// The same, with the member's known aliases.
fn check_aliased(
    addresses: &[&str],
    tid: Option<&str>,
    member: &str,
    aliases: &[&str],
    tenant: Option<&str>,
) -> Result<(), Mismatch> {
    let identity = Identity {
        addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        tenant_id: tid.map(str::to_owned),
    };
    let aliases: Vec<String> = aliases.iter().map(|a| (*a).to_owned()).collect();
    whose_mailbox(&identity, member, &aliases, tenant)
}

#[test]
fn a_known_alias_is_the_members_own_address() {
    const T: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
    let peter = "peter@initech.example";
    let aliases = ["P.Gibbons@initech.example", "peter@initech-old.example"];
    // Google's tokeninfo reports the alias the member is declared under, case aside.
    assert_eq!(
        check_aliased(&["p.gibbons@initech.example"], None, peter, &aliases, None),
        Ok(())
    );
    assert_eq!(
        check_aliased(&["peter@initech-old.example"], None, peter, &aliases, None),
        Ok(())
    );
    // The primary address still counts beside the aliases.
    assert_eq!(check_aliased(&[peter], None, peter, &aliases, None), Ok(()));
    // An address that is neither.
    assert_eq!(
        check_aliased(&["mallory@initech.example"], None, peter, &aliases, None),
        Err(Mismatch::Address)
    );
    // An empty alias is no wildcard.
    assert_eq!(
        check_aliased(&[""], None, peter, &["", " "], None),
        Err(Mismatch::Address)
    );
    // Graph: the alias as `mail`; the tenant still decides.
    assert_eq!(
        check_aliased(
            &["megan.b@contoso.example", "0f1e@contoso.example"],
            Some(T),
            "megan@contoso.example",
            &["megan.b@contoso.example"],
            Some(T)
        ),
        Ok(())
    );
    assert_eq!(
        check_aliased(
            &["megan.b@contoso.example"],
            Some("00000000-0000-0000-0000-000000000001"),
            "megan@contoso.example",
            &["megan.b@contoso.example"],
            Some(T)
        ),
        Err(Mismatch::Tenant)
    );
}

#[test]
fn only_the_members_own_mailbox_in_the_companys_tenant_is_accepted() {
    const T: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
    // Gmail's emailAddress, case aside.
    assert_eq!(
        check(
            &["Peter@initech.example"],
            None,
            "peter@initech.example",
            None
        ),
        Ok(())
    );
    // A colleague (issue 17, finding 1).
    assert_eq!(
        check(
            &["mallory@initech.example"],
            None,
            "peter@initech.example",
            None
        ),
        Err(Mismatch::Address)
    );
    // No address at all is never the member.
    assert_eq!(
        check(&[], None, "peter@initech.example", None),
        Err(Mismatch::Address)
    );
    assert_eq!(check(&[""], None, "", None), Err(Mismatch::Address));
    // Graph: mail or userPrincipalName may be the member's address.
    assert_eq!(
        check(
            &["megan.b@contoso.example", "megan@contoso.example"],
            Some(T),
            "megan@contoso.example",
            Some(T)
        ),
        Ok(())
    );
    // The same address from another tenant (an outsider's look-alike account).
    assert_eq!(
        check(
            &["megan@contoso.example"],
            Some("00000000-0000-0000-0000-000000000001"),
            "megan@contoso.example",
            Some(T)
        ),
        Err(Mismatch::Tenant)
    );
    assert_eq!(
        check(
            &["megan@contoso.example"],
            None,
            "megan@contoso.example",
            Some(T)
        ),
        Err(Mismatch::Tenant)
    );
    // Without a known tenant only the address decides.
    assert_eq!(
        check(
            &["megan@contoso.example"],
            Some(T),
            "megan@contoso.example",
            None
        ),
        Ok(())
    );
}

#[test]
fn the_binding_cookie_is_the_states_own() {
    let key = InviteKey::new([3; 32]);
    let cookie = key.binding("state-1");
    assert!(key.binding_holds("state-1", &cookie));
    assert!(!key.binding_holds("state-2", &cookie));
    assert!(!InviteKey::new([4; 32]).binding_holds("state-1", &cookie));
    assert!(!key.binding_holds("state-1", "garbage!"));
}

#[test]
fn scopes_compare_without_the_graph_prefix() {
    assert_eq!(
        normalized("https://graph.microsoft.com/Mail.Read"),
        "mail.read"
    );
    assert_eq!(normalized("Mail.Read"), "mail.read");
}
