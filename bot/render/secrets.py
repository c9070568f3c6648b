"""Credential-shaped values masked by value, everywhere an image's JSON repeats them.

An image's config repeats an ENV line in Config.Env, ContainerConfig.Env, the `#(nop) ENV …` of
ContainerConfig.Cmd and the build history; a URL's password can sit in any of them, or in a label, a
Cmd or an Entrypoint. Masking the Env list by name is not enough: every value found under a
credential-shaped name, and every URL password, is masked in every string of the document.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "••••••"
# A name that says "credential". AUTHOR (org.opencontainers.image.authors) is a person, not a secret.
SECRET_NAME = re.compile(r"PASS|PWD|KEY|SECRET|TOKEN|CREDENTIAL|AUTH(?!OR)", re.I)
# scheme://user:PASSWORD@host: the password, kept to one URL authority.
URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"'\[\]]*:)(?P<secret>[^/\s@\"'\[\]]+)(?=@)"
)
# NAME=value, as in an Env entry, an `ENV` line, a build ARG in history or `--db-password=x`.
ASSIGNMENT = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<secret>\"[^\"]*\"|'[^']*'|[^\s\"',\]]+)")
MIN_VALUE = 3  # shorter values are not searched for elsewhere (they would mask half the document)


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return []


def _found(data: Any) -> set[str]:
    """Every credential value the document holds: under a credential-shaped name, or a URL password."""
    values: set[str] = set()
    for text in _strings(data):
        values.update(m["secret"] for m in URL_PASSWORD.finditer(text))
        for m in ASSIGNMENT.finditer(text):
            if SECRET_NAME.search(m["name"]):
                values.add(m["secret"].strip("\"'"))
    labels = (
        [
            node.get("Labels")
            for node in (data.get("Config"), data.get("ContainerConfig"))
            if isinstance(node, dict)
        ]
        if isinstance(data, dict)
        else []
    )
    for found in labels:
        for key, value in (found or {}).items():
            if isinstance(value, str) and SECRET_NAME.search(key):
                values.add(value)
    return {v for v in values if len(v) >= MIN_VALUE and v != MASK}


def mask_text(text: str, values: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    text = URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    text = ASSIGNMENT.sub(
        lambda m: f"{m['name']}={MASK}" if SECRET_NAME.search(m["name"]) and m["secret"] else m[0], text
    )
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


def mask_secrets(data: Any) -> Any:
    """A copy of `data` with every credential-shaped value masked in every string (keys included)."""
    values = _found(data)

    def walk(node: Any, key: str = "") -> Any:
        if isinstance(node, str):
            return MASK if key and SECRET_NAME.search(key) and node else mask_text(node, values)
        if isinstance(node, dict):
            labels = key == "Labels"
            return {mask_text(k, values): walk(v, k if labels else "") for k, v in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(data)
