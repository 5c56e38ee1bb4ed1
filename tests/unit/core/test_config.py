"""Settings: YAML file, DFMS_ environment overrides, explicit overrides, and errors naming keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfms.config import load_settings
from dfms.errors import ConfigError


def test_defaults_are_the_embedded_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing configured: ./data, 127.0.0.1:8080, SQLite, one node, RF 1, reference chunking."""
    monkeypatch.delenv("DFMS_CONFIG", raising=False)
    s = load_settings()
    assert s.data_dir == Path("./data").absolute()
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8080)
    assert s.database_url.startswith("sqlite+aiosqlite:///") and s.database_url.endswith("dfms.db")
    assert [n.id for n in s.node_list()] == ["node-1"]
    assert s.storage.replication == 1 and s.storage.effective_write_quorum == 1
    c = s.chunking
    assert (c.algorithm, c.min_size, c.avg_size, c.max_size) == (
        "fastcdc",
        262144,
        1048576,
        4194304,
    )
    assert s.keys_dir == s.data_dir / "keys"
    assert s.upload.max_size == 10 * 1024**3 and s.upload.default_quota == 5 * 1024**3


def test_precedence_file_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit overrides beat the environment, which beats the file."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  port: 7000\n  host: 0.0.0.0\nstorage:\n  node_count: 3\n")
    monkeypatch.setenv("DFMS_SERVER__PORT", "7100")
    monkeypatch.setenv("DFMS_TEST_SOMETHING", "ignored")  # not a settings section
    s = load_settings(cfg)
    assert s.server.port == 7100 and s.server.host == "0.0.0.0" and s.storage.node_count == 3
    s = load_settings(cfg, overrides={"server": {"port": 7200, "host": None}})
    assert s.server.port == 7200 and s.server.host == "0.0.0.0"


def test_config_env_var_points_at_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DFMS_CONFIG names the file when --config is absent."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("storage:\n  node_count: 2\n  replication: 2\n")
    monkeypatch.setenv("DFMS_CONFIG", str(cfg))
    s = load_settings()
    assert s.storage.replication == 2 and s.storage.effective_write_quorum == 2
    assert [n.id for n in s.node_list()] == ["node-1", "node-2"]


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("storage:\n  replication: 3\n", "storage"),
        ("server:\n  port: 99999\n", "server.port"),
        ("server:\n  prot: 1\n", "server.prot"),
        ("chunking:\n  min_size: 2000000\n", "chunking"),
        ("chunking:\n  algorithm: md5\n", "chunking.algorithm"),
        ("nonsense: 1\n", "nonsense"),
        ("storage:\n  nodes: [{id: a}, {id: a}]\n", "storage"),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    """Each invalid value raises ConfigError whose message names the offending key."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert key in err.value.message


def test_bad_env_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad environment override is reported with its key."""
    monkeypatch.setenv("DFMS_SERVER__PORT", "not-a-number")
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings()


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    """A missing file, invalid YAML and a non-mapping document are clear ConfigErrors."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(empty).server.port == 8080


def test_explicit_nodes_get_paths_under_data_dir(tmp_path: Path) -> None:
    """Nodes without a path live under <data_dir>/nodes/<id>."""
    s = load_settings(
        overrides={
            "data_dir": tmp_path,
            "storage": {
                "nodes": [{"id": "a", "zone": "z1"}, {"id": "b", "path": str(tmp_path / "x")}]
            },
        }
    )
    nodes = s.node_list()
    assert nodes[0].path == tmp_path / "nodes" / "a" and nodes[0].zone == "z1"
    assert nodes[1].path == tmp_path / "x"


def test_example_config_is_valid_and_complete() -> None:
    """configs/dfms.example.yaml loads and mentions every settings key."""
    from dfms.config import Settings

    path = Path(__file__).resolve().parents[3] / "configs" / "dfms.example.yaml"
    s = load_settings(path)
    assert s.server.port == 8080
    text = path.read_text()
    for section, model in Settings.model_fields.items():
        assert f"{section}:" in text, section
        sub = getattr(model.annotation, "model_fields", {})
        for key in sub:
            assert f"{key}:" in text, f"{section}.{key}"
