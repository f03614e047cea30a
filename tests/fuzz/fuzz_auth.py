"""Schemathesis hooks for scripts/fuzz-api.sh.

- Every request carries a valid admin token: the fuzzer may end the
  admin's sessions (`POST /auth/logout-all`), so the token is fetched
  again right after it did.
- Cases that target the fuzzing admin's own account by id are dropped: a
  generated new password or role for it would lock the rest of the run out
  (every other account, created by the fuzzer itself, is fair game).
"""
import json
import os
import urllib.error
import urllib.request

import schemathesis

BASE = os.environ["WAKEDOCK_FUZZ_BASE"]
PASSWORD = os.environ["WAKEDOCK_FUZZ_PASSWORD"]


def _login():
    body = json.dumps({"username": "admin", "password": PASSWORD}).encode()
    req = urllib.request.Request(
        BASE + "/api/v1/auth/login",
        data=body,
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        # Shown in the run's output: why the token could not be had.
        raise RuntimeError(f"login as admin: {e.code} {e.read()[:300]!r}") from e


ADMIN_ID = _login()["user"]["id"]


# The token every case carries; replaced as soon as a case has ended the
# admin's sessions.
TOKEN = {"value": None}


@schemathesis.auth(refresh_interval=30)
class AdminToken:
    def get(self, case, ctx):
        TOKEN["value"] = _login()["access_token"]
        return TOKEN["value"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {TOKEN['value'] or data}"


@schemathesis.hook
def after_call(context, case, response):
    if os.environ.get("FUZZ_TRACE"):
        with open(os.environ["FUZZ_TRACE"], "a") as f:
            f.write(f"{case.method} {case.path} {response.status_code} {response.content[:120]!r}\n")
    if response.status_code == 401 and b"signed out" in (response.content or b""):
        TOKEN["value"] = _login()["access_token"]
    elif case.path == "/api/v1/auth/logout-all" and response.status_code == 204:
        TOKEN["value"] = _login()["access_token"]


@schemathesis.hook
def filter_case(context, case):
    return (case.path_parameters or {}).get("id") != ADMIN_ID
