"""Large generated tenants for `cbacheck audit`: N applications from a few lines of a scenario file.

A scenario's ``"generate": {"applications": 1000, "exchange_share": 0.1, "certificate": "shared"}``
adds N applications with service principals; every ``1 / exchange_share``-th one holds an Exchange
permission, cycling through the kinds below. Keys reuse the scenario's named certificates (a few
RSA keys shared by every app), so a tenant of 10,000 apps builds in seconds. Each kind declares the
audit requirements it breaks (``declared_breaks``): the end-to-end test compares the audit with it.
The declarations are this module's own strings; the sandbox shares no rule with the product.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from cbacheck import wellknown
from cbacheck.sandbox.faults import SandboxStateError
from cbacheck.sandbox.values import JsonObject, graph_time, key_credential_for, stable_guid

# kind -> the audit requirement IDs the kind breaks (everything else it is checked for passes).
KINDS: Final[dict[str, frozenset[str]]] = {
    "healthy": frozenset(),
    "expiring-key": frozenset({"CBA-AUD-004"}),
    "client-secret": frozenset({"CBA-AUD-003"}),
    "no-role": frozenset({"CBA-AUD-008"}),
    "global-admin": frozenset({"CBA-AUD-007"}),  # authorised, but far beyond Exchange
    "full-access": frozenset({"CBA-AUD-010"}),
    "graph-mail": frozenset({"CBA-AUD-011"}),
    "managed-identity": frozenset(),
    "sp-disabled": frozenset({"CBA-AUD-001"}),
    "expired-leftover": frozenset({"CBA-AUD-006"}),
    "multi-tenant": frozenset({"CBA-AUD-002"}),
    "long-lived-key": frozenset({"CBA-AUD-005"}),
    "not-in-manifest": frozenset({"CBA-AUD-009"}),
    "rbac-only": frozenset(),  # no Entra role; an Exchange pointer with a direct management role assignment
    "owned": frozenset({"CBA-AUD-012"}),  # a user owns the app: it can add a credential and act as the app
    "federated": frozenset(),  # a federated identity credential (listed with the credentials, no finding)
    # RBAC for Applications: an Application role on an Exchange pointer, scoped by a management scope or not.
    "graph-mail-scoped": frozenset(),  # mailbox access through a scoped Application role only: the sound setup
    "graph-mail-both": frozenset({"CBA-AUD-011"}),  # Entra Mail.Read beside the scoped role: the union is unscoped
    "rbac-app-unscoped": frozenset({"CBA-AUD-014"}),  # an Application role with no scope covers every mailbox
    "graph-mail-restricted": frozenset(),  # Entra Mail.Read limited by an Application Access Policy (RestrictAccess)
    # Keys of the spec's supplied_certificate: an audit given that certificate also proves their token and Exchange.
    "own-certificate": frozenset(),
    "own-certificate-no-role": frozenset({"CBA-AUD-008"}),
}
# What the token and Exchange links of those kinds break when the audit is given their certificate.
LINK_BREAKS: Final[dict[str, frozenset[str]]] = {
    "own-certificate": frozenset(),
    "own-certificate-no-role": frozenset({"CBA-TOKEN-002", "CBA-EXO-001"}),  # no wids; Exchange refuses the app
}
# Kinds whose mailbox access comes from RBAC for Applications, and whether their Application role is scoped.
APPLICATION_ROLE_KINDS: Final[dict[str, bool]] = {
    "graph-mail-scoped": True,
    "graph-mail-both": True,
    "rbac-app-unscoped": False,
}
GENERATED_SCOPE: Final = "generated mailbox scope"
GENERATED_SCOPE_FILTER: Final = "CustomAttribute1 -eq 'cbacheck-generated'"
KIND_ORDER: Final = tuple(KINDS)
_GENERATE_KEYS: Final = frozenset(
    {"applications", "exchange_share", "certificate", "seed", "ews", "supplied_certificate"}
)
# "ews": "allow-list" sets EwsEnabled true with every second full_access_as_app holder on EwsAllowedAppIDs;
# "disabled" sets EwsEnabled false; absent leaves EwsEnabled unset ($null).
EWS_MODES: Final = ("allow-list", "disabled")
NEVER_SIGNED_IN_EVERY: Final = 3
# Stale sign-ins: the sandbox's own copy of the audit's default unused_days (CBA-AUD-013), and registration ages
# on either side of it.
UNUSED: Final = "CBA-AUD-013"
UNUSED_DAYS: Final = 90
RECENT_DAYS: Final = 45
OLD_DAYS: Final = 400


@dataclass(frozen=True)
class GenerateSpec:
    applications: int
    exchange_share: float
    certificate: str
    seed: str
    ews: str | None = None
    supplied_certificate: str | None = None  # the certificate of the own-certificate kinds (else `certificate`)


def parse_spec(raw: Any, source: str) -> GenerateSpec:
    """The ``generate`` object of a scenario, checked."""
    if not isinstance(raw, dict) or set(raw) - _GENERATE_KEYS:
        raise SandboxStateError(
            f"{source}: $.generate: expected an object with some of {', '.join(sorted(_GENERATE_KEYS))}. Fix the file."
        )
    try:
        spec = GenerateSpec(
            applications=int(raw.get("applications", 0)),
            exchange_share=float(raw.get("exchange_share", 0.1)),
            certificate=str(raw.get("certificate", "")),
            seed=str(raw.get("seed", "generated")),
            ews=None if raw.get("ews") is None else str(raw["ews"]),
            supplied_certificate=None if raw.get("supplied_certificate") is None else str(raw["supplied_certificate"]),
        )
    except (TypeError, ValueError) as exc:
        raise SandboxStateError(f"{source}: $.generate: {exc}. Fix the file.") from None
    if spec.ews is not None and spec.ews not in EWS_MODES:
        raise SandboxStateError(f"{source}: $.generate.ews: expected one of {', '.join(EWS_MODES)}. Fix the file.")
    if spec.applications < 0 or not 0 < spec.exchange_share <= 1:
        raise SandboxStateError(f"{source}: $.generate: applications >= 0 and 0 < exchange_share <= 1. Fix the file.")
    return spec


def kind_of(index: int, spec: GenerateSpec) -> str | None:
    """The kind of the index-th generated app, or None for an app with no Exchange permission."""
    stride = max(1, round(1 / spec.exchange_share))
    if index % stride:
        return None
    return KIND_ORDER[(index // stride) % len(KIND_ORDER)]


def app_id_of(index: int, spec: GenerateSpec) -> str:
    return stable_guid(spec.seed, "appId", str(index))


def declared_breaks(spec: GenerateSpec) -> dict[str, frozenset[str]]:
    """appId -> the audit requirements the scenario declares broken, for every generated holder: its kind's, and
    CBA-AUD-013 for an app registration unused for more than UNUSED_DAYS."""
    return {
        app_id_of(i, spec): KINDS[kind] | ({UNUSED} if kind != "managed-identity" and _unused(i) else frozenset())
        for i in range(spec.applications)
        if (kind := kind_of(i, spec)) is not None
    }


def _signed_in(index: int) -> bool:
    return index % NEVER_SIGNED_IN_EVERY != 1


def _days_since_sign_in(index: int) -> int:
    return (index * 7) % 180  # 0 to 179 days: some within UNUSED_DAYS, some beyond


def created_days_ago(index: int) -> int:
    """Days since the index-th app was registered: every fourth app that never signed in is recent."""
    return RECENT_DAYS if not _signed_in(index) and index % 4 == 0 else OLD_DAYS


def _unused(index: int) -> bool:
    if _signed_in(index):
        return _days_since_sign_in(index) > UNUSED_DAYS
    return created_days_ago(index) > UNUSED_DAYS


def declared_link_breaks(spec: GenerateSpec) -> dict[str, frozenset[str]]:
    """appId -> the token and Exchange requirements its links break, for every app keyed with supplied_certificate."""
    return {
        app_id_of(i, spec): LINK_BREAKS[kind]
        for i in range(spec.applications)
        if (kind := kind_of(i, spec)) in LINK_BREAKS and spec.supplied_certificate
    }


def days_since_sign_in(spec: GenerateSpec) -> dict[str, int]:
    """appId -> days since the app's last app-only sign-in, for every generated app that signed in; every
    NEVER_SIGNED_IN_EVERY-th app (counting from the second) never signed in and is absent from the report."""
    return {app_id_of(i, spec): _days_since_sign_in(i) for i in range(spec.applications) if _signed_in(i)}


def ews_accepts(spec: GenerateSpec) -> dict[str, bool]:
    """appId -> whether EWS accepts the app, for every generated full_access_as_app holder."""
    holders = [i for i in range(spec.applications) if kind_of(i, spec) == "full-access"]
    if spec.ews == "disabled":
        return {app_id_of(i, spec): False for i in holders}
    allowed = set(holders[::2]) if spec.ews == "allow-list" else set(holders)
    return {app_id_of(i, spec): i in allowed for i in holders}


class _Builder:
    """Appends the generated objects to a state document; one keyCredential template per certificate."""

    def __init__(
        self,
        state: JsonObject,
        spec: GenerateSpec,
        certificates: tuple[bytes, bytes],
        now: datetime,
        sp_ids: Mapping[str, str],
    ):
        self.state, self.spec, self.now, self.sp_ids = state, spec, now, sp_ids
        self.template = key_credential_for(certificates[0], key_id="template")
        self.supplied = key_credential_for(certificates[1], key_id="template")  # the own-certificate kinds' keys
        self.roles = {
            "Exchange.ManageAsApp": (wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID),
            "full_access_as_app": (wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.FULL_ACCESS_AS_APP_ROLE_ID),
            "Mail.Read": (wellknown.MICROSOFT_GRAPH_APP_ID, wellknown.GRAPH_MAILBOX_PERMISSION_IDS["Mail.Read"]),
        }

    def key(self, index: int, start_days: int, end_days: int, *, supplied: bool = False) -> JsonObject:
        key = copy.copy(self.supplied if supplied else self.template)
        key["keyId"] = stable_guid(self.spec.seed, "key", str(index), str(end_days))
        key["startDateTime"] = graph_time(self.now + timedelta(days=start_days))
        key["endDateTime"] = graph_time(self.now + timedelta(days=end_days))
        return key

    def add(self, index: int) -> None:
        kind = kind_of(index, self.spec)
        app_id = app_id_of(index, self.spec)
        sp_id = stable_guid(self.spec.seed, "sp", str(index))
        managed = kind == "managed-identity"
        sp: JsonObject = {
            "id": sp_id,
            "appId": app_id,
            "displayName": f"generated {kind or 'app'} {index:05d}",
            "accountEnabled": kind != "sp-disabled",
            "servicePrincipalType": "ManagedIdentity" if managed else "Application",
        }
        self.state["servicePrincipals"].append(sp)
        if not managed:
            application = self._application(index, kind, app_id)
            self.state["applications"].append(application)
            self._relations(index, kind, str(application["id"]))
        if kind is None:
            return
        if kind in APPLICATION_ROLE_KINDS:
            self._application_role(index, app_id, sp_id, scoped=APPLICATION_ROLE_KINDS[kind])
            if kind != "graph-mail-both":
                return  # mailbox access through Exchange alone: no Entra grant
        permission = {
            "full-access": "full_access_as_app",
            "graph-mail": "Mail.Read",
            "graph-mail-both": "Mail.Read",
            "graph-mail-restricted": "Mail.Read",
        }.get(kind, "Exchange.ManageAsApp")
        if kind == "graph-mail-restricted":
            self._access_policy(index, app_id)
        resource_app_id, role_id = self.roles[permission]
        self.state["appRoleAssignments"].append(
            {
                "id": stable_guid(self.spec.seed, "grant", str(index)),
                "principalId": sp_id,
                "resourceId": self.sp_ids[resource_app_id],
                "appRoleId": role_id,
                "createdDateTime": graph_time(self.now - timedelta(days=30)),
            }
        )
        if kind == "rbac-only":
            self._exchange_pointer(index, app_id, sp_id)
        elif permission == "Exchange.ManageAsApp" and kind not in ("no-role", "own-certificate-no-role"):
            role = wellknown.GLOBAL_ADMINISTRATOR if kind == "global-admin" else wellknown.EXCHANGE_ADMINISTRATOR
            self.state["roleAssignments"].append(
                {
                    "id": stable_guid(self.spec.seed, "role", str(index)),
                    "principalId": sp_id,
                    "roleDefinitionId": role,
                    "directoryScopeId": "/",
                }
            )

    def _relations(self, index: int, kind: str | None, app_object_id: str) -> None:
        """Owners and federated credentials in Graph's shapes (directoryObject user; federatedIdentityCredential)."""
        if kind == "owned":
            self.state.setdefault("owners", {})[app_object_id] = [
                {
                    "@odata.type": "#microsoft.graph.user",
                    "id": stable_guid(self.spec.seed, "owner", str(index)),
                    "displayName": f"Owner {index:05d}",
                    "userPrincipalName": f"owner{index:05d}@contosolab.onmicrosoft.com",
                }
            ]
        if kind == "federated":
            self.state.setdefault("federatedIdentityCredentials", {})[app_object_id] = [
                {
                    "id": stable_guid(self.spec.seed, "federated", str(index)),
                    "name": "github-deploy",
                    "issuer": "https://token.actions.githubusercontent.com",
                    "subject": "repo:contoso/exchange-automation:environment:production",
                    "audiences": ["api://AzureADTokenExchange"],
                    "description": None,
                }
            ]

    def _exchange_pointer(self, index: int, app_id: str, sp_id: str) -> None:
        exchange = self.state.setdefault("exchange", {})
        exchange.setdefault("servicePrincipals", []).append(
            {"AppId": app_id, "ObjectId": sp_id, "DisplayName": f"generated rbac-only {index:05d}"}
        )
        exchange.setdefault("managementRoleAssignments", []).append(
            {"Role": "View-Only Configuration", "RoleAssignee": sp_id, "Name": f"generated-{index:05d}"}
        )

    def _access_policy(self, index: int, app_id: str) -> None:
        """New-ApplicationAccessPolicy -AppId <appId> -AccessRight RestrictAccess -PolicyScopeGroupId <group>."""
        policies = self.state.setdefault("exchange", {}).setdefault("applicationAccessPolicies", [])
        policies.append({"AppId": app_id, "AccessRight": "RestrictAccess", "ScopeName": f"generated-mail-{index:05d}"})

    def _application_role(self, index: int, app_id: str, sp_id: str, *, scoped: bool) -> None:
        """A pointer and an Application role assignment (New-ServicePrincipal, then New-ManagementRoleAssignment -App
        -Role "Application Mail.Read" [-CustomResourceScope], https://learn.microsoft.com/exchange/permissions-exo/application-rbac)."""
        exchange = self.state.setdefault("exchange", {})
        exchange.setdefault("servicePrincipals", []).append(
            {"AppId": app_id, "ObjectId": sp_id, "DisplayName": f"generated mailbox app {index:05d}"}
        )
        scopes = exchange.setdefault("managementScopes", [])
        if not scopes or all(s.get("Name") != GENERATED_SCOPE for s in scopes):
            scopes.append({"Name": GENERATED_SCOPE, "RecipientFilter": GENERATED_SCOPE_FILTER})
        exchange.setdefault("managementRoleAssignments", []).append(
            {
                "Role": "Application Mail.Read",
                "RoleAssignee": sp_id,
                "RoleAssigneeType": "ServicePrincipal",
                "Name": f"generated-application-{index:05d}",
                "CustomResourceScope": GENERATED_SCOPE if scoped else None,
            }
        )

    def _application(self, index: int, kind: str | None, app_id: str) -> JsonObject:
        keys = [self.key(index, -30, 10 if kind == "expiring-key" else 300, supplied=kind in LINK_BREAKS)]
        if kind == "expired-leftover":
            keys.append(self.key(index, -400, -35))
        if kind == "long-lived-key":
            keys = [self.key(index, -30, 3000)]
        secrets = []
        if kind == "client-secret":
            secrets.append(
                {
                    "keyId": stable_guid(self.spec.seed, "secret", str(index)),
                    "displayName": "generated secret",
                    "hint": "abc",
                    "startDateTime": graph_time(self.now - timedelta(days=30)),
                    "endDateTime": graph_time(self.now + timedelta(days=300)),
                }
            )
        permission = {"full-access": wellknown.FULL_ACCESS_AS_APP_ROLE_ID}.get(
            kind or "", wellknown.EXCHANGE_MANAGE_AS_APP_ROLE_ID
        )
        unrequested = ("graph-mail", "graph-mail-restricted", "not-in-manifest", *APPLICATION_ROLE_KINDS)
        requested = kind is not None and kind not in unrequested
        return {
            "id": stable_guid(self.spec.seed, "app", str(index)),
            "appId": app_id,
            "displayName": f"generated {kind or 'app'} {index:05d}",
            "createdDateTime": graph_time(self.now - timedelta(days=created_days_ago(index))),
            "signInAudience": "AzureADMultipleOrgs" if kind == "multi-tenant" else "AzureADMyOrg",
            "keyCredentials": keys,
            "passwordCredentials": secrets,
            "requiredResourceAccess": (
                [
                    {
                        "resourceAppId": wellknown.EXCHANGE_ONLINE_APP_ID,
                        "resourceAccess": [{"id": permission, "type": "Role"}],
                    }
                ]
                if requested
                else []
            ),
        }


