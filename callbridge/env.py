"""Small typed readers for environment variables.

Every reader fails loudly (ImproperlyConfigured naming the variable) on a value it cannot
parse, so a typo in a deployment stops start-up instead of silently using a default.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    value = (os.environ if environ is None else environ).get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_str(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> str:
    value = _raw(name, environ)
    return default if value is None else value


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    value = _raw(name, environ)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false)")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    value = _raw(name, environ)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum {minimum}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum {maximum}")
    return number


def env_list(
    name: str, default: list[str] | None = None, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Comma-separated list; empty items are dropped."""
    value = _raw(name, environ)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def env_url_list(
    name: str, schemes: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> list[str]:
    """Comma-separated URLs, each of one of `schemes` (e.g. ("stun", "stuns"))."""
    urls = env_list(name, environ=environ)
    for url in urls:
        if not url.startswith(tuple(f"{scheme}:" for scheme in schemes)):
            wanted = "/".join(f"{scheme}:" for scheme in schemes)
            raise ImproperlyConfigured(f"{name}: {url!r} is not a {wanted} URL")
    return urls


def env_origin_list(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Comma-separated web origins (`scheme://host[:port]`, http or https, nothing else),
    normalised as browsers serialise them (lower case, no default port)."""
    origins = []
    for item in env_list(name, environ=environ):
        parts = urlsplit(item)
        try:
            port = parts.port
        except ValueError:
            port = -1
        default_port = {"http": 80, "https": 443}.get(parts.scheme.lower())
        if (
            default_port is None
            or not parts.hostname
            or port == -1
            or parts.username
            or parts.password
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ImproperlyConfigured(f"{name}: {item!r} is not an origin (scheme://host[:port])")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname.lower()
        suffix = "" if port in (None, default_port) else f":{port}"
        origins.append(f"{parts.scheme.lower()}://{host}{suffix}")
    return origins


def env_choice(
    name: str, default: str, choices: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> str:
    value = _raw(name, environ)
    if value is None:
        return default
    if value not in choices:
        raise ImproperlyConfigured(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def env_ip_list(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Comma-separated IP addresses (v4 or v6)."""
    addresses = env_list(name, environ=environ)
    for address in addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {address!r} is not an IP address") from None
    return addresses


def env_network_list(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """Comma-separated IP addresses or CIDR networks (v4 or v6), e.g. 10.0.0.0/8,::1."""
    networks = env_list(name, environ=environ)
    for network in networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {network!r} is not an IP address or network"
            ) from None
    return networks


_RATE = re.compile(r"^[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)$")


def env_rate(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    """A rate limit like "600/min" (per s, min, hour or day)."""
    value = env_str(name, default, environ)
    if not _RATE.match(value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate like 600/min")
    return value


def load_dotenv(path: Path) -> None:
    """Load KEY=VALUE lines from `path` into os.environ without overriding real variables."""
    if not path.is_file():
        return
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.removeprefix("export ").strip()
        if not sep or not key.isidentifier():
            raise ImproperlyConfigured(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        os.environ.setdefault(key, value)


def persistent_secret(path: Path) -> str:
    """Read a secret from `path`, creating it (mode 0600) with a fresh random value first."""
    if path.is_file():
        return path.read_text().strip()
    from django.core.management.utils import get_random_secret_key

    path.parent.mkdir(parents=True, exist_ok=True)
    secret = get_random_secret_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret
