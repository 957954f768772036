"""Scenario files: loading them, generating their certificates and expanding them into state."""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cbacheck import wellknown
from cbacheck.sandbox import generate
from cbacheck.sandbox.faults import SandboxStateError
from cbacheck.sandbox.validation import read_json_file, validate
from cbacheck.sandbox.values import (
    JsonObject,
    graph_time,
    key_credential_for,
    stable_guid,
    utcnow,
)

IDENTITY_ROLES: Final = ("under_test", "auditor", "admin")
# cryptography no longer signs certificates with SHA-1, so SHA-1 scenarios cannot be generated.
_HASHES: Final[dict[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_RELATIVE_TIME: Final = re.compile(r"^now(?:([+-]\d+)d)?$")
_SP_REFERENCE: Final = re.compile(r"^\{sp:([0-9a-fA-F-]{36})\}$")
_SCENARIO_KEYS: Final = frozenset(
    {"description", "breaks", "certificates", "identities", "tenant", "organization", "settings", "state", "generate"}
)


@dataclass(frozen=True)
class Identity:
    """An app a scenario signs in as: its client id and a PEM file with certificate and key."""

    app_id: str
    cert_path: Path
    thumbprint_sha1: str
    certificate_name: str


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file: what it is for, which requirements it breaks, and the raw doc."""

    name: str
    description: str
    breaks: tuple[str, ...]
    path: Path | None = None
    # cbacheck settings the scenario is meant to be checked with (exchange_cmdlets, rbac_role_group, ...).
    settings: Mapping[str, str | list[str]] = field(default_factory=dict)
    doc: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class CertificateSpec:
    """How to generate one scenario certificate."""

    name: str
    subject: str
    key_size: int = 2048
    days: int = 365
    not_before_days: int = 0
    hash: str = "sha256"


@dataclass(frozen=True)
class GeneratedCertificate:
    """A certificate generated for a scenario, with its unencrypted private key."""

    name: str
    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def thumbprint_sha1(self) -> str:
        return hashlib.sha1(self.der).hexdigest().upper()  # noqa: S324 - x5t is SHA-1

    def pem(self) -> bytes:
        """Certificate then private key (PKCS#8, unencrypted), the form msal and azure-identity read."""
        return self.certificate.public_bytes(serialization.Encoding.PEM) + self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class BuiltScenario:
    """A scenario made concrete: validated state, generated certificates, identities to write."""

    scenario: Scenario
    state: JsonObject
    certificates: dict[str, GeneratedCertificate]
    identities: dict[str, tuple[str, str]]  # role -> (app_id, certificate name)
    tenant: str
    organization: str


# RSA key generation dominates scenario start-up; keys carry no meaning beyond being distinct
# within one tenant, so the n-th key of a size is shared by every scenario loaded in the process.
_KEY_POOL: dict[int, list[rsa.RSAPrivateKey]] = {}
_KEY_POOL_LOCK = threading.Lock()


def _pooled_key(size: int, index: int) -> rsa.RSAPrivateKey:
    with _KEY_POOL_LOCK:
        pool = _KEY_POOL.setdefault(size, [])
        while len(pool) <= index:
            pool.append(rsa.generate_private_key(public_exponent=65537, key_size=size))
        return pool[index]


def generate_certificate(
    spec: CertificateSpec, *, now: datetime, key: rsa.RSAPrivateKey | None = None
) -> GeneratedCertificate:
    """A self-signed certificate as New-SelfSignedCertificate or openssl would make for CBA.

    This duplicates cbacheck.certs on purpose: the sandbox imports nothing from the product but
    cbacheck.wellknown (it is the oracle the product is tested against), and it must make what the
    product refuses to make: RSA-1024 keys and back-dated or already expired certificates.
    """
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=spec.key_size)
    name = x509.Name.from_rfc4514_string(spec.subject)
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.subject)])
    start = now + timedelta(days=spec.not_before_days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=spec.days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=False,
        )
        .sign(key, _HASHES[spec.hash]())
    )
    return GeneratedCertificate(spec.name, cert, key)


# --- finding and reading scenario files ----------------------------------------------------------


def _scenario_dir() -> Path | None:
    """The shipped scenarios: package cbacheck.scenarios, else fixtures/scenarios in a checkout."""
    try:
        root = importlib.resources.files("cbacheck.scenarios")
    except ModuleNotFoundError:
        root = None
    if root is not None and root.is_dir():
        return Path(str(root))
    checkout = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"
    return checkout if checkout.is_dir() else None


