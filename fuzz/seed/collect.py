#!/usr/bin/env python3
"""Seeds the fuzz corpora with the sim's real answers (docs/fuzzing.md).

Starts `datacap sim --scenario config/sim/faults.toml`, signs in as each tenant's app
(Google: a JWT-bearer assertion signed with the FAKE test key; Microsoft: client
credentials), walks every member's mail and calendar endpoints and writes each answer,
success or error, with the target's selector and status bytes in front, under
fuzz/corpus/<target>/. Then adds the repository's config and tenants examples.

usage: fuzz/seed/collect.py path/to/datacap   (run from the repository root)
"""
import base64, hashlib, json, os, subprocess, sys, time, urllib.error, urllib.parse, urllib.request
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "seeds")
PORT = int(os.environ.get("SEED_PORT", "18431"))
BASE = f"http://127.0.0.1:{PORT}"
GOOGLE_USERS = ["admin", "quirky", "nodwd", "scope", "policy", "unlicensed", "suspended", "gone",
                "badsig", "busy", "quota", "flaky", "truncated", "stale"]
GOOGLE_APIS = {"profile": 0, "list": 1, "get": 2, "history": 3, "events": 4, "users": 5}
STATUSES = [400, 401, 403, 404, 409, 410, 429, 500, 502, 503]


