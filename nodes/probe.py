"""A node's health probe for containers: GET /health on its own HTTP port, over HTTPS and with
a token when the node uses them; exit status 0 when it answers 200, else 1 (one line why).

    python -m nodes.probe

Reads the node's own environment (what docker-compose, the Swarm stack and the Kubernetes
manifests set): REPLOG_HTTP_PORT; REPLOG_HTTPS_DIR (its ca.crt checks the node's certificate;
host names are not checked: the probe reaches 127.0.0.1); REPLOG_PROBE_TOKEN_FILE, a file
holding a token with the role `read` (a Swarm secret or Kubernetes Secret: never put a token
in a manifest or a command line).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    import ssl
    import urllib.error
    import urllib.request
    port = os.environ.get("REPLOG_HTTP_PORT", "5000")
    https = os.environ.get("REPLOG_HTTPS_DIR", "")
    token_file = os.environ.get("REPLOG_PROBE_TOKEN_FILE", "")
    token = Path(token_file).read_text().strip() if token_file else None
    scheme = "https" if https else "http"
    ca = Path(https) / "ca.crt" if https else None
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/health",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    context = None
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca))
        context.check_hostname = False
    try:
        with urllib.request.urlopen(req, timeout=3, context=context) as resp:
            status, body = resp.status, ""
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()[:200].decode(errors="replace")
    except Exception as e:     # noqa: BLE001 - any failure is "unhealthy", said in one line
        print(f"probe: {scheme}://127.0.0.1:{port}/health: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 1
    if status != 200:
        print(f"probe: /health answered {status}: {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