def scenario_names() -> list[str]:
    """Names of the shipped scenarios (file stems), sorted."""
    folder = _scenario_dir()
    if folder is None:
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


def find_scenario(name_or_path: str | Path) -> Path:
    """The file of a shipped scenario name, or the given path when it is a file."""
    text = str(name_or_path)
    folder = _scenario_dir()
    if isinstance(name_or_path, str) and "/" not in text and not text.endswith(".json"):
        if folder is not None and (folder / f"{text}.json").is_file():
            return folder / f"{text}.json"
        raise SandboxStateError(
            f"unknown scenario {text!r}; known scenarios: {', '.join(scenario_names())}. "
            "Pick one of them, or pass the path of a scenario file."
        )
    path = Path(name_or_path)
    if not path.is_file():
        raise SandboxStateError(
            f"scenario file '{path}' does not exist. Pass a scenario name "
            f"({', '.join(scenario_names()[:3])}, ...) or the path of a scenario file."
        )
    return path


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read a scenario (by name or path) and check its outline; certificates come later."""
    path = find_scenario(name_or_path)
    source = f"scenario file '{path}'"
    doc = read_json_file(path, source)
    if not isinstance(doc, dict) or not isinstance(doc.get("state"), dict):
        raise SandboxStateError(f"{source}: $: expected an object with a 'state' object. Fix the file.")
    unknown = sorted(set(doc) - _SCENARIO_KEYS)
    if unknown:
        raise SandboxStateError(
            f"{source}: $.{unknown[0]}: unknown key; expected some of {', '.join(sorted(_SCENARIO_KEYS))}. "
            "Fix the file."
        )
    breaks = doc.get("breaks", [])
    if not isinstance(breaks, list) or not all(isinstance(b, str) for b in breaks):
        raise SandboxStateError(f"{source}: $.breaks: expected an array of requirement IDs. Fix the file.")
    settings = doc.get("settings", {})
    if not isinstance(settings, dict) or not all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v)) for v in settings.values()
    ):
        raise SandboxStateError(f"{source}: $.settings: expected an object of strings or string arrays. Fix the file.")
    return Scenario(
        name=path.stem,
        description=str(doc.get("description", "")),
        breaks=tuple(breaks),
        path=path,
        settings=settings,
        doc=doc,
    )


# --- expanding a scenario ------------------------------------------------------------------------


def _expand_strings(value: Any, now: datetime, sp_ids: Mapping[str, str]) -> Any:
    """Replace scenario shorthands anywhere in the value: "now", "now-30d", "now+10d" become
    Graph times; "{sp:<appId>}" becomes the object id of that app's service principal."""
    if isinstance(value, dict):
        return {k: _expand_strings(v, now, sp_ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_strings(v, now, sp_ids) for v in value]
    if isinstance(value, str):
        match = _RELATIVE_TIME.match(value)
        if match:
            return graph_time(now + timedelta(days=int(match.group(1) or 0)))
        ref = _SP_REFERENCE.match(value)
        if ref and ref.group(1).lower() in sp_ids:
            return sp_ids[ref.group(1).lower()]
    return value


def _service_principal_ids(state: Mapping[str, Any]) -> dict[str, str]:
    """appId -> object id of the service principals a state will have, built-ins included."""
    out: dict[str, str] = {}
    orgs = state.get("organization")
    tenant_id = str(orgs[0].get("id")) if isinstance(orgs, list) and orgs and isinstance(orgs[0], dict) else ""
    for app_id in (wellknown.EXCHANGE_ONLINE_APP_ID, wellknown.MICROSOFT_GRAPH_APP_ID, wellknown.EOP_APP_ID):
        out[app_id] = stable_guid(tenant_id, app_id)
    for sp in state.get("servicePrincipals") or []:
        if isinstance(sp, dict) and isinstance(sp.get("appId"), str) and isinstance(sp.get("id"), str):
            out[sp["appId"].lower()] = sp["id"]
    return out


def _cert_specs(doc: Mapping[str, Any], source: str) -> list[CertificateSpec]:
    raw = doc.get("certificates", [])
    if not isinstance(raw, list):
        raise SandboxStateError(f"{source}: $.certificates: expected an array. Fix the file.")
    specs: list[CertificateSpec] = []
    for i, item in enumerate(raw):
        path = f"$.certificates[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise SandboxStateError(f"{source}: {path}: expected an object with a 'name'. Fix the file.")
        try:
            spec = CertificateSpec(
                name=item["name"],
                subject=str(item.get("subject", f"CN={item['name']}")),
                key_size=int(item.get("key_size", 2048)),
                days=int(item.get("days", 365)),
                not_before_days=int(item.get("not_before_days", 0)),
                hash=str(item.get("hash", "sha256")),
            )
        except (TypeError, ValueError) as exc:
            raise SandboxStateError(f"{source}: {path}: {exc}. Fix the file.") from None
        if spec.hash not in _HASHES or spec.key_size < 1024:
            raise SandboxStateError(
                f"{source}: {path}: hash must be one of {', '.join(_HASHES)} and key_size >= 1024. Fix the file."
            )
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise SandboxStateError(f"{source}: $.certificates: certificate names repeat. Fix the file.")
    return specs


def build(scenario: Scenario, *, now: datetime | None = None) -> BuiltScenario:
    """Generate the scenario's certificates and expand it into a validated state document."""
    now = now or utcnow()
    source = f"scenario file '{scenario.path}'" if scenario.path else f"scenario {scenario.name!r}"
    doc = copy.deepcopy(dict(scenario.doc))
    counters: dict[int, int] = {}
    certs: dict[str, GeneratedCertificate] = {}
    for spec in _cert_specs(doc, source):
        index = counters.get(spec.key_size, 0)
        counters[spec.key_size] = index + 1
        certs[spec.name] = generate_certificate(spec, now=now, key=_pooled_key(spec.key_size, index))
    sp_ids = _service_principal_ids(doc["state"])
    state = _expand_strings(doc["state"], now, sp_ids)
    _expand_key_credentials(state, certs, scenario.name, source)
    if "generate" in doc:
        # Generated objects are appended after the shorthands are expanded: they carry absolute values.
        generated = generate.parse_spec(doc["generate"], source)
        generate.expand(state, generated, {n: c.der for n, c in certs.items()}, now, sp_ids, source)
    data = validate(state, source)
    identities = _identities(doc, certs, source)
    tenant_id = str(data["organization"][0]["id"])
    initial = next(str(d["id"]) for d in data["domains"] if d.get("isInitial"))

    def placeholders(value: object, default: str) -> str:
        text = str(value) if value is not None else default
        return text.replace("{tenant_id}", tenant_id).replace("{initial_domain}", initial)

    return BuiltScenario(
        scenario=scenario,
        state=data,
        certificates=certs,
        identities=identities,
        tenant=placeholders(doc.get("tenant"), tenant_id),
        organization=placeholders(doc.get("organization"), initial),
    )


def _expand_key_credentials(
    state: JsonObject, certs: Mapping[str, GeneratedCertificate], scenario: str, source: str
) -> None:
    """A keyCredential ``{"certificate": NAME, ...}`` becomes the full keyCredential of that certificate."""
    for collection in ("applications", "servicePrincipals"):
        for i, obj in enumerate(state.get(collection) or []):
            if not isinstance(obj, dict):
                continue
            creds = obj.get("keyCredentials") or []
            for j, cred in enumerate(creds):
                if isinstance(cred, dict) and "certificate" in cred:
                    name = cred.pop("certificate")
                    if name not in certs:
                        raise SandboxStateError(
                            f"{source}: $.state.{collection}[{i}].keyCredentials[{j}].certificate: "
                            f"no certificate named {name!r} in $.certificates. Fix the file."
                        )
                    key_id = cred.pop("keyId", None) or stable_guid(scenario, str(obj.get("id")), name)
                    creds[j] = key_credential_for(certs[name].der, key_id=key_id, **cred)


def _identities(
    doc: Mapping[str, Any], certs: Mapping[str, GeneratedCertificate], source: str
) -> dict[str, tuple[str, str]]:
    """role -> (app id, certificate name) of the apps the scenario signs in as."""
    identities: dict[str, tuple[str, str]] = {}
    raw_ids = doc.get("identities", {})
    if not isinstance(raw_ids, dict):
        raise SandboxStateError(f"{source}: $.identities: expected an object. Fix the file.")
    for role, spec in raw_ids.items():
        path = f"$.identities.{role}"
        if role not in IDENTITY_ROLES:
            raise SandboxStateError(
                f"{source}: {path}: unknown identity; expected some of {', '.join(IDENTITY_ROLES)}. Fix the file."
            )
        if not isinstance(spec, dict) or spec.get("certificate") not in certs:
            raise SandboxStateError(
                f"{source}: {path}: expected {{'app_id': ..., 'certificate': <a name in "
                "$.certificates>}. Fix the file."
            )
        identities[role] = (str(spec.get("app_id")), str(spec["certificate"]))
    return identities
