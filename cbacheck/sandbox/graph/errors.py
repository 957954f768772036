"""Every Graph error the sandbox answers: one table, and the envelope they are sent in.

Graph's error envelope: https://learn.microsoft.com/graph/errors. Texts are Graph's where the
documentation or a recorded response quotes them; rows marked UNCONFIRMED use a code Graph uses
with the status or wording chosen here (docs/sandbox.md lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from cbacheck.sandbox.faults import SandboxFault
from cbacheck.sandbox.response import Call
from cbacheck.sandbox.values import JsonObject


@dataclass(frozen=True)
class GraphErrorSpec:
    """One Graph error: HTTP status, ``error.code``, message template, and whether it is confirmed."""

    status: int
    code: str
    text: str
    unconfirmed: bool = False


def _bad(text: str, *, unconfirmed: bool = True, code: str = "Request_BadRequest") -> GraphErrorSpec:
    """A 400; most validation wording of the sandbox is its own (UNCONFIRMED)."""
    return GraphErrorSpec(400, code, text, unconfirmed)


GRAPH_ERRORS: Final[dict[str, GraphErrorSpec]] = {
    # routing and query options
    "no_segment": GraphErrorSpec(404, "BadRequest", "Resource not found for the segment '{segment}'.", True),
    "method_not_allowed": GraphErrorSpec(
        405, "Request_BadRequest", "Specified HTTP method is not allowed for the request target."
    ),
    "unsupported_option": _bad("The query parameter '{option}' is not supported.", code="Request_UnsupportedQuery"),
    "unknown_option": _bad("The query parameter '{option}' is not supported.", code="BadRequest"),
    "query_invalid": _bad("{message}", unconfirmed=False, code="BadRequest"),
    # $count on directory objects needs ConsistencyLevel: eventual
    # (https://learn.microsoft.com/graph/aad-advanced-queries); the code and text are users' reports.
    "count_needs_eventual": _bad("$count is not currently supported."),
    "query_unsupported": _bad("{message}", unconfirmed=False, code="Request_UnsupportedQuery"),
    # authentication and authorization
    "invalid_token": GraphErrorSpec(401, "InvalidAuthenticationToken", "{reason}", True),
    "denied": GraphErrorSpec(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."),
    # PIM without an Entra ID P2 or Governance licence: the code and text users report for
    # roleEligibilityScheduleInstances; for roleEligibilitySchedules UNCONFIRMED.
    "pim_license_required": GraphErrorSpec(
        400,
        "AadPremiumLicenseRequired",
        "The tenant needs to have Microsoft Entra ID P2 or Microsoft Entra ID Governance license.",
        True,
    ),
    # objects
    "not_found": GraphErrorSpec(
        404,
        "Request_ResourceNotFound",
        "Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
    ),
    "bad_json": _bad(
        "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of "
        "valid JSON format.",
        unconfirmed=False,
        code="BadRequest",
    ),
    "unknown_property": _bad(
        "The property '{name}' does not exist on type '{entity_type}'. Make sure to only use property names "
        "that are defined by the type or mark the type as open type.",
        unconfirmed=False,
        code="BadRequest",
    ),
    "read_only_property": _bad("Property '{name}' is read-only and cannot be set."),
    "password_credentials": _bad("Property 'passwordCredentials' cannot be set with this request; use addPassword."),
    "required_property": _bad("Property '{name}' is required."),
    "invalid_value": _bad("Invalid value for property '{name}': expected {expected}."),
    "not_a_collection": _bad("Property '{name}' must be a collection."),
    # keyCredentials (https://learn.microsoft.com/graph/api/resources/keycredential)
    "key_id_on_create": _bad("The property KeyId is not supported for Create Application flow.", unconfirmed=False),
    "invalid_key_credential": _bad("Invalid keyCredential: expected an object."),
    "invalid_key_usage": _bad(
        'The value for the property "usage" in one of your credentials is invalid. Acceptable values are Sign, Verify.',
        unconfirmed=False,
    ),
    "invalid_key_type": _bad(
        'The value for the property "type" in one of your credentials is invalid. Acceptable values are '
        "AsymmetricX509Cert, Symmetric.",
        unconfirmed=False,
    ),
    "invalid_key_id": _bad("Invalid value '{key_id}' for property 'keyId': not a GUID."),
    "invalid_key_window": _bad("Key credential end date must be after the start date and at most one year after it."),
    "invalid_certificate": _bad("Invalid certificate: Key value is invalid certificate", unconfirmed=False),
    "duplicate_key_id": _bad("Duplicate keyId in keyCredentials."),
    "invalid_resource_app_id": _bad("Invalid requiredResourceAccess: 'resourceAppId' must be a GUID."),
    "invalid_resource_access": _bad(
        "Invalid requiredResourceAccess: each resourceAccess needs an 'id' GUID and 'type' Role or Scope."
    ),
    # service principals
    "sp_property_not_settable": _bad("Property '{name}' cannot be set when creating a service principal."),
    "sp_property_not_changeable": _bad("Property '{name}' cannot be changed by the sandbox."),
    "duplicate_service_principal": GraphErrorSpec(
        409,
        "Request_MultipleObjectsWithSameKeyValue",
        "Another object with the same value for property servicePrincipalNames already exists.",
        True,
    ),
    "app_for_sp_missing": _bad(
        "The appId '{app_id}' of the service principal does not reference a valid application object."
    ),
    # app role assignments
    "anchor_mismatch": _bad("Property '{name}' must be the id of the service principal in the URL."),
    "app_role_not_found": _bad("Permission being assigned was not found on application '{app_id}'."),
    "duplicate_app_role_assignment": _bad("Permission being assigned already exists on the object"),
    # directory role assignments
    "scope_required": _bad("Either directoryScopeId or appScopeId must be specified."),
    "invalid_scope": _bad("Property 'directoryScopeId' must be '/' or a scope path."),
    "duplicate_role_assignment": GraphErrorSpec(
        409,
        "Request_MultipleObjectsWithSameKeyValue",
        "A conflicting object with one or more of the specified property values is present in the directory.",
        True,
    ),
    # $batch (https://learn.microsoft.com/graph/json-batching)
    "nested_batch": _bad("A $batch request cannot contain another $batch request."),
    "batch_requests": _bad("Invalid batch payload: 'requests' must be a non-empty array.", code="BadRequest"),
    "batch_too_many": _bad("The batch contains {count} requests; the limit is {limit}.", code="BadRequest"),
    "batch_item_id": _bad("Invalid batch payload: every request needs an 'id' string.", code="BadRequest"),
    "batch_item_fields": _bad(
        "Invalid batch payload: request '{id}' needs 'method' and 'url' strings.", code="BadRequest"
    ),
    "batch_item_headers": _bad(
        "Invalid batch payload: 'headers' of request '{id}' must be an object.", code="BadRequest"
    ),
    "batch_duplicate_id": _bad("Batch request ids must be unique; '{id}' repeats.", code="BadRequest"),
    "batch_depends_on": _bad(
        "Invalid batch payload: dependsOn of request '{id}' names an unknown id.", code="BadRequest"
    ),
    "batch_cycle": _bad("Invalid batch payload: dependsOn forms a cycle.", code="BadRequest"),
    "failed_dependency": GraphErrorSpec(424, "FailedDependency", "Dependent request '{id}' failed.", True),
    "batch_absolute_url": _bad("Invalid request URL: batch URLs must be relative.", code="BadRequest"),
    "batch_content_type": _bad(
        "Content-Type header must be specified for a request with a body.", unconfirmed=False, code="BadRequest"
    ),
    # the server around Graph (throttling: https://learn.microsoft.com/graph/throttling)
    "too_large": GraphErrorSpec(
        413, "RequestEntityTooLarge", "The request body is {length} bytes; the limit is {limit} bytes.", True
    ),
    "too_many_requests": GraphErrorSpec(
        429, "TooManyRequests", "Too many requests from Identifier:{tenant_id}. Please try again later.", True
    ),
    "service_unavailable": GraphErrorSpec(503, "serviceNotAvailable", "The service is temporarily unavailable.", True),
    "internal": GraphErrorSpec(500, "InternalServerError", "The sandbox failed to process the request."),
}


class GraphFault(Exception):
    """A Graph error answer: a row of GRAPH_ERRORS with its values (and extra response headers)."""

    def __init__(self, key: str, *, headers: dict[str, str] | None = None, **values: Any) -> None:
        self.spec = GRAPH_ERRORS[key]
        self.key = key
        self.status = self.spec.status
        self.code = self.spec.code
        self.message = self.spec.text.format(**{name: str(value) for name, value in values.items()})
        self.headers = headers or {}
        super().__init__(f"{self.status} {self.code}: {self.message}")

    @classmethod
    def of(cls, fault: SandboxFault) -> GraphFault:
        """The Graph answer to a refused tenant operation."""
        values: dict[str, Any] = dict(fault.values)
        return cls(fault.key, **values)

    def body(self, call: Call) -> JsonObject:
        return error_body(self.code, self.message, call)


def error_body(code: str, message: str, call: Call) -> JsonObject:
    """Graph's error envelope (https://learn.microsoft.com/graph/errors)."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": call.date,
                "request-id": call.request_id,
                "client-request-id": call.client_request_id,
            },
        }
    }


def error_response_body(key: str, call: Call, **values: Any) -> JsonObject:
    """The envelope of one table row, for answers given outside a Graph handler (413, 429, 503, 500)."""
    return GraphFault(key, **values).body(call)
