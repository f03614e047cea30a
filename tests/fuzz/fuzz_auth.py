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
import http.client

import schemathesis

BASE = os.environ["WAKEDOCK_FUZZ_BASE"]
PASSWORD = os.environ["WAKEDOCK_FUZZ_PASSWORD"]


def _login():
    # From 127.0.0.2: the fuzzer's own wrong passwords for `admin` (from
    # 127.0.0.1) back off its address only, never this one.
    host, port = BASE.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=("127.0.0.2", 0))
    body = json.dumps({"username": "admin", "password": PASSWORD})
    conn.request("POST", "/api/v1/auth/login", body, {"content-type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status != 200:
        # Shown in the run's output: why the token could not be had.
        raise RuntimeError(f"login as admin: {r.status} {data[:300]!r}")
    return json.loads(data)


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
