"""The container's HEALTHCHECK: GET /healthz on DOCKERBOT_HEALTH_PORT.

Slim images have no curl. Both modes serve health there; in HTTP mode, the public port
(DOCKERBOT_PORT) serves Slack's /slack/events and nothing else. Exit 0 when healthy, 1 otherwise.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def health_url(env: dict[str, str]) -> str:
    port = env.get("DOCKERBOT_HEALTH_PORT") or "8080"
    return f"http://127.0.0.1:{port}/healthz"


def main() -> int:
    url = health_url(dict(os.environ))
    # Never through HTTP_PROXY: the bot is on this loopback, not out there.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        # Docker keeps this line in `docker inspect`'s health log; it names no secret.
        print(f"unhealthy: {url}: {getattr(error, 'reason', error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
