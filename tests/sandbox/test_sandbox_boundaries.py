"""Trust boundaries of the sandbox: its workdir, its listening address, its state file, key-less keys."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sandboxkit import GRAPH_SCOPE, Client, acquire, token

from cbacheck.sandbox import Sandbox, SandboxError, SandboxStateError
from cbacheck.sandbox.validation import MAX_STATE_BYTES, load_state_file

TENANT = "3c6f9a2e-51d4-4b8e-9f07-2a1d5c8e4b60"


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m cbacheck.sandbox ARGS``; a sandbox that starts instead of refusing fails the test."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "cbacheck.sandbox", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"'cbacheck sandbox {' '.join(args)}' kept running instead of refusing")


def one_line_exit_2(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-500:])
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# --- a) the workdir: no symlink is followed, keys are created 0600 ---------------------------------


@pytest.mark.parametrize("planted", ["certs/under_test.pem", "ca.pem"])
def test_a_symlink_planted_in_the_workdir_is_refused_not_written_through(tmp_path: Path, planted: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    workdir = tmp_path / "work"
    (workdir / "certs").mkdir(parents=True)
    (workdir / planted).symlink_to(victim)
    with pytest.raises(SandboxError, match="symlink"), Sandbox("healthy", workdir=workdir):
        pass
    assert victim.read_text() == "keep me"


def test_a_symlinked_certs_folder_is_refused_and_nothing_lands_behind_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "certs").symlink_to(elsewhere, target_is_directory=True)
    one_line_exit_2(run("--workdir", str(workdir)), str(workdir / "certs"), "symlink")
    assert list(elsewhere.iterdir()) == []


def test_a_workdir_can_be_used_again_and_keys_are_owner_only(tmp_path: Path) -> None:
    for _ in range(2):
        with Sandbox("healthy", workdir=tmp_path) as sb:
            pem = sb.identities["under_test"].cert_path
            assert stat.S_IMODE(pem.stat().st_mode) == 0o600 and not pem.is_symlink()
            assert "BEGIN PRIVATE KEY" in pem.read_text()


# --- b) a non-loopback address needs --allow-remote ---------------------------------------------


def test_a_non_loopback_host_is_refused_without_allow_remote() -> None:
    one_line_exit_2(run("--host", "0.0.0.0"), "0.0.0.0", "--allow-remote")
    with pytest.raises(SandboxError, match="allow_remote"):
        Sandbox("healthy", host="0.0.0.0")


def test_allow_remote_starts_with_a_warning(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cbacheck.sandbox", "--host", "0.0.0.0", "--allow-remote", "--state", plain(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["port"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "warning" in err.lower() and "0.0.0.0" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_flag(host: str) -> None:
    Sandbox("healthy", host=host)  # constructing checks the address; nothing is bound


# --- c) the state file: regular, UTF-8, bounded in size and depth --------------------------------


def plain(tmp_path: Path) -> str:
    path = tmp_path / "plain.json"
    doc = {"organization": [{"id": TENANT}], "domains": [{"id": "plain.onmicrosoft.com", "isInitial": True}]}
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_state_file_that_is_not_utf8_exits_2_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.json"
    bad.write_bytes('{"organization": [{"id": "é"}]}'.encode("latin-1"))
    one_line_exit_2(run("--state", str(bad)), str(bad), "UTF-8")


def test_a_state_file_nested_too_deep_exits_2_naming_it(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"organization": ' + "[" * 100_000 + "]" * 100_000 + "}")
    one_line_exit_2(run("--state", str(deep)), str(deep), "nested")


def test_a_state_file_over_the_size_cap_exits_2_naming_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(MAX_STATE_BYTES + 1)  # sparse: costs no disk
    one_line_exit_2(run("--state", str(huge)), str(huge), "larger than")


def test_a_fifo_as_state_file_exits_2_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "state.fifo"
    os.mkfifo(fifo)
    one_line_exit_2(run("--state", str(fifo), timeout=20), str(fifo), "not a regular file")


def test_dev_zero_as_state_file_exits_2() -> None:
    one_line_exit_2(run("--state", "/dev/zero", timeout=20), "/dev/zero", "not a regular file")


def test_values_nested_deeper_than_graph_json_are_refused(tmp_path: Path) -> None:
    path = Path(plain(tmp_path))
    doc = json.loads(path.read_text())
    nested: object = "x"
    for _ in range(200):
        nested = [nested]
    doc["mailboxes"] = [{"PrimarySmtpAddress": "a@b.c", "Notes": nested}]
    path.write_text(json.dumps(doc))
    with pytest.raises(SandboxStateError, match="nested"):
        load_state_file(path)


# --- e) keyCredentials with key: null, as Graph returns them without $select ---------------------


@pytest.fixture
def keyless(tmp_path: Path) -> tuple[Sandbox, Sandbox]:
    """A healthy tenant, and the same tenant loaded from a dump whose app keys have key: null."""
    with Sandbox("healthy", workdir=tmp_path / "work") as source:
        doc = source.dump()
        app_id = source.identities["under_test"].app_id
        app = next(a for a in doc["applications"] if a["appId"] == app_id)
        for cred in app["keyCredentials"]:
            cred["key"] = None
        path = tmp_path / "keyless.json"
        path.write_text(json.dumps(doc))
        with Sandbox(None, state_file=path) as loaded:
            yield source, loaded


def test_a_state_with_key_null_loads_and_lists_the_key_by_thumbprint(keyless: tuple[Sandbox, Sandbox]) -> None:
    source, loaded = keyless
    ident = source.identities["under_test"]
    client = Client(loaded, token(loaded, "auditor", GRAPH_SCOPE, identity=source.identities["auditor"]))
    resp = client.graph("GET", f"/applications(appId='{ident.app_id}')", params={"$select": "keyCredentials"})
    assert resp.status_code == 200, resp.text
    creds = resp.json()["keyCredentials"]
    assert [c["key"] for c in creds] == [None]
    assert base64.b64decode(creds[0]["customKeyIdentifier"]).hex().upper() == ident.thumbprint_sha1
    assert json.loads(json.dumps(loaded.dump()))["applications"]  # a dump of it loads again below
    again = Path(str(loaded.scenario.path)).with_name("again.json")
    again.write_text(json.dumps(loaded.dump()))
    load_state_file(again)


def test_an_assertion_for_a_key_without_bytes_gets_key_not_found_and_the_log_says_why(
    keyless: tuple[Sandbox, Sandbox], caplog: pytest.LogCaptureFixture
) -> None:
    source, loaded = keyless
    ident = source.identities["under_test"]
    with caplog.at_level(logging.INFO, logger="cbacheck.sandbox"):
        result = acquire(loaded, identity=ident)
    assert result.get("error_codes") == [700027], result
    assert "was not found" in result["error_description"]
    assert ident.thumbprint_sha1 in caplog.text and "no key bytes" in caplog.text


def test_lists_return_key_null_and_a_selected_single_get_returns_the_bytes(healthy: Sandbox, auditor: Client) -> None:
    app_id = healthy.identities["under_test"].app_id
    listed = auditor.graph("GET", "/applications", params={"$filter": f"appId eq '{app_id}'"}).json()["value"]
    assert listed and all(c["key"] is None for c in listed[0]["keyCredentials"])
    plain_list = auditor.graph("GET", "/applications").json()["value"]
    assert all(c["key"] is None for app in plain_list for c in app["keyCredentials"])
    single = auditor.graph("GET", f"/applications(appId='{app_id}')", params={"$select": "id,keyCredentials"}).json()
    assert all(c["key"] for c in single["keyCredentials"])
