"""Fixtures of the auth unit tests: keys directory, key ring, fake clock, token service."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfms.auth.keys import KeyRing, generate_key, load_keyring
from dfms.auth.passwords import PasswordHasher
from dfms.auth.tokens import TokenService
from tests.unit.auth._auth_helpers import FakeClock


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    generate_key(directory)
    return directory


@pytest.fixture
def keyring(keys_dir: Path) -> KeyRing:
    return load_keyring(keys_dir)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(keyring: KeyRing, clock: FakeClock) -> TokenService:
    return TokenService(keyring, clock=clock)


@pytest.fixture
def hasher() -> PasswordHasher:
    # Cost 4 keeps the suite fast; one test checks that the default is 12.
    return PasswordHasher(rounds=4)
