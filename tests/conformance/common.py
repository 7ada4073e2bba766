"""What every suite shares: where the sim is, its CA, the scenario's names, and checks.

The Rust test `python_conformance_suite` (crates/sim/tests/sim.rs) starts the sim over
https with config/sim/small.toml and runs run.py with these variables set:
SIM_BASE (https://127.0.0.1:PORT), SIM_CA (the test CA's PEM file), SIM_CONFIG_DIR
(config/sim). Every expectation below is the provider's documented behaviour
(docs/sim.md cites each), not whatever the sim happens to do.
"""

import json
import os
import ssl
import urllib.parse
import urllib.request

BASE = os.environ["SIM_BASE"].rstrip("/")
CA = os.environ["SIM_CA"]
CONFIG_DIR = os.environ["SIM_CONFIG_DIR"]

# config/sim/small.toml
GOOGLE_SA = "datacap@datacap-sim.iam.gserviceaccount.com"
GOOGLE_CLIENT = "sim-google-client.apps.googleusercontent.com"
GOOGLE_SECRET = "sim-google-secret"
GOOGLE_REDIRECT = "http://127.0.0.1:8080/oauth/google/callback"
MS_TENANT = "8f3e1c52-2d4a-4c1e-9b7a-3f5d6e7a8b9c"
MS_CLIENT = "5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
MS_SECRET = "sim-microsoft-secret"
MS_REDIRECT = "http://127.0.0.1:8080/oauth/microsoft/callback"

GMAIL = "https://www.googleapis.com/auth/gmail.readonly"
CALENDAR = "https://www.googleapis.com/auth/calendar.readonly"
DIRECTORY = "https://www.googleapis.com/auth/admin.directory.user.readonly"

_TLS = ssl.create_default_context(cafile=CA)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(
    urllib.request.HTTPSHandler(context=_TLS), _NoRedirect()
)


def http(method, url, body=None):
    """(status, headers, text) of a plain request, redirects not followed."""
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _OPENER.open(request) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def control(path, body):
    status, _, text = http("POST", f"{BASE}/_sim/{path}", body)
    check(200 <= status < 300, f"control {path}: {status} {text}")
    return json.loads(text) if text else None


def sim_users():
    _, _, text = http("GET", f"{BASE}/_sim/users")
    return json.loads(text)


def authorize(url, params):
    """Follows a sim authorize endpoint to its redirect; returns the redirect's query."""
    status, headers, text = http("GET", f"{url}?{urllib.parse.urlencode(params)}")
    check(status == 302, f"authorize: {status} {text}")
    location = headers.get("Location") or headers.get("location")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))


PASSED = []


def check(condition, what):
    if not condition:
        raise AssertionError(what)


def case(name):
    """Marks a test function; run.py runs every case of every suite and counts them."""

    def mark(function):
        function.case_name = name
        return function

    return mark
