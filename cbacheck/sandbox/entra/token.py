"""The token endpoint of the sandbox's Entra ID: the client-credentials grant with a certificate assertion.

https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Final

from werkzeug.wrappers import Request, Response

from cbacheck import wellknown
from cbacheck.sandbox.entra.assertion import AssertionVerifier
from cbacheck.sandbox.entra.errors import NO_CACHE, AadstsError, check_tenant
from cbacheck.sandbox.entra.signer import TokenSigner, b64url
from cbacheck.sandbox.response import Call, json_response
from cbacheck.sandbox.state import TenantState
from cbacheck.sandbox.values import JsonObject

# "the Microsoft identity platform assigns a random value ranging between 60-90 minutes (75 minutes on
# average)" to an access token's lifetime (https://learn.microsoft.com/entra/identity-platform/access-tokens).
TOKEN_LIFETIME_RANGE_S: Final = (3600, 5400)
# UNCONFIRMED: that Entra back-dates iat/nbf (here by five minutes); no Microsoft page says so.
TOKEN_BACKDATE_S: Final = 300
DEFAULT_SCOPE_SUFFIX: Final = "/.default"


class TokenService:
    """POST /{tenant}/oauth2/v2.0/token of one sandbox tenant."""

    def __init__(self, state: TenantState, signer: TokenSigner) -> None:
        self.state = state
        self.signer = signer
        self.assertions = AssertionVerifier(state)

    def token(self, request: Request, call: Call, tenant: str) -> Response:
        try:
            with self.state.lock:
                body = self._issue(request, call, tenant)
        except AadstsError as exc:
            return exc.response(call)
        return json_response(body, headers={**NO_CACHE, "x-ms-request-id": call.request_id})

    # the client-credentials grant, checked in the order Entra reports problems
    def _issue(self, request: Request, call: Call, tenant: str) -> JsonObject:
        check_tenant(self.state, tenant, allow_alias=False)
        form = request.form
        grant_type = form.get("grant_type")
        if not grant_type:
            raise AadstsError("missing_parameter", parameter="grant_type")
        if grant_type != "client_credentials":
            raise AadstsError("unsupported_grant", grant_type=grant_type)
        client_id = form.get("client_id", "")
        if not client_id:
            raise AadstsError("missing_parameter", parameter="client_id")
        app = self.state.application(app_id=client_id)
        sp = self.state.service_principal(app_id=client_id)
        if app is None:
            raise AadstsError("app_not_found", app_id=client_id, directory=self.state.display_name)
        if sp is None:
            raise AadstsError("sp_missing", app_id=client_id, tenant_id=self.state.tenant_id)
        if form.get("client_secret"):
            # The sandbox keeps no secret values: every secret is a wrong one.
            raise AadstsError("client_secret", app_id=client_id)
        assertion = form.get("client_assertion", "")
        if not assertion:
            raise AadstsError("no_assertion")
        if form.get("client_assertion_type") != wellknown.CLIENT_ASSERTION_TYPE:
            raise AadstsError("missing_parameter", parameter="client_assertion_type")
        claims = self.assertions.verify(assertion, app, call, tenant)
        if claims.get("sub") != claims.get("iss"):
            raise AadstsError("subject_mismatch")
        if claims.get("iss") != client_id:
            raise AadstsError("issuer_mismatch")
        if sp.get("accountEnabled") is False:
            raise AadstsError("app_disabled", app_id=client_id, name=str(sp.get("displayName")))
        resource, resource_sp = self._resource(form.get("scope"))
        return self._access_token(app, sp, resource, resource_sp)

    def _resource(self, scope: str | None) -> tuple[str, JsonObject]:
        if not scope or not scope.strip():
            raise AadstsError("scope_missing")
        scopes = scope.split()
        resources = {s[: -len(DEFAULT_SCOPE_SUFFIX)] for s in scopes if s.endswith(DEFAULT_SCOPE_SUFFIX)}
        if len(resources) != 1 or len(scopes) != 1:
            raise AadstsError("scope_invalid", scope=scope)
        resource = resources.pop()
        resource_sp = self.state.service_principal_for_resource(resource)
        if resource_sp is None:
            raise AadstsError("resource_not_found", resource=resource, directory=self.state.tenant_id)
        return resource, resource_sp

    def _access_token(self, app: JsonObject, sp: JsonObject, resource: str, resource_sp: JsonObject) -> JsonObject:
        now = int(time.time())
        low, high = TOKEN_LIFETIME_RANGE_S
        lifetime = low + secrets.randbelow(high - low + 1)
        tid = self.state.tenant_id
        claims: JsonObject = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": now - TOKEN_BACKDATE_S,
            "nbf": now - TOKEN_BACKDATE_S,
            "exp": now + lifetime,
            "aio": b64url(secrets.token_bytes(48)),
            "app_displayname": app.get("displayName"),
            "appid": app["appId"],
            "appidacr": "2",
            "idp": f"https://sts.windows.net/{tid}/",
            "idtyp": "app",
            "oid": sp["id"],
            "rh": f"1.{b64url(secrets.token_bytes(32))}.",
            "sub": sp["id"],
            "tid": tid,
            "uti": b64url(uuid.uuid4().bytes),
            "ver": "1.0",
        }
        roles = self.state.granted_app_roles(sp, resource_sp)
        if roles:
            claims["roles"] = roles
        wids = self.state.active_directory_roles(sp)
        if wids:
            claims["wids"] = wids
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": self.signer.sign(claims),
        }
