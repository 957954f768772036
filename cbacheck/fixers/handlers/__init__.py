"""One handler per action kind: it reads the action's object, makes its write and probes its effect."""

from __future__ import annotations

from typing import Any, Final

from cbacheck.fixers.actions import (
    Action,
    AddKeyCredential,
    AddRequiredResourceAccess,
    AddRoleGroupMember,
    AssignDirectoryRole,
    CreateApplication,
    CreateCertificate,
    CreateExchangeServicePrincipal,
    CreateServicePrincipal,
    EnableServicePrincipal,
    GrantAppRole,
    RemoveKeyCredentials,
)
from cbacheck.fixers.handlers.access import (
    AddRequiredResourceAccessHandler,
    AssignDirectoryRoleHandler,
    GrantAppRoleHandler,
)
from cbacheck.fixers.handlers.base import ApplyContext, Handler, ProbeContext, Reading, Sent
from cbacheck.fixers.handlers.directory import (
    CreateApplicationHandler,
    CreateServicePrincipalHandler,
    EnableServicePrincipalHandler,
)
from cbacheck.fixers.handlers.keys import AddKeyCredentialHandler, CreateCertificateHandler, RemoveKeyCredentialsHandler
from cbacheck.fixers.handlers.rbac import AddRoleGroupMemberHandler, CreateExchangeServicePrincipalHandler

HANDLERS: Final[dict[type[Action], Handler[Any]]] = {
    CreateCertificate: CreateCertificateHandler(),
    CreateApplication: CreateApplicationHandler(),
    CreateServicePrincipal: CreateServicePrincipalHandler(),
    EnableServicePrincipal: EnableServicePrincipalHandler(),
    AddKeyCredential: AddKeyCredentialHandler(),
    AddRequiredResourceAccess: AddRequiredResourceAccessHandler(),
    GrantAppRole: GrantAppRoleHandler(),
    AssignDirectoryRole: AssignDirectoryRoleHandler(),
    RemoveKeyCredentials: RemoveKeyCredentialsHandler(),
    CreateExchangeServicePrincipal: CreateExchangeServicePrincipalHandler(),
    AddRoleGroupMember: AddRoleGroupMemberHandler(),
}


def handler_for(action: Action) -> Handler[Any]:
    """The handler of an automated action (a ManualStep has none: it is never sent)."""
    return HANDLERS[type(action)]


__all__ = ["HANDLERS", "ApplyContext", "Handler", "ProbeContext", "Reading", "Sent", "handler_for"]
