"""Several tenants' audit documents combined into one (`cbacheck merge`), with its schema.

Two inputs for the same tenant (a shard run again, an artifact uploaded twice): the newest by
`collected_at` is kept and the other is listed under `superseded`; two equally new ones are refused,
since nothing tells which is right. Tenants are compared as written (case-insensitive): a tenant audited
once by GUID and once by domain name counts as two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cbacheck.errors import InputError
from cbacheck.report.audit import AUDIT_SCHEMA, SCHEMA_VERSION

MERGED_SCHEMA_NAME = "cbacheck-audit-merged"
VERDICT_ORDER = ("passed", "error", "failed")  # the merged verdict is the worst of the tenants'


def check_input(document: Any, name: str) -> dict[str, Any]:
    """The document when it is an audit.json this cbacheck reads; InputError naming the file otherwise."""
    import jsonschema  # type: ignore[import-untyped]  # imported here: only `cbacheck merge` pays for it

    if not isinstance(document, dict):
        raise InputError([f"{name}: not an audit.json of `cbacheck audit` (a JSON object was expected)"])
    kind, version = document.get("schema"), document.get("schema_version")
    if kind == MERGED_SCHEMA_NAME:
        raise InputError([f"{name}: is already a merged audit; merge the audit.json files it was made from"])
    if kind != AUDIT_SCHEMA["properties"]["schema"]["const"]:
        found = "no schema field" if kind is None else f"schema {str(kind)[:40]!r}"
        raise InputError([f"{name}: not an audit.json of `cbacheck audit` ({found}); give the audits' JSON files"])
    if version != SCHEMA_VERSION:
        raise InputError(
            [f"{name}: audit schema_version {str(version)[:20]}; this cbacheck merges version {SCHEMA_VERSION}"]
        )
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(AUDIT_SCHEMA).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise InputError([f"{name}: does not follow the audit schema at {where}: {error.message[:200]}"])
    for key in ("tenant", "collected_at"):
        if not isinstance(document.get(key), str) or not document[key]:
            raise InputError([f"{name}: has no {key}"])
    _collected(document, name)
    return document


def _collected(document: Mapping[str, Any], name: str) -> datetime:
    try:
        when = datetime.fromisoformat(str(document["collected_at"]))
    except ValueError:
        raise InputError([f"{name}: collected_at {str(document['collected_at'])[:40]!r} is not a date"]) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def newest_per_tenant(
    inputs: Sequence[tuple[str, dict[str, Any]]],
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, str]]]:
    """One input per tenant, the newest; and what was superseded (its file, its time, the file kept)."""
    kept: dict[str, tuple[str, dict[str, Any]]] = {}
    superseded: list[dict[str, str]] = []
    for name, document in inputs:
        key = document["tenant"].lower()
        if key not in kept:
            kept[key] = (name, document)
            continue
        other_name, other = kept[key]
        mine, theirs = _collected(document, name), _collected(other, other_name)
        if mine == theirs:
            raise InputError(
                [
                    f"{name} and {other_name}: both audit tenant {document['tenant']} at {document['collected_at']}; "
                    "give only one of them"
                ]
            )
        newer, older = (
            ((name, document), (other_name, other)) if mine > theirs else ((other_name, other), (name, document))
        )
        kept[key] = newer
        superseded.append(
            {
                "tenant": older[1]["tenant"],
                "source": older[0],
                "collected_at": older[1]["collected_at"],
                "kept": newer[0],
            }
        )
    return sorted(kept.values(), key=lambda item: item[1]["tenant"].lower()), superseded


def merge_documents(inputs: Sequence[tuple[str, dict[str, Any]]], *, now: datetime | None = None) -> dict[str, Any]:
    """The merged document (MERGED_SCHEMA) of checked audit documents, given as (file name, document)."""
    chosen, superseded = newest_per_tenant(inputs)
    tenants, apps = [], []
    not_read: dict[str, str] = {}
    for source, document in chosen:
        tenant = document["tenant"]
        tenants.append(
            {
                "tenant": tenant,
                "target": document.get("target"),
                "source": source,
                "collected_at": document["collected_at"],
                "verdict": document["verdict"],
                "counts": document.get("counts") or {},
                "not_read": document.get("not_read") or {},
                "app_management_policy": document.get("app_management_policy"),
            }
        )
        apps += [{**app, "tenant": tenant} for app in document["apps"]]
        not_read.update({f"{tenant}: {what}": why for what, why in (document.get("not_read") or {}).items()})
    verdict = max((t["verdict"] for t in tenants), key=VERDICT_ORDER.index, default="passed")
    return {
        "schema": MERGED_SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "merged_at": (now or datetime.now(UTC)).isoformat(),
        "verdict": verdict,
        "counts": {
            "tenants": len(tenants),
            "apps": len(apps),
            "failed": sum(1 for app in apps if app.get("verdict") == "failed"),
            "error": sum(1 for app in apps if app.get("verdict") == "error"),
            "applications_seen": sum(int(t["counts"].get("applications_seen", 0)) for t in tenants),
        },
        "tenants": tenants,
        "superseded": superseded,
        "not_read": not_read,
        "apps": apps,
    }


MERGED_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "schema_version", "verdict", "counts", "tenants", "superseded", "apps"],
    "properties": {
        "schema": {"const": MERGED_SCHEMA_NAME},
        "schema_version": {"const": SCHEMA_VERSION},
        "verdict": {"enum": list(VERDICT_ORDER)},
        "tenants": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["tenant", "source", "collected_at", "verdict", "counts", "not_read"],
                "properties": {"tenant": {"type": "string"}, "verdict": {"enum": list(VERDICT_ORDER)}},
            },
        },
        "superseded": {
            "type": "array",
            "items": {"type": "object", "required": ["tenant", "source", "collected_at", "kept"]},
        },
        # Each app as its tenant's audit wrote it (AUDIT_SCHEMA's items), plus the tenant it belongs to.
        "apps": {
            "type": "array",
            "items": {
                "allOf": [
                    AUDIT_SCHEMA["properties"]["apps"]["items"],
                    {"type": "object", "required": ["tenant"], "properties": {"tenant": {"type": "string"}}},
                ]
            },
        },
    },
}
