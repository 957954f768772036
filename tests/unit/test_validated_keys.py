"""A PEM private key OpenSSL validated once is loaded without validating again in a later run, and only then."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from certfactory import (
    PASSWORD,
    CertFiles,
    fresh_rsa_key,
    key_pem,
    make_certificate,
    pem_bytes,
    rsa_key,
    write,
    write_all_formats,
)
from cryptography.hazmat.primitives import serialization

from cbacheck import certs, usercache
from cbacheck.certs import reading, validated


@pytest.fixture
def files(tmp_path: Path) -> CertFiles:
    return write_all_formats(tmp_path)


@pytest.fixture
def skipped(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each PEM key load, as whether OpenSSL's validation was skipped; every run starts without parsed keys."""
    seen: list[bool] = []
    real = serialization.load_pem_private_key

    def recording(data: bytes, password: bytes | None, *args: Any, **kwargs: Any) -> Any:
        seen.append(bool(kwargs.get("unsafe_skip_rsa_key_validation", False)))
        return real(data, password, *args, **kwargs)

    monkeypatch.setattr(serialization, "load_pem_private_key", recording)
    reading._parsed.clear()
    return seen


def a_later_run(path: Path, password: str | None = None) -> certs.CertFacts:
    reading._parsed.clear()  # what a new process starts with
    return certs.read_certificate(path, password, "option --cert")


def test_the_next_run_loads_a_key_validated_before_without_validating_it_again(
    files: CertFiles, skipped: list[bool]
) -> None:
    first = a_later_run(files.pem_with_key)
    second = a_later_run(files.pem_with_key)

    assert skipped == [False, True]
    assert first.private_key_matches and second.private_key_matches
    assert first.sha1_thumbprint == second.sha1_thumbprint


def test_an_encrypted_key_is_remembered_by_its_bytes_and_still_needs_its_password(
    files: CertFiles, skipped: list[bool]
) -> None:
    a_later_run(files.encrypted_pem, PASSWORD)
    with pytest.raises(reading.PasswordProblem):
        a_later_run(files.encrypted_pem, "not the password")
    a_later_run(files.encrypted_pem, PASSWORD)

    # Each run tries without a password first (TypeError), then with it: validated only the first time.
    assert skipped == [False, False, True, True, True, True]


def test_the_file_holds_digests_only_readable_by_the_user(files: CertFiles, skipped: list[bool]) -> None:
    a_later_run(files.pem_with_key)

    path = validated.validated_keys_file()
    text = path.read_text()
    key_lines = [line for line in files.pem_with_key.read_text().splitlines() if line and "-----" not in line]
    assert not any(line in text for line in key_lines)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_file_others_may_write_is_not_trusted(files: CertFiles, skipped: list[bool]) -> None:
    a_later_run(files.pem_with_key)
    os.chmod(validated.validated_keys_file(), 0o666)

    a_later_run(files.pem_with_key)

    assert skipped == [False, False]


def test_another_key_is_validated(tmp_path: Path, files: CertFiles, skipped: list[bool]) -> None:
    a_later_run(files.pem_with_key)
    key = rsa_key(3072)  # not the 2048-bit key of `files`
    other = write(tmp_path / "other.pem", pem_bytes(make_certificate(key)) + key_pem(key))

    a_later_run(other)

    assert skipped == [False, False]


def test_an_unwritable_cache_folder_only_costs_the_validation(
    files: CertFiles, skipped: list[bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))

    a_later_run(files.pem_with_key)
    a_later_run(files.pem_with_key)

    assert skipped == [False, False]


@pytest.fixture
def apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """No child of an earlier test answers for this one."""
    monkeypatch.setattr(validated, "_apart", None)


def test_a_key_the_child_validated_is_not_validated_again_here_and_is_remembered(
    files: CertFiles, skipped: list[bool], apart: None
) -> None:
    validated.start_apart([files.pem_with_key, None])
    assert validated._apart is not None
    validated._apart.process.wait(timeout=30)

    facts = a_later_run(files.pem_with_key)

    assert skipped == [True]
    assert facts.private_key_matches
    assert len(validated._digests(validated.validated_keys_file())) == 1


def test_keys_the_child_does_not_vouch_for_are_validated_here(
    files: CertFiles, skipped: list[bool], apart: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    key = fresh_rsa_key()
    other.write_bytes(pem_bytes(make_certificate(key)) + key_pem(key))
    validated.start_apart([other, files.encrypted_pem])  # another key, and one it cannot open
    assert validated._apart is not None
    validated._apart.process.wait(timeout=30)

    a_later_run(files.pem_with_key)
    a_later_run(files.encrypted_pem, PASSWORD)
    monkeypatch.setattr(validated, "_apart", None)
    monkeypatch.setattr(validated.sys, "executable", str(tmp_path / "no-python"))
    validated.start_apart([tmp_path / "again.pem"])  # a child that cannot start: nothing vouched for

    assert skipped == [False, False, False]


def test_a_key_asked_for_while_the_child_still_runs_is_validated_here_without_waiting(
    files: CertFiles, skipped: list[bool], apart: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        monkeypatch.setattr(validated, "_apart", validated._ValidationApart(busy))
        started = time.monotonic()
        a_later_run(files.pem_with_key)
        assert time.monotonic() - started < 10
    finally:
        busy.kill()
        busy.wait()

    assert skipped == [False]


def test_where_ownership_cannot_be_read_the_file_is_not_trusted(
    files: CertFiles, skipped: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    a_later_run(files.pem_with_key)
    monkeypatch.setattr(usercache, "_USER_ID", -1)  # as on Windows, which has no os.getuid

    a_later_run(files.pem_with_key)

    assert skipped == [False, False]
