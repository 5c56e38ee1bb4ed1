"""`dfms serve`/`gateway` cap glibc's malloc arenas before starting workers (peak RSS), unless
the operator chose a value."""

from __future__ import annotations

import platform
import sys

import pytest

from dfms.cli.serve import limit_malloc_arenas


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt(M_ARENA_MAX) is glibc's",
)
def test_applied_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True


def test_operator_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
