"""msal against the sim over https: tenant discovery (and AADSTS90002 for an unknown
tenant), client credentials, the authorization-code flow with nonce and id_token checks,
rotating refresh tokens, and errors returned as dicts."""

import hashlib
import urllib.parse

import msal

from common import (
    BASE, CA, MS_CLIENT, MS_REDIRECT, MS_SECRET, MS_TENANT, authorize, case, check,
)

GRAPH_DEFAULT = ["https://graph.microsoft.com/.default"]


def app(tenant=MS_TENANT, secret=MS_SECRET):
    return msal.ConfidentialClientApplication(
        MS_CLIENT,
        client_credential=secret,
        authority=f"{BASE}/microsoft/{tenant}",
        # The sim is not a Microsoft cloud: no instance discovery (it would call
        # login.microsoftonline.com), only the authority's own OpenID document.
        validate_authority=False,
        instance_discovery=False,
        verify=CA,
        token_cache=msal.TokenCache(),
    )


@case("client credentials: a token with roles; cached on the second call")
def client_credentials():
    client = app()
    first = client.acquire_token_for_client(scopes=GRAPH_DEFAULT)
    check("access_token" in first, first)
    check(first["token_type"] == "Bearer" and first["expires_in"] > 0, first)
    second = client.acquire_token_for_client(scopes=GRAPH_DEFAULT)
    check(second["access_token"] == first["access_token"], "msal serves it from its cache")
    check(second.get("token_source") == "cache", second.get("token_source"))


@case("the tenant's domain works as authority too")
def domain_authority():
    result = app(tenant="contoso.example").acquire_token_for_client(scopes=GRAPH_DEFAULT)
    check("access_token" in result, result)


@case("errors come back as dicts: wrong secret AADSTS7000215, bad scope AADSTS1002012")
def errors_as_dicts():
    wrong = app(secret="not-the-secret").acquire_token_for_client(scopes=GRAPH_DEFAULT)
    check(wrong.get("error") == "invalid_client", wrong)
    check(wrong.get("error_codes") == [7000215], wrong)
    check(wrong["error_description"].startswith("AADSTS7000215:"), wrong)
    check(wrong.get("correlation_id"), wrong)
    scope = app().acquire_token_for_client(scopes=["https://graph.microsoft.com/Mail.Read"])
    check(scope.get("error") == "invalid_scope" and scope["error_codes"] == [1002012], scope)


@case("an unknown tenant: discovery answers AADSTS90002 and msal refuses the authority")
def unknown_tenant():
    try:
        app(tenant="nosuch.example").acquire_token_for_client(scopes=GRAPH_DEFAULT)
        check(False, "msal accepts no authority without an OpenID document")
    except ValueError as error:
        # msal wraps the discovery failure; the body it read is on the chained error.
        check("Unable to get authority configuration" in str(error), str(error))
        cause = str(error.__context__ or error.__cause__)
        check("HTTP status: 400" in cause, cause)
        check("AADSTS90002" in cause and '"invalid_tenant"' in cause, cause)


@case("authorization code flow: state and nonce checked by msal, id_token claims, refresh")
def auth_code_flow():
    client = app()
    flow = client.initiate_auth_code_flow(
        ["Mail.Read"], redirect_uri=MS_REDIRECT,  # msal adds openid, profile, offline_access
        login_hint="katherine@contoso.example",
    )
    url, _, params = flow["auth_uri"].partition("?")
    query = authorize(url, dict(urllib.parse.parse_qsl(params)))
    result = client.acquire_token_by_auth_code_flow(flow, query)
    check("access_token" in result, result)
    claims = result["id_token_claims"]
    check(claims["aud"] == MS_CLIENT and claims["tid"] == MS_TENANT, claims)
    check(claims["preferred_username"] == "katherine@contoso.example", claims)
    # msal sends SHA-256(flow nonce) as the request's nonce and has already compared the
    # id_token's nonce with it (it raises on a mismatch).
    sent = hashlib.sha256(flow["nonce"].encode()).hexdigest()
    check(claims["nonce"] == sent, (claims, sent))
    check(claims["iss"] == f"{BASE}/microsoft/{MS_TENANT}/v2.0", claims)
    accounts = client.get_accounts()
    check([a["username"] for a in accounts] == ["katherine@contoso.example"], accounts)
    refresh = result["refresh_token"]
    again = client.acquire_token_by_refresh_token(refresh, ["Mail.Read"])
    check("access_token" in again and again["refresh_token"] != refresh,
          "refresh tokens rotate (microsoft.md §1.1)")
    bogus = client.acquire_token_by_refresh_token("1.not-a-token", ["Mail.Read"])
    check(bogus.get("error") == "invalid_grant" and bogus["error_codes"] == [70000], bogus)


CASES = [client_credentials, domain_authority, errors_as_dicts, unknown_tenant,
         auth_code_flow]
