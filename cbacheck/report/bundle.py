"""The outputs written after pytest's own: JUnit renamed, SARIF, the Markdown summary and the evidence bundle.

The bundle folder holds the run's HTML, JSON, JUnit, SARIF and summary, and a manifest with the SHA-256 of
each and the run id they share: a digest of the manifest recorded elsewhere (the CI log, the review
ticket) shows any later change to any of them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from cbacheck.config import Settings
from cbacheck.report import junit
from cbacheck.report.console import console_safe
from cbacheck.report.markdown import summary_markdown
from cbacheck.report.sarif import sarif_log

MANIFEST = "manifest.json"
BUNDLE_NAMES = {
    "HTML": "cbacheck.html",
    "JSON": "cbacheck.json",
    "JUnit": "cbacheck-junit.xml",
    "SARIF": "cbacheck.sarif",
    "Summary": "cbacheck-summary.md",
}


class ReportState(Protocol):
    """What the plugin's run state offers this module (kept structural: the report layer imports no plugin)."""

    settings: Settings | None
    document: dict[str, Any] | None
    html_path: Path | None
    json_path: Path | None
    junit_path: Path | None
    extra_reports: dict[str, Path]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write so a reader never sees half a file; refuses to replace anything but a regular file."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OSError(f"{path} exists and is not a regular file")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sarif_text(document: Mapping[str, Any]) -> str:
    return json.dumps(sarif_log(document), indent=2, ensure_ascii=False) + "\n"


def write_bundle(folder: Path, document: Mapping[str, Any], written: Mapping[str, Path | None]) -> Path:
    """Copy the written reports into `folder`, add SARIF and the summary, then the manifest; its path."""
    files: dict[str, Path] = {}
    for label, source in written.items():
        if source is not None and source.is_file():
            files[label] = folder / BUNDLE_NAMES[label]
            write_bytes_atomic(files[label], source.read_bytes())
    files["SARIF"] = folder / BUNDLE_NAMES["SARIF"]
    write_bytes_atomic(files["SARIF"], sarif_text(document).encode())
    files["Summary"] = folder / BUNDLE_NAMES["Summary"]
    links = {label: BUNDLE_NAMES[label] for label in files}
    write_bytes_atomic(files["Summary"], summary_markdown(document, links).encode())
    run = document.get("run") or {}
    manifest = {
        "run_id": run.get("run_id"),
        "related": run.get("related") or {},
        "tool": document.get("tool"),
        "verdict": run.get("verdict"),
        "started": run.get("started"),
        "files": [
            {"name": path.name, "kind": label, "sha256": sha256_of(path), "bytes": path.stat().st_size}
            for label, path in files.items()
        ],
    }
    manifest_path = folder / MANIFEST
    write_bytes_atomic(manifest_path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
    return manifest_path


class PipelineReports:
    """Registered by the plugin for a reporting session; writes after pytest-html and junitxml have written."""

    def __init__(self, state: ReportState, invocation_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.state = state
        self.invocation_dir = invocation_dir
        self.environ = os.environ if environ is None else environ

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        result = yield  # every reporter's sessionfinish has run: the HTML, JSON and JUnit files exist
        try:
            self.write()
        except OSError as err:
            print(console_safe(f"cbacheck: a pipeline report cannot be written: {err}"), file=sys.stderr)
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
        return result

    def _path(self, value: Path | None) -> Path | None:
        return None if value is None else self.invocation_dir / value

    def write(self) -> None:
        state, document, settings = self.state, self.state.document, self.state.settings
        if document is None or settings is None:
            return
        if state.junit_path is not None and state.junit_path.is_file():
            junit.rewrite(state.junit_path, document)
        written: dict[str, Path | None] = {"HTML": state.html_path, "JSON": state.json_path, "JUnit": state.junit_path}
        sarif_path = self._path(settings.sarif)
        if sarif_path is not None:
            write_bytes_atomic(sarif_path, sarif_text(document).encode())
            state.extra_reports["SARIF"] = written["SARIF"] = sarif_path
        summary_path = self._path(settings.summary)
        if summary_path is not None:
            links = {label: self._shown(path) for label, path in written.items() if path is not None}
            text = summary_markdown(document, links)
            write_bytes_atomic(summary_path, text.encode())
            state.extra_reports["Summary"] = summary_path
            self._append_step_summary(text)
        bundle = self._path(settings.bundle)
        if bundle is not None:
            plain = {label: written[label] for label in ("HTML", "JSON", "JUnit")}
            state.extra_reports["Bundle"] = write_bundle(bundle, document, plain)
            if summary_path is None:
                self._append_step_summary((bundle / BUNDLE_NAMES["Summary"]).read_text(encoding="utf-8"))

    def _shown(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.invocation_dir))
        except ValueError:
            return str(path)

    def _append_step_summary(self, text: str) -> None:
        """GitHub Actions shows what a step appends to $GITHUB_STEP_SUMMARY on the job's page."""
        target = self.environ.get("GITHUB_STEP_SUMMARY")
        if target:
            with open(target, "a", encoding="utf-8") as stream:
                stream.write(text)
