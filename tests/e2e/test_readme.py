"""The README's curl walk-through works as written against a real `dfms serve`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
pytestmark = pytest.mark.slow


def walkthrough() -> str:
    m = re.search(r"## Walk-through.*?```bash\n(.*?)```", README.read_text(), re.S)
    assert m, "README has no walk-through block"
    return m.group(1)


def test_readme_walkthrough(tmp_path: Path) -> None:
    """Every command of the walk-through succeeds; the download equals the upload."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    with ServerProcess(tmp_path / "data") as server:
        script = walkthrough().replace("http://localhost:8080", server.url)
        script = script.replace("curl ", "curl -sS --fail-with-body ")
        res = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert (tmp_path / "downloaded_report.pdf").read_bytes() == (
            tmp_path / "report.pdf"
        ).read_bytes()
        assert (tmp_path / "first100.bin").read_bytes() == (tmp_path / "report.pdf").read_bytes()[
            :100
        ]
        assert '"new_chunks":0' in res.stdout


def test_readme_walkthrough_continued(tmp_path: Path) -> None:
    """The folders/versions/search/multipart walk-through succeeds after the first one, and the
    multipart upload yields the file's SHA-256."""
    import hashlib

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    m = re.search(r"## Folders, versions, search.*?```bash\n(.*?)```", README.read_text(), re.S)
    assert m, "README has no continued walk-through block"
    with ServerProcess(tmp_path / "data") as server:
        script = (walkthrough() + m.group(1)).replace("http://localhost:8080", server.url)
        script = script.replace("curl ", "curl -sS --fail-with-body ")
        res = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        digest = hashlib.sha256((tmp_path / "big.iso").read_bytes()).hexdigest()
        assert '"name":"big.iso"' in res.stdout and f'"checksum":"{digest}"' in res.stdout
        assert (tmp_path / "v1.pdf").read_bytes() == (tmp_path / "report.pdf").read_bytes()
