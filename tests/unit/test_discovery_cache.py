"""The discovery documents kept between runs: JSON, 0600, this login host's only, endpoints on that host."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from msal.individual_cache import _ExpiringMapping
from msal.throttled_http_client import NormalizedResponse

from cbacheck import usercache
from cbacheck.collect import discovery

LOGIN = "https://login.microsoftonline.com"
TENANT = "11111111-2222-3333-4444-555555555555"
URL = f"{LOGIN}/{TENANT}/v2.0/.well-known/openid-configuration"
KEY = f"GET {URL} hash=abc 2xx"


class Answer:
    def __init__(self, text: str, status: int = 200) -> None:
        self.status_code = status
        self.text = text
        self.headers: dict[str, str] = {}


def document(host: str = "login.microsoftonline.com") -> str:
    base = f"https://{host}/{TENANT}"
    return json.dumps(
        {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "issuer": f"{base}/v2.0",
        }
    )


def msal_cache(entries: dict[str, tuple[Answer, int]]) -> dict[str, Any]:
    """An http_cache filled the way msal fills it."""
    cache: dict[str, Any] = {}
    mapping = _ExpiringMapping(mapping=cache, capacity=1024)
    for key, (answer, ttl) in entries.items():
        mapping.set(key, NormalizedResponse(answer), ttl)
    return cache


def test_a_discovery_document_survives_to_the_next_run_as_json_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "cbacheck" / "discovery.json"
    token_key = f"POST {LOGIN}/{TENANT}/oauth2/v2.0/token hash=x 400"
    cache = msal_cache({KEY: (Answer(document()), 86400), token_key: (Answer('{"error": "secret"}', 400), 60)})

    discovery.save(cache, LOGIN, path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert list(stored["hosts"]) == ["login.microsoftonline.com"]
    assert [entry["key"] for entry in stored["hosts"]["login.microsoftonline.com"]] == [KEY]
    assert "secret" not in path.read_text()
    fresh: dict[str, Any] = {}
    assert discovery.load(fresh, LOGIN, path) == 1
    assert _ExpiringMapping(mapping=fresh)[KEY].text == document()


def test_a_document_naming_endpoints_on_another_host_is_not_loaded(tmp_path: Path) -> None:
    path = tmp_path / "discovery.json"
    discovery.save(msal_cache({KEY: (Answer(document()), 86400)}), LOGIN, path)
    stored = json.loads(path.read_text())
    stored["hosts"]["login.microsoftonline.com"][0]["text"] = document(host="evil.example")
    path.write_text(json.dumps(stored))
    path.chmod(0o600)

    assert discovery.load({}, LOGIN, path) == 0


def test_only_the_login_hosts_own_documents_are_loaded(tmp_path: Path) -> None:
    path = tmp_path / "discovery.json"
    discovery.save(msal_cache({KEY: (Answer(document()), 86400)}), LOGIN, path)

    assert discovery.load({}, "https://login.microsoftonline.us", path) == 0
    stored = json.loads(path.read_text())
    stored["hosts"]["login.microsoftonline.us"] = stored["hosts"].pop("login.microsoftonline.com")
    path.write_text(json.dumps(stored))
    assert discovery.load({}, "https://login.microsoftonline.us", path) == 0  # its URLs name another host


def test_expired_garbage_and_writable_files_are_misses(tmp_path: Path) -> None:
    path = tmp_path / "discovery.json"
    discovery.save(msal_cache({KEY: (Answer(document()), 86400)}), LOGIN, path)
    stored = json.loads(path.read_text())
    entry = stored["hosts"]["login.microsoftonline.com"][0]

    path.chmod(0o622)
    assert discovery.load({}, LOGIN, path) == 0
    path.chmod(0o600)
    entry["expires_at"] = entry["created_at"] - 1
    path.write_text(json.dumps(stored))
    assert discovery.load({}, LOGIN, path) == 0
    path.write_bytes(b"\x80\x04\x95 pickled")
    assert discovery.load({}, LOGIN, path) == 0


def test_the_cache_directory_follows_xdg() -> None:
    assert discovery.cache_file({"XDG_CACHE_HOME": "/x"}) == Path("/x/cbacheck/discovery.json")
    assert discovery.cache_file({}).parts[-3:] == (".cache", "cbacheck", "discovery.json")


def test_where_ownership_cannot_be_read_the_cache_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "discovery.json"
    discovery.save(msal_cache({KEY: (Answer(document()), 86400)}), LOGIN, path)
    assert discovery.load({}, LOGIN, path) == 1
    monkeypatch.setattr(usercache, "_USER_ID", -1)  # as on Windows, which has no os.getuid
    assert discovery.load({}, LOGIN, path) == 0
