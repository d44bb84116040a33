"""`cascade token hash`: the SHA-256 of a bearer token, as gateway.tenants and http.api_keys_sha256 take it."""

from __future__ import annotations

import argparse
import hashlib
import sys


def main(args: argparse.Namespace) -> int:
    # Read from stdin, never argv: a token on the command line ends up in shell history and `ps`.
    # Stripped, as the gateway and the HTTP front door strip the token they are sent.
    token = sys.stdin.read().strip()
    if not token:
        print('error: no token on stdin (e.g. printf %s "$TOKEN" | cascade token hash)', file=sys.stderr)
        return 2
    print(hashlib.sha256(token.encode()).hexdigest())
    return 0
