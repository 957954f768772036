"""Many tenants: `[[targets]]` only from a named config file, and `--shard I/N` splitting them into a partition."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from cbacheck import cli
from cbacheck.commands.audit_targets import Target, load_targets, parse_shard, parse_targets, shard_of
from cbacheck.config import resolve
from cbacheck.errors import ConfigError, ExitCode, InputError

TARGETS = """
[[targets]]
tenant = "contoso.onmicrosoft.com"
name = "contoso"

[[targets]]
tenant = "0b5f3c6e-1f4a-4c6b-9d2e-7a8b9c0d1e2f"

[[targets]]
tenant = "fabrikam.onmicrosoft.us"
name = "fabrikam-gov"
cloud = "gcchigh"
"""


def _targets(count: int) -> list[Target]:
    return [Target(f"t{i}.onmicrosoft.com", f"tenant-{i:03d}") for i in range(count)]


@pytest.mark.parametrize(("count", "shards"), [(1, 1), (7, 3), (10, 10), (25, 4), (100, 7), (5, 1)])
def test_the_shards_are_a_partition_of_the_targets(count: int, shards: int) -> None:
    targets = _targets(count)
    parts = [shard_of(targets, i, shards) for i in range(1, shards + 1)]
    every = [t for part in parts for t in part]
    assert sorted(every, key=lambda t: t.name) == sorted(targets, key=lambda t: t.name)  # each exactly once
    assert len(every) == len(set(every))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_the_split_depends_on_the_names_not_on_the_files_order() -> None:
    targets = _targets(30)
    shuffled = targets[:]
    random.Random(7).shuffle(shuffled)
    for index in range(1, 5):
        assert shard_of(targets, index, 4) == shard_of(shuffled, index, 4)


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "x", "1-2", "2/", "-1/3", "1/2/3"])
def test_a_bad_shard_is_a_usage_error_saying_what_is_expected(text: str) -> None:
    with pytest.raises(InputError, match="--shard"):
        parse_shard(text)


def test_a_good_shard_is_read() -> None:
    assert parse_shard("2/5") == (2, 5)
    assert parse_shard("5/5") == (5, 5)


def test_targets_are_read_from_a_named_file_with_name_and_cloud(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(TARGETS, encoding="utf-8")
    targets = load_targets(path, env={})
    assert targets == [
        Target("contoso.onmicrosoft.com", "contoso"),
        Target("0b5f3c6e-1f4a-4c6b-9d2e-7a8b9c0d1e2f", "0b5f3c6e-1f4a-4c6b-9d2e-7a8b9c0d1e2f"),
        Target("fabrikam.onmicrosoft.us", "fabrikam-gov", "gcchigh"),
    ]
    assert load_targets(None, env={"CBACHECK_CONFIG": str(path)}) == targets
    assert load_targets(None, env={}) == []
    resolve(env={}, config_file=path, app_under_test=False)  # a named file may hold them beside the settings


def test_a_found_config_file_may_not_list_targets(tmp_path: Path) -> None:
    (tmp_path / "cbacheck.toml").write_text(TARGETS, encoding="utf-8")
    with pytest.raises(ConfigError, match="targets is set in .*found in the working folder"):
        resolve(env={}, cwd=tmp_path, app_under_test=False)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([], "one or more"),
        ({"tenant": "x"}, "one or more"),
        (["contoso.onmicrosoft.com"], "expected a table"),
        ([{"name": "a"}], "tenant must be"),
        ([{"tenant": "not a tenant"}], "tenant must be"),
        ([{"tenant": "a.onmicrosoft.com", "name": "../etc"}], "name must be"),
        ([{"tenant": "a.onmicrosoft.com", "cloud": "mars"}], "cloud must be"),
        ([{"tenant": "a.onmicrosoft.com", "tenat": "b"}], "unknown key 'tenat'"),
        ([{"tenant": "a.onmicrosoft.com", "name": "x"}, {"tenant": "b.onmicrosoft.com", "name": "X"}], "given twice"),
    ],
)
def test_bad_targets_are_named_by_place(raw: object, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_targets(raw, "tenants.toml")


def _write(tmp_path: Path, text: str = TARGETS) -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shard", "0/2"], "1 <= I <= N"),
        (["--shard", "3/2"], "1 <= I <= N"),
        (["--shard", "4/4"], "holds no target: there are 3 targets"),
        (["--tenant", "contoso.onmicrosoft.com"], "give one or the other"),
    ],
)
def test_audit_refuses_bad_shards_and_mixed_tenants_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    config = _write(tmp_path)
    status = cli.main(["audit", "--config", str(config), "--report-dir", str(tmp_path / "r"), *argv])
    assert status == ExitCode.USAGE
    assert message in capsys.readouterr().err


def test_a_shard_without_targets_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["audit", "--tenant", "contoso.onmicrosoft.com", "--shard", "1/2"])
    assert status == ExitCode.USAGE
    assert "--shard needs [[targets]]" in capsys.readouterr().err


def test_every_pair_of_shards_is_disjoint() -> None:
    targets = _targets(13)
    parts = [set(shard_of(targets, i, 5)) for i in range(1, 6)]
    assert all(not a & b for a, b in itertools.combinations(parts, 2))
