"""msal's tenant discovery documents kept between runs: JSON, mode 0600, per login host, checked on load."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from msal.individual_cache import _ExpiringMapping
from msal.throttled_http_client import NormalizedResponse

from cbacheck import usercache

# msal keeps a 2xx discovery answer for 24 hours in its http_cache and recommends persisting that cache
# across runs of a command-line tool (ClientApplication's `http_cache` parameter,
# https://msal-python.readthedocs.io/en/latest/#msal.ClientApplication). Its recipe pickles the cache;
# this file holds only the discovery documents, as JSON, with the expiry msal gave each. msal's cache
# layout is not documented: anything unexpected makes the cache a miss, never a failure.
FILE_NAME: Final = "discovery.json"
VERSION: Final = 1
MSAL_DISCOVERY_TTL_S: Final = 24 * 3600
MAX_HOSTS: Final = 8
DISCOVERY_PATH_SUFFIX: Final = "/.well-known/openid-configuration"
# The endpoints msal takes from the document and sends credentials or users to.
ENDPOINT_FIELDS: Final = ("token_endpoint", "authorization_endpoint", "device_authorization_endpoint")
INDEX: Final = "_index_"  # msal's bookkeeping entry in the http_cache


def cache_file(environ: dict[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/cbacheck/discovery.json, or ~/.cache/cbacheck/discovery.json."""
    return usercache.cache_file(FILE_NAME, environ)


def host_of(login_url: str) -> str:
    return urlsplit(login_url).netloc.lower()


def is_discovery_of(url: str, host: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and parts.netloc.lower() == host and parts.path.endswith(DISCOVERY_PATH_SUFFIX)


def document_stays_on(text: str, host: str) -> bool:
    """Every endpoint msal would use from this document is https on `host` itself."""
    try:
        document = json.loads(text)
    except ValueError:
        return False
    if not isinstance(document, dict) or not isinstance(document.get("token_endpoint"), str):
        return False
    for name in ENDPOINT_FIELDS:
        value = document.get(name)
        if value is None:
            continue
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme != "https" or parts.netloc.lower() != host:
            return False
    return True


def _valid_entry(entry: Any, host: str, now: int) -> bool:
    if not isinstance(entry, dict):
        return False
    key, url, text = entry.get("key"), entry.get("url"), entry.get("text")
    created, expires = entry.get("created_at"), entry.get("expires_at")
    if not (isinstance(key, str) and isinstance(url, str) and isinstance(text, str)):
        return False
    if not (isinstance(created, int) and isinstance(expires, int)):
        return False
    fresh = created <= now < expires and expires - created <= MSAL_DISCOVERY_TTL_S
    keyed = key.startswith(f"GET {url} hash=") and key.endswith(" 2xx")
    return fresh and keyed and is_discovery_of(url, host) and document_stays_on(text, host)


def _read(path: Path) -> dict[str, Any]:
    """The file's content, or empty when absent, unreadable, not ours or writable by others."""
    content = usercache.read_trusted(path, VERSION)
    return content if isinstance(content.get("hosts"), dict) else {}


def load(http_cache: dict[str, Any], login_url: str, path: Path | None = None) -> int:
    """Put the fresh, valid discovery documents of this login host into msal's http_cache; how many."""
    host = host_of(login_url)
    now = int(time.time())
    entries = _read(path or cache_file()).get("hosts", {}).get(host, [])
    loaded = 0
    try:
        mapping = _ExpiringMapping(mapping=http_cache, capacity=1024)
        for entry in entries if isinstance(entries, list) else []:
            if _valid_entry(entry, host, now):
                answer = NormalizedResponse(_Answer(entry["text"]))
                mapping.set(entry["key"], answer, entry["expires_at"] - now)
                loaded += 1
    except (TypeError, ValueError, AttributeError, KeyError):
        return 0  # msal's layout changed: run without the cache
    return loaded


class _Answer:
    """What NormalizedResponse reads of an HTTP answer."""

    def __init__(self, text: str) -> None:
        self.status_code = 200
        self.text = text
        self.headers: dict[str, str] = {}


def entries_in(http_cache: dict[str, Any], host: str, now: int) -> list[dict[str, Any]]:
    """The discovery documents msal holds for this host, as the file stores them (no tokens: GET answers only)."""
    try:
        _, timestamps = http_cache.get(INDEX, ([], {}))
        found = []
        for key, (expires_at, created_at) in sorted(timestamps.items()):
            if not (isinstance(key, str) and key.startswith("GET ") and key.endswith(" 2xx")):
                continue
            url = key[len("GET ") :].split(" hash=", 1)[0]
            answer = http_cache.get(key)
            text = getattr(answer, "text", None)
            entry = {"key": key, "url": url, "text": text, "created_at": created_at, "expires_at": expires_at}
            if getattr(answer, "status_code", None) == 200 and _valid_entry(entry, host, now):
                found.append(entry)
        return found
    except (TypeError, ValueError, AttributeError):
        return []


def save(http_cache: dict[str, Any], login_url: str, path: Path | None = None) -> None:
    """Write this host's discovery documents next to the other hosts' fresh ones; mode 0600, atomically."""
    target = path or cache_file()
    host = host_of(login_url)
    now = int(time.time())
    found = entries_in(http_cache, host, now)
    if not found:
        return
    hosts = {
        name: [entry for entry in entries if _valid_entry(entry, name, now)]
        for name, entries in _read(target).get("hosts", {}).items()
        if name != host and isinstance(entries, list)
    }
    kept = dict(list({name: entries for name, entries in hosts.items() if entries}.items())[-(MAX_HOSTS - 1) :])
    kept[host] = found
    # A cache that cannot be written costs one discovery next time, nothing more.
    usercache.write_private(target, {"version": VERSION, "hosts": kept})
