"""The URL map of the sandbox's Graph v1.0 (and one beta report): which path and method reach which endpoint."""

from __future__ import annotations

from typing import Any, Final

from werkzeug.routing import BaseConverter, Map, Rule


class ObjectRef(BaseConverter):
    """``/{id}`` or ``(appId='{appId}')`` after a collection name (Graph's alternate key)."""

    regex = r"(?:/[^/()]+|\(appId='[^'/]+'\))"
    part_isolating = False

    def to_python(self, value: str) -> tuple[str, str]:
        if value.startswith("/"):
            return ("id", value[1:])
        return ("appId", value[len("(appId='") : -len("')")])

    def to_url(self, value: Any) -> str:
        kind, text = value
        return f"/{text}" if kind == "id" else f"(appId='{text}')"


# The Graph routes the sandbox serves: (path, endpoint, methods).
GRAPH_ROUTES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("/v1.0/applications", "applications", ("GET", "POST")),
    ("/v1.0/applications<ref:ref>", "application", ("GET", "PATCH", "DELETE")),
    (
        "/v1.0/applications<ref:ref>/<any(owners,federatedIdentityCredentials):relation>",
        "applicationRelation",
        ("GET",),
    ),
    ("/v1.0/servicePrincipals", "servicePrincipals", ("GET", "POST")),
    ("/v1.0/servicePrincipals<ref:ref>", "servicePrincipal", ("GET", "PATCH", "DELETE")),
    (
        "/v1.0/servicePrincipals<ref:ref>/<any(appRoleAssignments,appRoleAssignedTo):nav>",
        "assignments",
        ("GET", "POST"),
    ),
    (
        "/v1.0/servicePrincipals<ref:ref>/<any(appRoleAssignments,appRoleAssignedTo):nav>/<aid>",
        "assignment",
        ("GET", "DELETE"),
    ),
    ("/v1.0/roleManagement/directory/roleAssignments", "roleAssignments", ("GET", "POST")),
    ("/v1.0/roleManagement/directory/roleAssignments/<rid>", "roleAssignment", ("GET", "DELETE")),
    ("/v1.0/roleManagement/directory/roleDefinitions", "roleDefinitions", ("GET",)),
    ("/v1.0/roleManagement/directory/roleDefinitions/<rid>", "roleDefinition", ("GET",)),
    ("/v1.0/roleManagement/directory/roleEligibilitySchedules", "roleEligibilitySchedules", ("GET",)),
    ("/v1.0/organization", "organizations", ("GET",)),
    ("/v1.0/organization/<oid>", "organizationById", ("GET",)),
    ("/v1.0/domains", "domains", ("GET",)),
    ("/v1.0/domains/<did>", "domain", ("GET",)),
    ("/v1.0/policies/defaultAppManagementPolicy", "appManagementPolicy", ("GET",)),
    ("/beta/reports/servicePrincipalSignInActivities", "signInActivities", ("GET",)),
    ("/v1.0/$batch", "batch", ("POST",)),
)


def graph_routes() -> Map:
    """The Graph v1.0 routes the sandbox serves (the URL map)."""
    return Map(
        [Rule(path, endpoint=endpoint, methods=list(methods)) for path, endpoint, methods in GRAPH_ROUTES],
        converters={"ref": ObjectRef},
        strict_slashes=False,
        merge_slashes=False,
    )
