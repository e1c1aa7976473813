"""Each declared source's settings: read from variables named after it, defaults from its
declaration, and nothing accepted for a source that is not declared."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import Settings
from api.source_settings import variables
from sources.catalog import SOURCES, VENDORS
from sources.declaration import VendorAPI


def _settings(**given: object) -> Settings:
    return Settings(_env_file=None, **given)  # type: ignore[call-arg]


def test_every_source_has_its_declared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for source in SOURCES:
        for variable in variables(source).values():
            monkeypatch.delenv(variable, raising=False)
    settings = _settings()
    assert list(settings.per_source) == [source.name for source in SOURCES]
    for source in SOURCES:
        assert settings.source_timeout(source.name) == source.timeout
        assert settings.cache_ttls()[source.name] == source.ttl
    assert settings.simulated_vendors() == [api.name for api in VENDORS]


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.name)
def test_each_source_reads_the_variables_named_after_it(
    source: VendorAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = source.name.upper()
    monkeypatch.setenv(f"C360_{name}_TIMEOUT", "0.25")
    monkeypatch.setenv(f"C360_CACHE_TTL_{name}", "7")
    if isinstance(source, VendorAPI):
        monkeypatch.setenv(f"C360_{name}_URL", "https://vendor.example/api")
    settings = _settings()
    assert settings.source_timeout(source.name) == 0.25
    assert settings.cache_ttls()[source.name] == 7
    if isinstance(source, VendorAPI):
        assert settings.vendor_url(source.name) == "https://vendor.example/api"
        assert source.name not in settings.simulated_vendors()


def test_a_dotenv_file_is_read_and_the_environment_and_arguments_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "C360_LOYALTY_URL=https://from-the-file.example\n"
        "C360_LOYALTY_TIMEOUT=3\n"
        "C360_CACHE_TTL_LOYALTY=30\n"
        "C360_TRACKING_URL=https://tracking-from-the-file.example\n"
    )
    monkeypatch.setenv("C360_LOYALTY_TIMEOUT", "4")
    monkeypatch.delenv("C360_LOYALTY_URL", raising=False)
    monkeypatch.delenv("C360_CACHE_TTL_LOYALTY", raising=False)
    monkeypatch.delenv("C360_TRACKING_URL", raising=False)
    settings = Settings(
        _env_file=env_file,  # type: ignore[call-arg]
        per_source={"loyalty": {"cache_ttl": 60}},
    )
    loyalty = settings.per_source["loyalty"]
    assert loyalty.url == "https://from-the-file.example"  # the file alone sets it
    assert loyalty.timeout == 4  # the environment beats the file
    assert loyalty.cache_ttl == 60  # an argument beats both
    assert settings.vendor_url("tracking") == "https://tracking-from-the-file.example"


def test_a_blank_url_means_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C360_TRACKING_URL", "")
    assert "tracking" in _settings().simulated_vendors()


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"weather": {"timeout": 1}}, "no source is named weather"),
        ({"mongo": {"url": "mongodb://elsewhere"}}, "mongo is not a vendor API"),
        ({"sql": {"timeout": 0}}, "greater than 0"),
        ({"loyalty": {"retries": 3}}, "Extra inputs are not permitted"),
    ],
)
def test_what_is_not_a_declared_setting_is_refused(given: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _settings(per_source=given)


def test_a_copy_changes_only_what_it_names() -> None:
    settings = _settings(per_source={"loyalty": {"url": "https://loyalty.example"}})
    changed = settings.with_sources(loyalty={"timeout": 0.5})
    assert changed.per_source["loyalty"].url == "https://loyalty.example"
    assert changed.source_timeout("loyalty") == 0.5
    assert settings.source_timeout("loyalty") == 1.0
    with pytest.raises(ValueError, match="greater than 0"):
        settings.with_sources(loyalty={"timeout": -1})
    simulated = settings.with_vendor_urls("http://simulator")
    assert simulated.vendor_url("loyalty") == "https://loyalty.example"
    assert simulated.vendor_url("tracking") == "http://simulator"


def test_settings_accept_their_own_per_source() -> None:
    settings = _settings(per_source={"loyalty": {"url": "https://loyalty.example"}})
    again = _settings(per_source=settings.per_source)
    assert again.per_source == settings.per_source
    assert Settings.model_validate(settings.model_dump()).per_source == settings.per_source
