"""The certificates handed to `cbacheck audit --certificates DIR`: each PFX/PEM file's signing material and thumbprint.

The folder is an input path, like `cert`: it is read, never written. One password (`certificates_password`, from
the environment or a file, never an option) opens the PFX and encrypted PEM files; a file it does not open stops
the audit before any request (exit 2, naming the file), since a wrong password says nothing about the tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cbacheck.certs.reading import PasswordProblem, SigningMaterial, load_signing_material
from cbacheck.errors import CertificateError, InputError

PASSWORD_ENV: Final = "CBACHECK_CERTIFICATES_PASSWORD"
SUFFIXES: Final = (".pfx", ".p12", ".pem")
MAX_FILES: Final = 1000  # a folder of certificates for one tenant's apps, not a disk


@dataclass(frozen=True)
class SuppliedCertificate:
    """One file of the folder: its signing material (the key stays in memory), or why it cannot sign."""

    name: str  # the file name, as reports show it
    material: SigningMaterial | None = field(repr=False)
    problem: str = ""  # why the file cannot sign (no key, not RSA...); "" when it can

    @property
    def thumbprint(self) -> str:
        """SHA-1 thumbprint (upper-case hex), what an uploaded keyCredential's customKeyIdentifier holds."""
        return self.material.sha1_thumbprint if self.material is not None else ""


def read_certificate_folder(folder: Path, password: str | None) -> tuple[SuppliedCertificate, ...]:
    """Every .pfx/.p12/.pem file of the folder (not its subfolders), sorted by name.

    InputError (exit 2) when the folder cannot be listed or a password does not open a file; a file that opens but
    cannot sign (no private key, not RSA, key and certificate apart) is kept with its problem, to be reported.
    """
    source = f"--certificates {folder}"
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    except OSError as err:
        raise InputError([f"{source}: cannot list the folder ({err.strerror or type(err).__name__})"]) from None
    if not files:
        # An empty folder is almost always the wrong one: say so rather than audit without the files meant.
        raise InputError([f"{source}: no .pfx, .p12 or .pem file in the folder; check the path"])
    if len(files) > MAX_FILES:
        raise InputError([f"{source}: {len(files)} certificate files; at most {MAX_FILES} are read"])
    supplied = []
    for path in files:
        try:
            material = load_signing_material(path, password, source, password_env=PASSWORD_ENV)
        except PasswordProblem as err:
            raise InputError(
                [
                    f"{source}: {path.name}: {err.reason}; set certificates_password through {PASSWORD_ENV} or a file "
                    f"named by {PASSWORD_ENV}_FILE"
                ]
            ) from None
        except CertificateError as err:
            supplied.append(SuppliedCertificate(path.name, None, err.reason))
            continue
        supplied.append(SuppliedCertificate(path.name, material))
    return tuple(supplied)
