"""The PEM private keys OpenSSL validated in an earlier run, remembered by digest so a run need not validate again.

Loading an RSA private key runs OpenSSL's consistency check (primality of its factors included): 40-90 ms
of CPU per key, holding the interpreter, which is a fifth of a whole `cbacheck run`. cryptography's
`unsafe_skip_rsa_key_validation` skips it and is unsafe for keys that were never validated
(https://cryptography.io/en/latest/hazmat/primitives/asymmetric/serialization/#cryptography.hazmat.primitives.serialization.load_pem_private_key).
A key whose exact bytes were validated before is not such a key: this file lists digests of those bytes
(never the key), mode 0600 in the user's cache folder, and is trusted only when the user owns it and no one
else may write it. A key not listed, or a file that cannot be read, is validated as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Final

FILE_NAME: Final = "validated-keys.json"
VERSION: Final = 1
LIMIT: Final = 32  # the newest digests kept: a few identities, and the keys a rotation replaced
# Digests of key bytes in this file only, so they match no other digest of the same bytes.
_CONTEXT: Final = b"cbacheck: PEM private key bytes OpenSSL validated\0"


def validated_keys_file(environ: dict[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/cbacheck/validated-keys.json, or ~/.cache/cbacheck/validated-keys.json."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cbacheck" / FILE_NAME


def key_digest(block: bytes) -> str:
    """What the file holds for these PEM bytes (encrypted keys too: a password opens the same key or none)."""
    return hashlib.sha256(_CONTEXT + block).hexdigest()


def _digests(path: Path) -> list[str]:
    """The digests in the file, or none when it is absent, unreadable, not the user's or writable by others."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return []
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(content, dict) or content.get("version") != VERSION or not isinstance(content.get("keys"), list):
        return []
    return [digest for digest in content["keys"] if isinstance(digest, str)]


def validated_before(digest: str, path: Path | None = None) -> bool:
    return digest in _digests(path or validated_keys_file())


def remember(digest: str, path: Path | None = None) -> None:
    """Add a digest of key bytes OpenSSL has just validated (atomically, mode 0600); a write that fails is ignored."""
    target = path or validated_keys_file()
    kept = [known for known in _digests(target) if known != digest][-(LIMIT - 1) :] + [digest]
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".validated-keys-", suffix=".json")
    except OSError:
        return  # not remembered: the next run validates the key again, nothing more
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:  # mkstemp creates it 0600
            json.dump({"version": VERSION, "keys": kept}, out)
        os.replace(temporary, target)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
