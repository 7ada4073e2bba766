"""google-auth + google-api-python-client (static discovery documents) against the sim:
service-account delegation, user refresh tokens and id_tokens, Gmail, Calendar and
Directory lists with paging and sync tokens, and errors as Google's clients parse them."""

import json
import os

import google.auth.transport.requests
import google_auth_httplib2
import httplib2
import requests
from google.oauth2 import credentials as user_credentials
from google.oauth2 import id_token
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from common import (
    BASE, CA, CALENDAR, CONFIG_DIR, DIRECTORY, GMAIL, GOOGLE_CLIENT, GOOGLE_REDIRECT,
    GOOGLE_SA, GOOGLE_SECRET, authorize, case, check, control, sim_users,
)

TOKEN_URL = f"{BASE}/google/token"


def delegated(subject, scopes):
    with open(os.path.join(CONFIG_DIR, "keys/FAKE-TEST-ONLY-google-service-account.key.pem")) as f:
        key = f.read()
    info = {
        "type": "service_account",
        "project_id": "datacap-sim",
        "private_key_id": "sim",
        "private_key": key,
        "client_email": GOOGLE_SA,
        "client_id": "100000000000000000001",
        "token_uri": TOKEN_URL,
    }
    return service_account.Credentials.from_service_account_info(
        info, scopes=scopes, subject=subject
    )


def service(name, version, creds, endpoint):
    http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http(ca_certs=CA))
    return build(
        name, version, http=http, static_discovery=True,
        client_options={"api_endpoint": endpoint},
    )


def gmail(creds):
    return service("gmail", "v1", creds, f"{BASE}/google/")


def calendar(creds):
    return service("calendar", "v3", creds, f"{BASE}/google/calendar/v3/")


def directory(creds):
    return service("admin", "directory_v1", creds, f"{BASE}/google/")


def reason(error):
    body = json.loads(error.content)
    return error.resp.status, body["error"]["errors"][0]["reason"], body


def refusal(call, what):
    """Executes `call`, which the sim must refuse: the answer's status, reason and body."""
    try:
        call.execute()
    except HttpError as error:
        return reason(error)
    raise AssertionError(what)


def request():
    session = requests.Session()
    session.verify = CA
    return google.auth.transport.requests.Request(session=session)


@case("google-auth: delegated token, and unauthorized_client for a scope not delegated")
def delegation():
    creds = delegated("ada@acme.example", [GMAIL])
    creds.refresh(request())
    check(creds.token and creds.valid, "a delegated token")
    bad = delegated("ada@acme.example", ["https://mail.google.com/"])
    try:
        bad.refresh(request())
        check(False, "a scope outside delegated_scopes is refused")
    except google.auth.exceptions.RefreshError as error:
        check("unauthorized_client" in str(error), str(error))
    nobody = delegated("nobody@acme.example", [GMAIL])
    try:
        nobody.refresh(request())
        check(False, "an unknown sub is refused")
    except google.auth.exceptions.RefreshError as error:
        check("Invalid email or User ID" in str(error), str(error))


@case("gmail: profile, messages.list paging with list_next, q and labelIds, messages.get")
def gmail_lists():
    api = gmail(delegated("ada@acme.example", [GMAIL]))
    profile = api.users().getProfile(userId="me").execute()
    check(profile["emailAddress"] == "ada@acme.example", profile)
    ids = []
    req = api.users().messages().list(userId="me", maxResults=5)
    while req is not None:
        page = req.execute()
        ids += [m["id"] for m in page.get("messages", [])]
        req = api.users().messages().list_next(req, page)
    check(len(ids) == 12 and len(set(ids)) == 12, ids)
    first = api.users().messages().get(
        userId="me", id=ids[3], format="metadata", metadataHeaders=["Subject"]
    ).execute()
    check([h["name"] for h in first["payload"]["headers"]] == ["Subject"], first)
    after = int(first["internalDate"]) // 1000
    newer = api.users().messages().list(userId="me", q=f"after:{after}").execute()
    check(len(newer["messages"]) == 4, newer)
    sent = api.users().messages().list(userId="me", labelIds=["SENT"]).execute()
    check("messages" not in sent, sent)
    try:
        api.users().messages().list(userId="me", labelIds=["Label_9"]).execute()
        check(False, "an unknown label is a 400")
    except HttpError as error:
        status, why, body = reason(error)
        check((status, why) == (400, "invalidArgument"), body)
        check(error.reason == "Invalid label: Label_9", error.reason)


@case("gmail: history.list after a change, and 404 for a stale startHistoryId")
def gmail_history():
    api = gmail(delegated("ada@acme.example", [GMAIL]))
    start = api.users().getProfile(userId="me").execute()["historyId"]
    control("mail", {"tenant": "acme", "user": "ada@acme.example", "add": 2})
    history = api.users().history().list(userId="me", startHistoryId=start).execute()
    added = [r for r in history.get("history", []) if "messagesAdded" in r]
    check(len(added) == 2, history)
    control("expire", {"tenant": "acme", "user": "ada@acme.example", "what": "cursors"})
    try:
        api.users().history().list(userId="me", startHistoryId=start).execute()
        check(False, "a stale startHistoryId is a 404")
    except HttpError as error:
        check(error.resp.status == 404, error.content)


