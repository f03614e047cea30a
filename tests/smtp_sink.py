#!/usr/bin/python3
"""A loopback SMTP sink for the alerts e-mail tests (Debian's python3-aiosmtpd).

Usage: smtp_sink.py DIR CERT KEY USER PASSWORD STARTTLS_PORT TLS_PORT

Listens on 127.0.0.1 on two ports: one offering STARTTLS (required
before AUTH and MAIL), one with TLS from the first byte. Both require a
login as USER/PASSWORD (AUTH PLAIN or LOGIN). Each accepted message is
written to DIR as <n>.eml (the raw RFC 5322 text), with <n>.json beside it
saying which listener, whether TLS was on and who logged in. Failed
logins are appended to DIR/refused.log. Prints "ready" once both listen,
then runs until stdin closes (the test ends it by closing it or killing
the process).
"""

import itertools
import json
import logging
import os
import ssl
import sys
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

# The implicit-TLS listener requires AUTH without aiosmtpd's STARTTLS
# (its connection is TLS already): aiosmtpd warns about that at start.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
# aiosmtpd itself still sets the deprecated Session.login_data.
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
logging.getLogger("mail.log").setLevel(logging.ERROR)

out_dir, cert, key, user, password = sys.argv[1:6]
starttls_port, tls_port = int(sys.argv[6]), int(sys.argv[7])
counter = itertools.count(1)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        auth_data is not None
        and auth_data.login == user.encode()
        and auth_data.password == password.encode()
    )
    if not ok:
        with open(os.path.join(out_dir, "refused.log"), "a") as f:
            f.write(f"{mechanism}\n")
    # handled=False: aiosmtpd answers the failure (535) itself; auth_data
    # is kept in the session (who logged in, for the test to read).
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


class Sink:
    def __init__(self, mode):
        self.mode = mode

    async def handle_DATA(self, server, session, envelope):
        n = next(counter)
        base = os.path.join(out_dir, f"{n}")
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".tmp", base + ".eml")
        meta = {
            "mode": self.mode,
            # A STARTTLS session records its TLS; on the other listener
            # the connection itself is TLS.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "login": (getattr(session.auth_data, "login", None) or b"").decode(
                errors="replace"
            ),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 Message accepted for delivery"


def tls_context():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


# Both listeners: loopback only, a login required for every message.
common = dict(
    hostname="127.0.0.1",
    authenticator=authenticator,
    auth_required=True,
    server_hostname="sink.test",
)
starttls = Controller(
    Sink("starttls"),
    port=starttls_port,
    tls_context=tls_context(),
    require_starttls=True,
    auth_require_tls=True,
    **common,
)
# TLS from the first byte: the SMTP session runs inside TLS.
tls = Controller(
    Sink("tls"),
    port=tls_port,
    ssl_context=tls_context(),
    # aiosmtpd counts only STARTTLS as TLS; this listener is all TLS.
    auth_require_tls=False,
    **common,
)

starttls.start()
tls.start()
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    starttls.stop()
    tls.stop()
