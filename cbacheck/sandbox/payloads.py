"""Checks and normal forms of what a Graph write may set: properties, keyCredentials, requiredResourceAccess."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from cbacheck.sandbox.faults import InvalidRequest
from cbacheck.sandbox.schema import ENTITY_TYPES, TEMPLATES
from cbacheck.sandbox.values import (
    JsonObject,
    certificate_facts,
    graph_time,
    is_guid,
    key_credential_for,
    new_guid,
    parse_time,
)

READ_ONLY: Final = {
    "applications": frozenset({"id", "appId", "createdDateTime", "publisherDomain", "deletedDateTime"}),
    "servicePrincipals": frozenset({"id", "deletedDateTime", "appOwnerOrganizationId", "appDisplayName"}),
}
# What POST /servicePrincipals may set (PATCH: the same without appId); the rest is derived.
WRITABLE_SP: Final = frozenset(
    {"appId", "accountEnabled", "tags", "notes", "description", "appRoleAssignmentRequired", "displayName"}
)
KEY_TYPES: Final = ("AsymmetricX509Cert", "X509CertAndPassword", "Symmetric")
_KEY_OVERRIDES: Final = ("displayName", "startDateTime", "endDateTime", "customKeyIdentifier")
# "The endDateTime can be a maximum of one year from the startDateTime. If unspecified, the system will
# automatically assign a date one year after the startDateTime."
# (https://learn.microsoft.com/graph/applications-how-to-add-certificate). A start left out is the
# certificate's notBefore (UNCONFIRMED); one year is taken as 365 days, plus one for a leap year.
KEY_MAX_LIFETIME: Final = timedelta(days=366)
KEY_DEFAULT_LIFETIME: Final = timedelta(days=365)


def settable(collection: str, body: Mapping[str, Any]) -> JsonObject:
    """The properties of a POST/PATCH body, each known, writable and of its template's JSON type."""
    known = TEMPLATES[collection]
    out: JsonObject = {}
    for key, value in body.items():
        if key.startswith("@odata."):
            continue
        if key not in known:
            raise InvalidRequest("unknown_property", name=key, entity_type=ENTITY_TYPES[collection])
        if key in READ_ONLY.get(collection, frozenset()):
            raise InvalidRequest("read_only_property", name=key)
        _check_type(key, value, known[key])
        out[key] = value
    if collection == "applications" and "passwordCredentials" in out:
        # UNCONFIRMED wording; application-update: use addPassword / removePassword
        # (https://learn.microsoft.com/graph/api/application-update).
        raise InvalidRequest("password_credentials")
    return out


def _check_type(key: str, value: object, default: object) -> None:
    """A value must have the JSON type of the template's default (null allowed for objects)."""
    expected: tuple[type, ...]
    if isinstance(default, list):
        expected, words = (list,), "a collection"
    elif isinstance(default, dict):
        expected, words = (dict, type(None)), "an object or null"
    elif isinstance(default, bool):
        expected, words = (bool, type(None)), "true, false or null"
    elif isinstance(default, str):
        expected, words = (str, type(None)), "a string or null"
    else:
        expected, words = (str, int, float, bool, dict, type(None)), "a value, not a collection"
    if not isinstance(value, expected):
        raise InvalidRequest("invalid_value", name=key, expected=words)


def display_name(body: Mapping[str, Any], *, required: bool) -> str | None:
    """The displayName of a body: a non-empty string when given (or when required)."""
    value = body.get("displayName")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("required_property", name="displayName")
    return value