def expand(
    state: JsonObject,
    spec: GenerateSpec,
    certificates: Mapping[str, bytes],
    now: datetime,
    sp_ids: Mapping[str, str],
    source: str,
) -> None:
    """Append the spec's applications, service principals, grants and roles to the state document."""
    for key, name in (("certificate", spec.certificate), ("supplied_certificate", spec.supplied_certificate)):
        if name is not None and name not in certificates:
            raise SandboxStateError(
                f"{source}: $.generate.{key}: no certificate named {name!r} in $.certificates. Fix the file."
            )
    for name in ("applications", "servicePrincipals", "appRoleAssignments", "roleAssignments"):
        state.setdefault(name, [])
    shared = certificates[spec.certificate]
    builder = _Builder(state, spec, (shared, certificates.get(spec.supplied_certificate or "", shared)), now, sp_ids)
    for index in range(spec.applications):
        builder.add(index)
    state["servicePrincipalSignInActivities"] = [
        *state.get("servicePrincipalSignInActivities", []),
        *(_sign_in_activity(app_id, now - timedelta(days=days)) for app_id, days in days_since_sign_in(spec).items()),
    ]
    if spec.ews is not None:
        allowed = [app_id for app_id, accepted in ews_accepts(spec).items() if accepted]
        config = {"EwsEnabled": spec.ews == "allow-list", "EwsAllowedAppIDs": allowed}
        state.setdefault("exchange", {})["organizationConfig"] = [config]


def _sign_in_activity(app_id: str, when: datetime) -> JsonObject:
    """One servicePrincipalSignInActivity (https://learn.microsoft.com/graph/api/resources/serviceprincipalsigninactivity):
    an app-only client sign-in, which is also the last sign-in of any kind."""
    activity = {"lastSignInDateTime": graph_time(when), "lastSignInRequestId": stable_guid("sign-in", app_id)}
    return {
        "id": stable_guid("sign-in-activity", app_id),
        "appId": app_id,
        "lastSignInActivity": activity,
        "applicationAuthenticationClientSignInActivity": dict(activity),
        "applicationAuthenticationResourceSignInActivity": {"lastSignInDateTime": None, "lastSignInRequestId": None},
        "delegatedClientSignInActivity": {"lastSignInDateTime": None, "lastSignInRequestId": None},
        "delegatedResourceSignInActivity": {"lastSignInDateTime": None, "lastSignInRequestId": None},
    }
