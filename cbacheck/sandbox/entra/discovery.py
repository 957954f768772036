"""OpenID discovery and the JWKS of the sandbox's Entra ID: what clients read before asking for a token.

https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc
"""

from __future__ import annotations

from typing import Final

from werkzeug.wrappers import Request, Response

from cbacheck.sandbox.entra.errors import MULTI_TENANT_ALIASES, Aadsts, AadstsError, check_tenant
from cbacheck.sandbox.entra.signer import TokenSigner
from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.values import JsonObject

_CLAIMS_SUPPORTED: Final = (
    "sub",
    "iss",
    "cloud_instance_name",
    "cloud_instance_host_name",
    "cloud_graph_host_name",
    "msgraph_host",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "acr",
    "nonce",
    "preferred_username",
    "name",
    "tid",
    "ver",
    "at_hash",
    "c_hash",
    "email",
)


class DiscoveryService:
    """The metadata endpoints of one sandbox tenant."""

    def __init__(self, state: TenantState, signer: TokenSigner) -> None:
        self.state = state
        self.signer = signer

    def openid_configuration(self, request: Request, call: Call, tenant: str) -> Response:
        try:
            check_tenant(self.state, tenant, allow_alias=True)
        except AadstsError as exc:
            # UNCONFIRMED: the `error` value of a discovery failure (recordings sanitize it).
            if exc.key == "tenant_not_found":
                exc.spec = Aadsts(exc.spec.code, "invalid_tenant", 400, exc.spec.text)
            return exc.response(call)
        tid = "{tenantid}" if tenant.lower() in MULTI_TENANT_ALIASES else self.state.tenant_id
        doc = openid_document(call.base_url, tenant, tid)
        return json_response(doc, headers={"Cache-Control": "max-age=86400, private"})

    def jwks(self, request: Request, call: Call, tenant: str) -> Response:
        try:
            check_tenant(self.state, tenant, allow_alias=True)
        except AadstsError as exc:
            return exc.response(call)
        issuer = f"{call.base_url}/{self.state.tenant_id}/v2.0"
        return json_response({"keys": [self.signer.jwk(issuer)]})


def openid_document(base: str, tenant: str, tid: str) -> JsonObject:
    """The v2.0 OpenID configuration, endpoints naming the tenant as the client asked for it."""
    return {
        "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{tid}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
        "claims_supported": list(_CLAIMS_SUPPORTED),
        "kerberos_endpoint": f"{base}/{tenant}/kerberos",
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }
