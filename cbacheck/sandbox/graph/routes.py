"""The URL map of the sandbox's Graph v1.0 (and one beta report): which path and method reach which endpoint."""

from __future__ import annotations

from typing import Any

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


def graph_routes() -> Map:
    """The Graph v1.0 routes the sandbox serves (the URL map, as moto's urls.py)."""
    r = Rule
    return Map(
        [
            r("/v1.0/applications", endpoint="applications", methods=["GET", "POST"]),
            r("/v1.0/applications<ref:ref>", endpoint="application", methods=["GET", "PATCH", "DELETE"]),
            r(
                "/v1.0/applications<ref:ref>/<any(owners,federatedIdentityCredentials):relation>",
                endpoint="applicationRelation",
                methods=["GET"],
            ),
            r("/v1.0/servicePrincipals", endpoint="servicePrincipals", methods=["GET", "POST"]),
            r(
                "/v1.0/servicePrincipals<ref:ref>",
                endpoint="servicePrincipal",
                methods=["GET", "PATCH", "DELETE"],
            ),
            r(
                "/v1.0/servicePrincipals<ref:ref>/<any(appRoleAssignments,appRoleAssignedTo):nav>",
                endpoint="assignments",
                methods=["GET", "POST"],
            ),
            r(
                "/v1.0/servicePrincipals<ref:ref>/<any(appRoleAssignments,appRoleAssignedTo):nav>/<aid>",
                endpoint="assignment",
                methods=["GET", "DELETE"],
            ),
            r(
                "/v1.0/roleManagement/directory/roleAssignments",
                endpoint="roleAssignments",
                methods=["GET", "POST"],
            ),
            r(
                "/v1.0/roleManagement/directory/roleAssignments/<rid>",
                endpoint="roleAssignment",
                methods=["GET", "DELETE"],
            ),
            r("/v1.0/roleManagement/directory/roleDefinitions", endpoint="roleDefinitions", methods=["GET"]),
            r(
                "/v1.0/roleManagement/directory/roleDefinitions/<rid>",
                endpoint="roleDefinition",
                methods=["GET"],
            ),
            r(
                "/v1.0/roleManagement/directory/roleEligibilitySchedules",
                endpoint="roleEligibilitySchedules",
                methods=["GET"],
            ),
            r("/v1.0/organization", endpoint="organizations", methods=["GET"]),
            r("/v1.0/organization/<oid>", endpoint="organizationById", methods=["GET"]),
            r("/v1.0/domains", endpoint="domains", methods=["GET"]),
            r("/v1.0/domains/<did>", endpoint="domain", methods=["GET"]),
            r("/v1.0/policies/defaultAppManagementPolicy", endpoint="appManagementPolicy", methods=["GET"]),
            r("/beta/reports/servicePrincipalSignInActivities", endpoint="signInActivities", methods=["GET"]),
            r("/v1.0/$batch", endpoint="batch", methods=["POST"]),
        ],
        converters={"ref": ObjectRef},
        strict_slashes=False,
        merge_slashes=False,
    )