def key_credentials(
    raw: object, existing: list[JsonObject], *, on_new_key: Callable[[str], None] = lambda key_id: None
) -> list[JsonObject]:
    """The new keyCredentials collection (PATCH replaces the whole collection).

    UNCONFIRMED, chosen here: an entry with ``key: null`` and the keyId of an existing credential
    keeps that credential (https://learn.microsoft.com/graph/api/application-update).
    """
    if not isinstance(raw, list):
        raise InvalidRequest("not_a_collection", name="keyCredentials")
    by_id = {str(c.get("keyId", "")).lower(): c for c in existing}
    out: list[JsonObject] = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise InvalidRequest("invalid_key_credential")
        out.append(_key_credential(entry, by_id, on_new_key))
    ids = [str(c["keyId"]).lower() for c in out]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("duplicate_key_id")
    return out


def _key_credential(
    entry: JsonObject, by_id: Mapping[str, JsonObject], on_new_key: Callable[[str], None]
) -> JsonObject:
    usage = entry.get("usage", "Verify")
    if usage not in ("Sign", "Verify"):
        raise InvalidRequest("invalid_key_usage")
    kind = entry.get("type", "AsymmetricX509Cert")
    if kind not in KEY_TYPES:
        raise InvalidRequest("invalid_key_type")
    key_id = entry.get("keyId")
    if key_id is not None and not is_guid(key_id):
        raise InvalidRequest("invalid_key_id", key_id=key_id)
    for name in ("startDateTime", "endDateTime"):
        _check_time(entry, name)
    old = by_id.get(str(key_id).lower()) if key_id else None
    key = entry.get("key")
    if key is None:
        if old is None:
            raise InvalidRequest("invalid_certificate")
        return dict(old)
    try:
        facts = certificate_facts(key if isinstance(key, str) else "")
    except ValueError:
        raise InvalidRequest("invalid_certificate") from None
    if old is not None and old.get("key") == key:
        kept = dict(old)
        kept.update({k: v for k, v in entry.items() if v is not None})
        return kept
    new_id = str(key_id or new_guid())
    overrides = {k: v for k, v in entry.items() if v is not None and k in _KEY_OVERRIDES}
    overrides.update(_key_window(overrides, facts.certificate.not_valid_before_utc))
    on_new_key(new_id)
    return key_credential_for(facts.der, key_id=new_id, type=kind, usage=usage, **overrides)


def _key_window(given: Mapping[str, Any], not_before: datetime) -> dict[str, str]:
    """Start and end of an uploaded key: as given, the end at most a year after the start."""
    start = parse_time(str(given["startDateTime"])) if "startDateTime" in given else not_before
    if "endDateTime" not in given:
        return {"startDateTime": graph_time(start), "endDateTime": graph_time(start + KEY_DEFAULT_LIFETIME)}
    end = parse_time(str(given["endDateTime"]))
    if end - start > KEY_MAX_LIFETIME or end <= start:
        raise InvalidRequest("invalid_key_window")
    return {"startDateTime": graph_time(start), "endDateTime": graph_time(end)}


def _check_time(entry: Mapping[str, Any], name: str) -> None:
    value = entry.get(name)
    if value is None:
        return
    try:
        parse_time(value if isinstance(value, str) else "")
    except ValueError:
        raise InvalidRequest("invalid_value", name=name, expected="an ISO 8601 time") from None


def required_resource_access(raw: object) -> list[JsonObject]:
    """A requiredResourceAccess collection in the form Graph stores it."""
    if not isinstance(raw, list):
        raise InvalidRequest("not_a_collection", name="requiredResourceAccess")
    out: list[JsonObject] = []
    for item in raw:
        if not isinstance(item, dict) or not is_guid(item.get("resourceAppId")):
            raise InvalidRequest("invalid_resource_app_id")
        access = item.get("resourceAccess")
        if not isinstance(access, list) or not all(
            isinstance(a, dict) and is_guid(a.get("id")) and a.get("type") in ("Role", "Scope") for a in access
        ):
            raise InvalidRequest("invalid_resource_access")
        out.append(
            {
                "resourceAppId": item["resourceAppId"],
                "resourceAccess": [{"id": a["id"], "type": a["type"]} for a in access],
            }
        )
    return out
