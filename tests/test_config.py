import dataclasses

import pytest
import yaml

from curate.config import Config, load_config, write_config
from curate.errors import ConfigError


def test_defaults_are_valid_and_frozen() -> None:
    config = load_config()
    assert config == Config()
    assert config.download.disallowed_header_directives == ("noai", "noimageai", "noindex", "noimageindex")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.download.timeout = 1  # type: ignore[misc]


def test_yaml_overrides_defaults_and_flags_override_yaml(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("download:\n  timeout: 5\n  threads: 4\nimage:\n  formats: [jpeg, png]\n")
    config = load_config(path, {"download.threads": "8", "text.filter": "light", "download.retries": None})
    assert config.download.timeout == 5.0 and isinstance(config.download.timeout, float)
    assert config.download.threads == 8
    assert config.download.retries == Config().download.retries  # None means "flag not given"
    assert config.image.formats == ("jpeg", "png")
    assert config.text.filter == "light"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"download.timout": 3}, "did you mean 'timeout'"),
        ({"downlod.timeout": 3}, "did you mean 'download'"),
        ({"download.timeout": "abc"}, "download.timeout must be a number"),
        ({"download.threads": 2.5}, "download.threads must be an integer"),
        ({"download.threads": 0}, "download.threads must be > 0"),
        ({"text.filter": "medium"}, "text.filter must be one of none, light, heavy, notext"),
        ({"download.allow_private_hosts": "localhost"}, "not an IP address or network"),
        ({"extract.source": "warc", "dedup.near": "maybe"}, "must be true or false"),
        ({"download.deadline": 1, "download.timeout": 5}, "deadline must be >= download.timeout"),
        ({"image.max_aspect_ratio": 0.5}, "max_aspect_ratio must be >= 1"),
        ({"text.batch": 0}, "text.batch must be > 0"),
        ({"image.max_aspect_ratio": "nan"}, "image.max_aspect_ratio must be a number (got nan)"),
        ({"download.timeout": float("nan")}, "download.timeout must be a number (got nan)"),
        ({"text.heavy_min_page": "nan"}, "text.heavy_min_page must be a number (got nan)"),
        ({"download.deadline": "inf"}, "download.deadline must be a finite number of seconds"),
        ({"download.user_agent_token": "curate\r\nX-Evil: 1"}, "must be a product token"),
        ({"download.user_agent_token": "curate/2.1"}, "must be a product token"),
    ],
)
def test_bad_values_give_one_line_errors(flags, message) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, flags)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unreadable_and_invalid_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("download: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_written_config_round_trips(tmp_path) -> None:
    config = load_config(None, {"download.timeout": 7, "dedup.hamming_radius": 4})
    url = write_config(config, str(tmp_path / "out"), inputs=["a.warc.gz"])
    with open(url, encoding="utf-8") as fh:
        written = yaml.safe_load(fh)
    assert written["inputs"] == ["a.warc.gz"]
    assert written["config_digest"] == config.digest()
    sections = {k: v for k, v in written.items() if k in Config.__dataclass_fields__}
    reloaded = load_config(None, {f"{s}.{k}": v for s, values in sections.items() for k, v in values.items()})
    assert reloaded == config
    assert reloaded.digest() != Config().digest()


def test_write_config_to_memory_filesystem() -> None:
    import fsspec

    url = write_config(Config(), "memory://cfgtest/out")
    with fsspec.open(url, "r") as fh:
        assert "download:" in fh.read()
