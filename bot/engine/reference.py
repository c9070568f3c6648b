"""Image references by the distribution reference grammar, normalized as the docker CLI does.

Every name a user types is checked here before anything reaches the engine, and the
error texts are the CLI's own (`invalid reference format`, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from bot.errors import UserError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
NAME_TOTAL_LENGTH_MAX = 255

# github.com/distribution/reference/regexp.go, spelled out.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_FULL_ID = re.compile(r"^[a-f0-9]{64}$")
_ID_LIKE = re.compile(r"^(?:sha256:)?[a-f0-9]{1,64}$")


class InvalidReference(UserError):
    pass


@dataclass(frozen=True)
class Reference:
    domain: str  # "docker.io", "127.0.0.1:5000"
    path: str  # "library/ubuntu", "openresty/openresty"
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Fully qualified: docker.io/library/ubuntu."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """As people type it: ubuntu, openresty/openresty, 127.0.0.1:5000/x/y."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix(OFFICIAL_PREFIX) if self.path.count("/") == 1 else self.path

    def _suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def familiar(self) -> str:
        return self.familiar_name + self._suffix()

    def canonical(self) -> str:
        return self.name + self._suffix()

    def with_default_tag(self) -> Reference:
        """`latest` when neither a tag nor a digest was given (reference.TagNameOnly)."""
        return self if self.tag or self.digest else replace(self, tag="latest")

    @property
    def registry(self) -> str:
        return self.domain


def _split_domain(name: str) -> tuple[str, str]:
    """normalize.go splitDockerDomain: the first component is a registry only if it looks like a host."""
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_PREFIX + remainder
    return domain, remainder


def parse_reference(text: str) -> Reference:
    """ParseNormalizedNamed, with the same error texts as the docker CLI."""
    if _FULL_ID.match(text):
        raise InvalidReference(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    name, sep, after = text.partition("@")
    name_part, tag = name, None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name_part, tag = name[: -len(last)] + last.split(":", 1)[0], last.split(":", 1)[1]
    domain, remainder = _split_domain(name_part)
    canonical = (
        f"{domain}/{remainder}" + (f":{tag}" if tag is not None else "") + (f"@{after}" if sep else "")
    )
    match = _REFERENCE.match(canonical)
    if not match:
        if _REFERENCE.match(canonical.lower()) and remainder.lower() != remainder:
            raise InvalidReference(
                f"invalid reference format: repository name ({remainder}) must be lowercase"
            )
        raise InvalidReference("invalid reference format")
    if len(match.group(1)) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
    digest = match.group(3)
    if digest and digest.startswith("sha256:") and len(digest) != len("sha256:") + 64:
        raise InvalidReference("invalid checksum digest length")
    return Reference(domain=domain, path=remainder, tag=match.group(2), digest=digest)


def looks_like_id(text: str) -> bool:
    """A full image ID or an ID prefix (hex, optionally with sha256:)."""
    return bool(_ID_LIKE.match(text))


def familiar(ref: str) -> str:
    """`docker.io/library/ubuntu:latest` → `ubuntu:latest`; unparsable text comes back as it is."""
    try:
        return parse_reference(ref).familiar()
    except InvalidReference:
        return ref
