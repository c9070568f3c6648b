"""Why an HTTP service (Docker Hub, a registry) could not be reached, in a few words."""

from __future__ import annotations

_CAUSES = (
    ("Connection refused", "connection refused"),
    ("Name or service not known", "unknown host name"),
    ("nodename nor servname", "unknown host name"),
    ("Temporary failure in name resolution", "the host name cannot be resolved now"),
    ("Network is unreachable", "network unreachable"),
    ("No route to host", "no route to host"),
    ("Connection reset", "the connection was reset"),
    ("RemoteDisconnected", "the connection was closed before an answer"),
    ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted"),
    ("timed out", "timed out"),
)


def network_cause(error: BaseException) -> str:
    """The cause as people say it, from the text requests/urllib3 give; else the error's type."""
    text = str(error)
    return next((cause for marker, cause in _CAUSES if marker in text), type(error).__name__)
