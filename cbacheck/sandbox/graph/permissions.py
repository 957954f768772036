"""Who may call what on the sandbox's Graph: the caller from the access token, and one permission table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from cbacheck import wellknown
from cbacheck.sandbox.entra.signer import AccessTokenError, TokenSigner
from cbacheck.sandbox.faults import SandboxFault
from cbacheck.sandbox.graph.errors import GraphFault
from cbacheck.sandbox.values import JsonObject

GRAPH_AUDIENCES: Final = frozenset({"https://graph.microsoft.com", wellknown.MICROSOFT_GRAPH_APP_ID})

# Each operation needs, for every set in its tuple, at least one of the set's application
# permissions in the token's roles. Source: the "Permissions" section of each API page, e.g.
# https://learn.microsoft.com/graph/api/application-get and
# https://learn.microsoft.com/graph/api/rbacapplication-list-roleassignments.
_APP_READ: Final = frozenset(
    {
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Application.ReadWrite.OwnedBy",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
_ROLE_READ: Final = frozenset(
    {
        "RoleManagement.Read.Directory",
        "RoleManagement.Read.All",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
PERMISSIONS: Final[dict[str, tuple[frozenset[str], ...]]] = {
    "applications.read": (_APP_READ,),
    # Application.ReadWrite.OwnedBy only covers apps the caller owns; owners are not modelled.
    "applications.write": (frozenset({"Application.ReadWrite.All"}),),
    "servicePrincipals.read": (_APP_READ,),
    "servicePrincipals.write": (frozenset({"Application.ReadWrite.All"}),),
    "appRoleAssignments.read": (_APP_READ | {"AppRoleAssignment.ReadWrite.All"},),
    "appRoleAssignments.write": (frozenset({"AppRoleAssignment.ReadWrite.All"}), _APP_READ),
    "roleAssignments.read": (_ROLE_READ,),
    "roleAssignments.write": (frozenset({"RoleManagement.ReadWrite.Directory"}),),
    "roleDefinitions.read": (_ROLE_READ,),
    "roleEligibility.read": (
        frozenset(
            {
                "RoleEligibilitySchedule.Read.Directory",
                "RoleEligibilitySchedule.ReadWrite.Directory",
                "RoleManagement.Read.Directory",
                "RoleManagement.Read.All",
                "RoleManagement.ReadWrite.Directory",
            }
        ),
    ),
    # UNCONFIRMED which is least privileged (https://learn.microsoft.com/graph/api/organization-get):
    # any of these is accepted.
    "organization.read": (
        frozenset(
            {"Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
        ),
    ),
    # https://learn.microsoft.com/graph/api/reportroot-list-serviceprincipalsigninactivities (beta)
    "signInActivities.read": (frozenset({"AuditLog.Read.All", "Directory.Read.All"}),),
    # https://learn.microsoft.com/graph/api/tenantappmanagementpolicy-get
    "appManagementPolicy.read": (
        frozenset(
            {"Policy.Read.All", "Policy.Read.ApplicationConfiguration", "Policy.ReadWrite.ApplicationConfiguration"}
        ),
    ),
    "domains.read": (
        frozenset({"Domain.Read.All", "Domain.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}),
    ),
}


@dataclass(frozen=True)
class Caller:
    """Who is calling, from the access token: app id, service principal id and granted roles."""

    app_id: str
    sp_id: str
    roles: frozenset[str]


def graph_audiences(cloud: str) -> frozenset[str]:
    """The audiences Graph accepts in a tenant of that cloud (https://graph.microsoft.us in GCC High,
    https://learn.microsoft.com/graph/deployments)."""
    return GRAPH_AUDIENCES | {wellknown.CLOUDS[cloud].graph_resource}


def authenticate(
    signer: TokenSigner, tenant_id: str, headers: Mapping[str, str], audiences: frozenset[str] = GRAPH_AUDIENCES
) -> Caller:
    """The caller of a Graph request, or GraphFault 401 with the reason the token is refused."""
    auth = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer":
        token = ""
    try:
        claims = signer.decode(token.strip(), audiences=audiences, tenant_id=tenant_id)
    except AccessTokenError as exc:
        raise GraphFault(
            "invalid_token", headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}, reason=exc
        ) from None
    roles = claims.get("roles") or []
    return Caller(str(claims.get("appid")), str(claims.get("oid")), frozenset(str(r) for r in roles))


def require(caller: Caller, operation: str) -> None:
    """Raise 403 unless the token's roles satisfy the operation's permission sets."""
    for any_of in PERMISSIONS[operation]:
        if not caller.roles & any_of:
            raise GraphFault("denied")


def readable(caller: Caller, operation: str, find: Callable[[], JsonObject]) -> JsonObject:
    """The object, if the caller may read it: with the permission, or because it is its own.

    A service principal "can retrieve its own application and service principal details without
    being granted any application permissions" (https://learn.microsoft.com/graph/api/serviceprincipal-get).
    """
    try:
        require(caller, operation)
    except GraphFault:
        try:
            obj = find()
        except SandboxFault:
            raise GraphFault("denied") from None
        if str(obj.get("appId", "")).lower() != caller.app_id.lower():
            raise
        return obj
    return find()
