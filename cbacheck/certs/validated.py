"""The PEM private keys OpenSSL validated in an earlier run, remembered by digest so a run need not validate again.

Loading an RSA private key runs OpenSSL's consistency check (primality of its factors included): 40-90 ms
of CPU per key, holding the interpreter, which is a fifth of a whole `cbacheck run`. cryptography's
`unsafe_skip_rsa_key_validation` skips it and is unsafe for keys that were never validated
(https://cryptography.io/en/latest/hazmat/primitives/asymmetric/serialization/#cryptography.hazmat.primitives.serialization.load_pem_private_key).
A key whose exact bytes were validated before is not such a key: this file lists digests of those bytes
(never the key), mode 0600 in the user's cache folder, and is trusted only when the user owns it and no one
else may write it. A key not listed, or a file that cannot be read, is validated as before.

A key not validated before can be validated in a child process started as a run begins (`start_apart`): the
same cryptography call, with the check, on the machine's other core while this process imports and starts
pytest, instead of holding the interpreter here. A key the child did not report as validated (an encrypted
key, a failure, a child that could not run or has not finished yet) is validated here as before, with the
same errors.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from cbacheck import usercache

FILE_NAME: Final = "validated-keys.json"
VERSION: Final = 1
LIMIT: Final = 32  # the newest digests kept: a few identities, and the keys a rotation replaced
# Digests of key bytes in this file only, so they match no other digest of the same bytes.
_CONTEXT: Final = b"cbacheck: PEM private key bytes OpenSSL validated\0"
# The PEM blocks as certs.reading finds them; a block the child splits otherwise is not found, only validated here.
PEM_BLOCK_PATTERN: Final = rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----"
MAX_KEY_FILE_BYTES: Final = 1024 * 1024
# The child: loads each unencrypted PEM private key of the files named (cryptography validates an RSA key as
# it loads it) and prints the digest of each RSA key block that loaded; never a key, never an error text.
_CHILD_PROGRAM: Final = f"""
import hashlib, re, sys
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
for name in sys.argv[1:]:
    try:
        with open(name, "rb") as handle:
            data = handle.read({MAX_KEY_FILE_BYTES})
    except OSError:
        continue
    for match in re.finditer({PEM_BLOCK_PATTERN!r}, data, re.DOTALL):
        if not match.group(1).endswith(b"PRIVATE KEY") or b"ENCRYPTED" in match.group(1):
            continue
        block = match.group(0)
        try:
            key = load_pem_private_key(block, None)
        except Exception:
            continue
        if isinstance(key, rsa.RSAPrivateKey):
            print(hashlib.sha256({_CONTEXT!r} + block).hexdigest(), flush=True)
"""


def validated_keys_file(environ: dict[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/cbacheck/validated-keys.json, or ~/.cache/cbacheck/validated-keys.json."""
    return usercache.cache_file(FILE_NAME, environ)


def key_digest(block: bytes) -> str:
    """What the file holds for these PEM bytes (encrypted keys too: a password opens the same key or none)."""
    return hashlib.sha256(_CONTEXT + block).hexdigest()


def _digests(path: Path) -> list[str]:
    """The digests in the file, or none when it is absent, unreadable, not the user's or writable by others."""
    keys = usercache.read_trusted(path, VERSION).get("keys")
    return [digest for digest in keys if isinstance(digest, str)] if isinstance(keys, list) else []


def validated_before(digest: str, path: Path | None = None) -> bool:
    return digest in _digests(path or validated_keys_file())


def remember(digest: str, path: Path | None = None) -> None:
    """Add a digest of key bytes OpenSSL has just validated (atomically, mode 0600); a write that fails is ignored."""
    target = path or validated_keys_file()
    kept = [known for known in _digests(target) if known != digest][-(LIMIT - 1) :] + [digest]
    # Not remembered (a write that failed): the next run validates the key again, nothing more.
    usercache.write_private(target, {"version": VERSION, "keys": kept})


class _ValidationApart:
    """The child validating keys for this process; read once it has finished, never waited for.

    A key asked for while the child still runs (a busy machine, no core to spare) is validated here at
    once, as without the child: the child only ever saves time.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.lock = threading.Lock()
        self.digests: frozenset[str] | None = None

    def validated(self, digest: str) -> bool:
        with self.lock:
            if self.digests is None:
                if self.process.poll() is None:
                    return False
                self.digests = self._read()
            return digest in self.digests

    def _read(self) -> frozenset[str]:
        out, _ = self.process.communicate()
        if self.process.returncode != 0:
            return frozenset()  # only a child that finished cleanly is believed
        return frozenset(line for line in out.decode("ascii", "replace").split() if re.fullmatch(r"[0-9a-f]{64}", line))


_apart: _ValidationApart | None = None


def _unknown_key_in(path: Path, known: list[str]) -> bool:
    """The file (if readable) holds an unencrypted PEM private key block whose digest is not listed."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES)
    except OSError:
        return False
    return any(
        match.group(1).endswith(b"PRIVATE KEY")
        and b"ENCRYPTED" not in match.group(1)
        and key_digest(match.group(0)) not in known
        for match in re.finditer(PEM_BLOCK_PATTERN, data, re.DOTALL)
    )


def start_apart(paths: Iterable[Path | None], path: Path | None = None) -> None:
    """Start validating, in a child process, the PEM keys of these files that were not validated before."""
    global _apart
    known = _digests(path or validated_keys_file())
    names = [str(file) for file in paths if file is not None and _unknown_key_in(file, known)]
    if not names:
        return
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", _CHILD_PROGRAM, *names],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return  # validated here as they are read
    _apart = _ValidationApart(process)


def validated_apart(digest: str) -> bool:
    """These PEM key bytes were validated by the child `start_apart` started, which has finished."""
    apart = _apart
    return apart is not None and apart.validated(digest)