@case("gmail: delegation denied for another user's mailbox; scope errors parse")
def gmail_errors():
    api = gmail(delegated("ada@acme.example", [GMAIL]))
    status, why, body = refusal(
        api.users().getProfile(userId="grace@acme.example"), "another mailbox is refused"
    )
    check((status, why) == (403, "forbidden"), body)
    cal_only = gmail(delegated("ada@acme.example", [CALENDAR]))
    status, why, body = refusal(
        cal_only.users().getProfile(userId="me"), "a calendar token cannot read Gmail"
    )
    check((status, why) == (403, "insufficientPermissions"), body)
    check(body["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT", body)


@case("calendar: full pass with list_next, nextSyncToken on the last page, incremental, 410")
def calendar_sync():
    api = calendar(delegated("ada@acme.example", [CALENDAR]))
    events, sync = [], None
    req = api.events().list(calendarId="primary", maxResults=4, singleEvents=True)
    while req is not None:
        page = req.execute()
        events += page.get("items", [])
        if "nextPageToken" in page:
            check("nextSyncToken" not in page, "nextSyncToken only on the last page")
        sync = page.get("nextSyncToken", sync)
        req = api.events().list_next(req, page)
    check(len(events) == 6 and sync, (len(events), sync))
    for event in events:
        check(len(event["updated"]) == 24 and event["updated"].endswith("Z"), event["updated"])
    control("events", {"tenant": "acme", "user": "ada@acme.example", "add": 1,
                       "remove": [events[0]["id"]]})
    changes = api.events().list(calendarId="primary", syncToken=sync).execute()
    statuses = sorted(e["status"] for e in changes["items"])
    check(statuses == ["cancelled", "confirmed"], changes)
    status, why, body = refusal(
        api.events().list(calendarId="primary", syncToken=sync, timeMin="2026-01-01T00:00:00Z"),
        "syncToken with timeMin is a 400",
    )
    check((status, why) == (400, "syncTokenWithRequestRestrictions"), body)
    try:
        api.events().list(calendarId="primary", orderBy="startTime").execute()
        check(False, "orderBy=startTime without singleEvents is a 400")
    except HttpError as error:
        check(reason(error)[:2] == (400, "invalid"), error.content)
    control("expire", {"tenant": "acme", "user": "ada@acme.example", "what": "cursors"})
    try:
        api.events().list(calendarId="primary", syncToken=changes["nextSyncToken"]).execute()
        check(False, "an expired sync token is a 410")
    except HttpError as error:
        check(reason(error)[:2] == (410, "fullSyncRequired"), error.content)


@case("directory: users.list as an admin with query and paging; 403 for a non-admin")
def directory_lists():
    api = directory(delegated("admin@acme.example", [DIRECTORY]))
    users = []
    req = api.users().list(customer="my_customer", maxResults=2, orderBy="email")
    while req is not None:
        page = req.execute()
        users += page.get("users", [])
        req = api.users().list_next(req, page)
    check(len(users) == 3, [u["primaryEmail"] for u in users])
    one = api.users().list(customer="my_customer", query="email:ada@acme.example").execute()
    check([u["primaryEmail"] for u in one["users"]] == ["ada@acme.example"], one)
    member = directory(delegated("ada@acme.example", [DIRECTORY]))
    try:
        member.users().list(customer="my_customer").execute()
        check(False, "a non-admin sub is refused")
    except HttpError as error:
        check(reason(error)[:2] == (403, "forbidden"), error.content)


@case("google-auth: user credentials refresh; the id_token verifies against the JWKS")
def user_refresh_and_id_token():
    query = authorize(f"{BASE}/google/authorize", {
        "client_id": GOOGLE_CLIENT, "redirect_uri": GOOGLE_REDIRECT, "response_type": "code",
        "scope": f"openid email {GMAIL}", "state": "s", "nonce": "nonce-1",
        "login_hint": "grace@acme.example", "access_type": "offline",
    })
    session = requests.Session()
    session.verify = CA
    exchanged = session.post(TOKEN_URL, data={
        "grant_type": "authorization_code", "code": query["code"],
        "client_id": GOOGLE_CLIENT, "client_secret": GOOGLE_SECRET,
        "redirect_uri": GOOGLE_REDIRECT,
    }).json()
    discovery = session.get(f"{BASE}/google/.well-known/openid-configuration").json()
    claims = id_token.verify_token(
        exchanged["id_token"], request(), audience=GOOGLE_CLIENT,
        certs_url=discovery["jwks_uri"],
    )
    check(claims["iss"] == discovery["issuer"], claims)
    check(claims["email"] == "grace@acme.example" and claims["hd"] == "acme.example", claims)
    check(claims["nonce"] == "nonce-1", claims)
    grace = next(u for u in sim_users() if u["email"] == "grace@acme.example")
    check(claims["sub"] == grace["id"], (claims, grace))
    creds = user_credentials.Credentials(
        None, refresh_token=exchanged["refresh_token"], token_uri=TOKEN_URL,
        client_id=GOOGLE_CLIENT, client_secret=GOOGLE_SECRET, scopes=[GMAIL],
    )
    creds.refresh(request())
    profile = gmail(creds).users().getProfile(userId="me").execute()
    check(profile["emailAddress"] == "grace@acme.example", profile)
    wrong = user_credentials.Credentials(
        None, refresh_token="1//not-a-token", token_uri=TOKEN_URL,
        client_id=GOOGLE_CLIENT, client_secret=GOOGLE_SECRET,
    )
    try:
        wrong.refresh(request())
        check(False, "an unknown refresh token is refused")
    except google.auth.exceptions.RefreshError as error:
        check("invalid_grant" in str(error), str(error))


CASES = [delegation, gmail_lists, gmail_history, gmail_errors, calendar_sync,
         directory_lists, user_refresh_and_id_token]