def save(target, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


def status_bytes(status):
    if status in STATUSES:
        return bytes([STATUSES.index(status), 0])
    return bytes([status >> 8, (status & 0xFF) | 1]) if status & 1 else bytes([status >> 8, status & 0xFF])


def fetch(url, data=None, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = urllib.parse.urlencode(data).encode() if data else None
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except Exception:  # resets, timeouts: nothing to keep
        return None, b""


def parse(body):
    try:
        return json.loads(body)
    except ValueError:
        return {}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def assertion(subject, scope):
    with open(os.path.join(ROOT, "config/sim/keys/FAKE-TEST-ONLY-google-service-account.key.pem"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    now = int(time.time())
    claims = {"iss": "datacap@globex-sim.iam.gserviceaccount.com", "sub": subject, "scope": scope,
              "aud": f"{BASE}/google/token", "iat": now, "exp": now + 3600}
    head = b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "sim-key-1"}).encode())
    body = b64(json.dumps(claims).encode())
    signature = key.sign(head + b"." + body, padding.PKCS1v15(), hashes.SHA256())
    return (head + b"." + body + b"." + b64(signature)).decode()


def google_token(subject, scope):
    status, body = fetch(f"{BASE}/google/token", {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": assertion(subject, scope)})
    if status != 200:
        if status:
            save("google_error", bytes([128]) + status_bytes(status) + body)
        return None
    return json.loads(body)["access_token"]


def google_api(api, status, body):
    if status is None:
        return
    if status == 200:
        page = {"list": 0, "history": 1, "get": 2, "events": 3}.get(api)
        if page is not None:
            save("google_pages", bytes([page]) + body)
    else:
        save("google_error", bytes([GOOGLE_APIS[api]]) + status_bytes(status) + body)


def google():
    gmail = "https://www.googleapis.com/auth/gmail.readonly"
    calendar = "https://www.googleapis.com/auth/calendar.readonly"
    directory = "https://www.googleapis.com/auth/admin.directory.user.readonly"
    admin = google_token("admin@globex.example", directory)
    if admin:
        status, body = fetch(f"{BASE}/google/admin/directory/v1/users?customer=my_customer", token=admin)
        google_api("users", status, body)
    for user in GOOGLE_USERS:
        email = f"{user}@globex.example"
        token = google_token(email, gmail)
        if token:
            g = f"{BASE}/google/gmail/v1/users/me"
            status, body = fetch(f"{g}/profile", token=token)
            google_api("profile", status, body)
            history = parse(body).get("historyId", "1") if status == 200 else "1"
            status, body = fetch(f"{g}/messages?maxResults=5", token=token)
            google_api("list", status, body)
            if status == 200:
                for ref in parse(body).get("messages", [])[:2]:
                    s, b = fetch(f"{g}/messages/{ref['id']}?format=metadata", token=token)
                    google_api("get", s, b)
            start = str(max(1, int(history) - 3)) if history.isdigit() else "1"
            status, body = fetch(f"{g}/history?startHistoryId={start}&historyTypes=messageAdded", token=token)
            google_api("history", status, body)
            s, b = fetch(f"{g}/messages/does-not-exist?format=metadata", token=token)
            google_api("get", s, b)
        token = google_token(email, calendar)
        if token:
            c = f"{BASE}/google/calendar/v3/calendars/primary/events"
            status, body = fetch(f"{c}?maxResults=5&singleEvents=true", token=token)
            google_api("events", status, body)
            status, body = fetch(f"{c}?syncToken=stale", token=token)
            google_api("events", status, body)
    # Refused outright: a wrong client secret and a code nobody issued.
    status, body = fetch(f"{BASE}/google/token", {"grant_type": "refresh_token", "refresh_token": "nope",
                                                   "client_id": "globex-client.apps.googleusercontent.com",
                                                   "client_secret": "wrong"})
    if status:
        save("google_error", bytes([129]) + status_bytes(status) + body)
    status, body = fetch(f"{BASE}/google/token", {"grant_type": "authorization_code", "code": "nope",
                                                   "client_id": "globex-client.apps.googleusercontent.com",
                                                   "client_secret": "globex-secret", "redirect_uri": "http://x"})
    if status:
        save("google_error", bytes([130]) + status_bytes(status) + body)


GOOGLE_FAULTS = ["rate_limited", "server_error", "service_unavailable", "mailbox_not_enabled", "token_expired",
                 "insufficient_permissions", "insufficient_permissions_no_errors", "domain_policy",
                 "precondition_failed", "not_a_calendar_user", "delegation_denied", "access_not_configured",
                 "rate_limit_exceeded", "user_rate_limit_exceeded", "daily_limit_exceeded", "quota_exceeded",
                 "too_many_concurrent_requests", "invalid_credentials_documented", "full_sync_required",
                 "updated_min_too_long_ago", "calendar_not_found", "truncated_json"]
GOOGLE_TOKEN_FAULTS = ["delegation_unauthorized_client", "invalid_client", "invalid_email", "not_a_valid_email",
                       "account_deleted", "invalid_jwt_signature", "jwt_not_short_lived", "account_not_found",
                       "deleted_client", "internal_failure", "admin_policy_enforced", "invalid_rapt"]
GRAPH_FAULTS = ["rate_limited", "server_error", "service_unavailable", "access_denied", "application_access_policy",
                "application_access_policy_documented", "mailbox_not_enabled_legacy", "mailbox_not_supported",
                "invalid_user", "non_existent_mailbox", "application_throttled", "invalid_authentication_token",
                "mailbox_not_enabled", "truncated_json"]
ENTRA_FAULTS = ["consent_required", "admin_consent_required", "app_not_in_tenant", "conditional_access",
                "security_policy", "assignment_required", "app_disabled", "refresh_token_expired",
                "grant_expired_or_revoked", "fresh_token_needed", "invalid_refresh_token", "mfa_required",
                "user_disabled", "user_not_found", "invalid_client_secret", "client_secret_expired", "invalid_tenant",
                "tenant_throttled", "loop_detected", "temporarily_unavailable"]


def fault(tenant, user, name, endpoint=None):
    body = {"tenant": tenant, "fault": name, "times": 1}
    if user:
        body["user"] = user
    if endpoint:
        body["endpoint"] = endpoint
    if name in ("rate_limited", "server_error", "service_unavailable", "tenant_throttled"):
        body["retry_after"] = 3
    request = urllib.request.Request(f"{BASE}/_sim/faults", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10).read()
        return True
    except urllib.error.HTTPError:
        return False


def clear():
    request = urllib.request.Request(f"{BASE}/_sim/faults/clear", data=b"{}", headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).read()


def google_faults():
    gmail = "https://www.googleapis.com/auth/gmail.readonly"
    calendar = "https://www.googleapis.com/auth/calendar.readonly"
    email = "admin@globex.example"
    for name in GOOGLE_TOKEN_FAULTS:
        if fault("globex", email, name, "token"):
            google_token(email, gmail)
        clear()
    for name in GOOGLE_FAULTS:
        for scope, api, url in [(gmail, "list", "gmail/v1/users/me/messages?maxResults=5"),
                                (calendar, "events", "calendar/v3/calendars/primary/events?maxResults=5")]:
            token = google_token(email, scope)
            if token and fault("globex", email, name):
                status, body = fetch(f"{BASE}/google/{url}", token=token)
                google_api(api, status, body)
            clear()


def microsoft():
    app = {"grant_type": "client_credentials", "client_id": "aa11bb22-cc33-4d44-8e55-ff6677889900",
           "client_secret": "fabrikam-secret", "scope": "https://graph.microsoft.com/.default"}
    for tenant in ["fabrikam.example", "umbrella.example"]:
        status, body = fetch(f"{BASE}/microsoft/{tenant}/oauth2/v2.0/token", app)
        if status != 200:
            save("graph_error", bytes([1]) + status_bytes(status) + body)
    wrong = dict(app, client_secret="wrong")
    status, body = fetch(f"{BASE}/microsoft/fabrikam.example/oauth2/v2.0/token", wrong)
    save("graph_error", bytes([1]) + status_bytes(status) + body)
    status, body = fetch(f"{BASE}/microsoft/fabrikam.example/oauth2/v2.0/token", app)
    token = json.loads(body)["access_token"]
    save("graph_error", bytes([2, 0, 0]) + token.encode())
    graph = f"{BASE}/graph/v1.0"
    for name in ENTRA_FAULTS:
        if fault("fabrikam", None, name, "token"):
            status, body = fetch(f"{BASE}/microsoft/fabrikam.example/oauth2/v2.0/token", app)
            if status and status != 200:
                save("graph_error", bytes([1]) + status_bytes(status) + body)
        clear()
    for name in GRAPH_FAULTS:
        if fault("fabrikam", "megan@fabrikam.example", name):
            status, body = fetch(f"{graph}/users/megan@fabrikam.example/mailFolders/inbox/messages/delta", token=token)
            if status and status != 200:
                save("graph_error", bytes([0]) + status_bytes(status) + body)
        clear()
    for user in ["megan", "raop", "nolicence", "throttled", "resync", "nobody"]:
        for selector, path in [(0, "mailFolders/inbox/messages/delta?$top=3"),
                               (1, "calendarView/delta?startDateTime=2000-01-01T00:00:00Z&endDateTime=2100-01-01T00:00:00Z")]:
            pages, url = [], f"{graph}/users/{user}@fabrikam.example/{path}"
            for _ in range(4):
                status, body = fetch(url, token=token)
                if status != 200:
                    if status:
                        save("graph_error", bytes([0]) + status_bytes(status) + body)
                    break
                pages.append(body)
                url = parse(body).get("@odata.nextLink")
                if not url:
                    break
            if pages:
                save("graph_delta", bytes([selector]) + b"\xff".join(pages))
                save("graph_delta", bytes([selector]) + pages[0])


def files():
    for target, names in [("config", ["config/datacap.toml"]),
                          ("tenants", ["config/tenants.example.toml", "config/demo/tenants.toml"]),
                          ("classify", ["config/examples/classify.json", "config/examples/classify-team.json"])]:
        for name in names:
            with open(os.path.join(ROOT, name), "rb") as f:
                save(target, f.read())
    save("config", b"[worker]\nconcurrency = 4\n\xffDATACAP_DATABASE__URL=postgres://x@127.0.0.1/d\nDATACAP_WORKER__EMAIL_INTERVAL=5m\n")


def main():
    sim = subprocess.Popen([sys.argv[1], "sim", "--scenario", "config/sim/faults.toml", "--listen", f"127.0.0.1:{PORT}"],
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if fetch(f"{BASE}/google/token", {"grant_type": "x"})[0]:
                break
            time.sleep(0.2)
        google()
        google_faults()
        microsoft()
        files()
    finally:
        sim.terminate()
        sim.wait()


if __name__ == "__main__":
    main()
