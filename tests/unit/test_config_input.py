"""Odd input to the settings never crashes: one line naming the input and where it came from, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cbacheck import cli
from cbacheck.commands import run as runcommand
from cbacheck.config import read_input_text, resolve
from cbacheck.errors import ConfigError, ExitCode, InputFileError

# Resolves the settings in a child process, so input that would block or fill memory cannot take the
# test run with it: exit 2 with the problems as JSON, 0 when resolved, anything else is a crash.
CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))
from cbacheck.config import resolve
from cbacheck.errors import ConfigError
try:
    resolve(env=json.loads(sys.argv[1]), cwd=__import__("pathlib").Path(sys.argv[2]))
except ConfigError as err:
    print(json.dumps(err.problems))
    sys.exit(2)
"""


def resolve_in_child(env: dict[str, str], cwd: Path) -> list[str]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(env), str(cwd)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("resolving the settings blocked on its input")
    assert done.returncode == 2, done.stderr[-2000:]
    problems: list[str] = json.loads(done.stdout)
    return problems


def problems_of(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        resolve(**kwargs)  # type: ignore[arg-type]
    assert all(len(line) < 600 for line in caught.value.problems), caught.value.problems
    return caught.value.problems


# --- files that are not regular files, not UTF-8, or too large --------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("setting", ["CBACHECK_CERT_PASSWORD_FILE", "CBACHECK_CONFIG"])
def test_a_fifo_as_password_or_config_file_is_named_not_read(setting: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    problems = resolve_in_child({setting: str(fifo)}, tmp_path)
    assert len(problems) == 1 and str(fifo) in problems[0] and "not a regular file" in problems[0], problems


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
@pytest.mark.parametrize("setting", ["CBACHECK_ADMIN_CERT_PASSWORD_FILE", "CBACHECK_CONFIG"])
def test_dev_zero_as_password_or_config_file_is_named_not_read(setting: str, tmp_path: Path) -> None:
    problems = resolve_in_child({setting: "/dev/zero"}, tmp_path)
    assert len(problems) == 1 and "/dev/zero" in problems[0] and setting in problems[0], problems


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_found_config_file_that_links_to_a_device_is_named(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").symlink_to("/dev/zero")
    problems = resolve_in_child({}, tmp_path)
    assert len(problems) == 1 and "cbacheck.toml" in problems[0] and "not a regular file" in problems[0]


def test_a_password_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    secret = tmp_path / "password.txt"
    secret.write_bytes(b"caf\xe9\n")
    problems = problems_of(env={"CBACHECK_CERT_PASSWORD_FILE": str(secret)}, cwd=tmp_path)
    assert problems == [
        f"cert_password file {str(secret)!r} (file named by env CBACHECK_CERT_PASSWORD_FILE) is not UTF-8 text "
        "(byte 3 cannot be decoded); save it as UTF-8"
    ]


def test_a_password_file_is_read_without_its_line_break(tmp_path: Path) -> None:
    secret = tmp_path / "password.txt"
    secret.write_text("hunter2\r\n", encoding="utf-8")
    assert resolve(env={"CBACHECK_CERT_PASSWORD_FILE": str(secret)}, cwd=tmp_path).cert_password == "hunter2"


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_bytes(b'tenant = "caf\xe9"\n')
    problems = problems_of(env={}, cwd=tmp_path)
    assert len(problems) == 1 and "cbacheck.toml" in problems[0] and "not UTF-8" in problems[0]


def test_a_huge_config_file_is_refused_before_parsing(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text("# padding\n" * 200_000, encoding="utf-8")
    problems = problems_of(env={}, cwd=tmp_path)
    assert len(problems) == 1 and "cbacheck.toml" in problems[0] and "at most" in problems[0]


@pytest.mark.parametrize(
    "text",
    [
        "organization = " + "[" * 50_000 + "]" * 50_000,
        "organization = " + "{a = " * 5_000 + "1" + "}" * 5_000,
        "organization = " + "9" * 5_000,
    ],
    ids=["deep-array", "deep-table", "5000-digit-integer"],
)
def test_config_files_too_deep_or_with_huge_numbers_are_named(text: str, tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text(text + "\n", encoding="utf-8")
    problems = problems_of(env={}, cwd=tmp_path)
    assert len(problems) == 1 and "cbacheck.toml" in problems[0], problems


def test_the_reader_names_a_missing_file_and_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        read_input_text(tmp_path / "nope", "state file", "option --state", max_bytes=10)
    with pytest.raises(InputFileError, match="is a directory"):
        read_input_text(tmp_path, "state file", "option --state", max_bytes=10)
    with pytest.raises(InputFileError, match="at most 10 bytes"):
        (tmp_path / "big").write_text("x" * 11, encoding="utf-8")
        read_input_text(tmp_path / "big", "state file", "option --state", max_bytes=10)


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("expiry_days = inf", "expiry_days = inf (file {file}) is not a whole number"),
        ("timeout_s = nan", "timeout_s = nan (file {file}) is not a finite number"),
        ("timeout_s = inf", "timeout_s = inf (file {file}) is not a finite number"),
        ("expiry_days = 3.7", "expiry_days = 3.7 (file {file}) is not a whole number"),
        ('expiry_days = "30"', "expiry_days = '30' (file {file}) is not a whole number"),
        ("expiry_days = 99999999", "expiry_days = 99999999 (file {file}) is outside 0 to 36500"),
        ("retries = -1", "retries = -1 (file {file}) is outside 0 to 100"),
        ("timeout_s = 0", "timeout_s = 0 (file {file}) is outside 0.001 to 3600"),
        (
            'yes = "yes"',
            "yes = 'yes' (file {file}) is not true or false (a TOML boolean, without quotes)",
        ),
        (
            'batching = "false"',
            "batching = 'false' (file {file}) is not true or false (a TOML boolean, without quotes)",
        ),
    ],
)
def test_odd_values_in_a_config_file_are_one_line_each(line: str, expected: str, tmp_path: Path) -> None:
    named = tmp_path / "named.toml"
    named.write_text(line + "\n", encoding="utf-8")
    assert problems_of(env={}, cwd=tmp_path, config_file=named) == [expected.format(file=named)]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("CBACHECK_TIMEOUT_S", "nan", "is not a finite number"),
        ("CBACHECK_TIMEOUT_S", "-inf", "is not a finite number"),
        ("CBACHECK_TIMEOUT_S", "1" * 400, "is not a number"),
        ("CBACHECK_EXPIRY_DAYS", "3.7", "is not a whole number"),
        ("CBACHECK_EXPIRY_DAYS", "9" * 5_000, "is not a whole number"),
        ("CBACHECK_PROPAGATION_TIMEOUT_S", "1e9", "is not a whole number"),
        ("CBACHECK_MAX_LIFETIME_DAYS", "99999999", "is outside 0 to 36500"),
        ("CBACHECK_YES", "maybe", "is not true or false"),
    ],
)
def test_odd_values_in_the_environment_are_one_short_line_each(name: str, value: str, expected: str) -> None:
    problems = problems_of(env={name: value}, cwd=Path("/nonexistent-folder"))
    assert len(problems) == 1 and f"(env {name}) {expected}" in problems[0], problems


def test_options_are_held_to_the_same_rules() -> None:
    problems = problems_of(options={"expiry_days": "3.7", "timeout_s": "inf"}, env={}, cwd=Path("/nonexistent"))
    assert problems == [
        "expiry_days = '3.7' (option --expiry-days) is not a whole number",
        "timeout_s = 'inf' (option --timeout-s) is not a finite number",
    ]


def test_whole_numbers_and_plain_floats_still_work(tmp_path: Path) -> None:
    named = tmp_path / "named.toml"
    named.write_text("expiry_days = 45\ntimeout_s = 12\nretries = 0\n", encoding="utf-8")
    settings = resolve(options={"max_lifetime_days": "400"}, env={"CBACHECK_TIMEOUT_S": "2.5"}, config_file=named)
    assert (settings.expiry_days, settings.timeout_s, settings.retries, settings.max_lifetime_days) == (45, 2.5, 0, 400)


# --- text that is not UTF-8, and secrets in messages ---------------------------------------------


def test_a_file_name_that_is_not_utf8_is_named_not_printed_raw(tmp_path: Path) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/cert-\xff.pem"))
    odd.write_bytes(b"x")
    problems = problems_of(env={"CBACHECK_CERT": str(odd), "CBACHECK_REPORT_DIR": str(odd)}, cwd=tmp_path)
    assert len(problems) == 2
    assert all("not UTF-8" in p for p in problems)
    assert "(env CBACHECK_CERT)" in problems[0] and "(env CBACHECK_REPORT_DIR)" in problems[1]
    "\n".join(problems).encode("utf-8")  # printable as it is


def test_a_bad_secret_is_named_without_its_value(tmp_path: Path) -> None:
    named = tmp_path / "named.toml"
    named.write_text("cert_password = 98765\n", encoding="utf-8")
    problems = problems_of(env={}, cwd=tmp_path, config_file=named)
    assert problems == [f"cert_password (file {named}) is not a string"]


def test_a_url_with_a_bad_port_is_a_setting_problem(tmp_path: Path) -> None:
    problems = problems_of(options={"graph_url": "https://graph.microsoft.com:99999999"}, env={}, cwd=tmp_path)
    assert problems == [
        "graph_url = 'https://graph.microsoft.com:99999999' (option --graph-url) is not an https:// URL"
    ]


# --- exit codes ---------------------------------------------------------------------------------


def test_cbacheck_run_exits_2_on_a_bad_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cbacheck.toml").write_text("expiry_days = 3.7\n", encoding="utf-8")
    assert cli.main(["run", "--report-dir", str(tmp_path / "reports")]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err and "expiry_days" in err


def test_a_crash_of_cbacheck_itself_is_exit_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(runcommand, "run", broken)
    assert cli.main(["run"]) == ExitCode.INTERNAL
    assert "internal error (RuntimeError)" in capsys.readouterr().err


def test_control_characters_that_could_forge_log_lines_are_refused(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text(
        'organization = "contoso.onmicrosoft.com\\ncbacheck verdict: PASS"\nreport_dir = "r\\u001b[2J"\n',
        encoding="utf-8",
    )
    problems = problems_of(env={}, cwd=tmp_path)
    assert len(problems) == 2 and all("control character" in p for p in problems), problems
    assert "\n" not in "".join(problems)


def test_a_password_may_hold_any_character(tmp_path: Path) -> None:
    assert resolve(env={"CBACHECK_CERT_PASSWORD": "tab\there"}, cwd=tmp_path).cert_password == "tab\there"
