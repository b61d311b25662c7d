"""Exchange keys come from the environment, Secrets Manager or SSM (moto server), and never leak in errors; the
tuning studies' PostgreSQL URL comes from a Secrets Manager secret."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from scalpbot.adapters.secrets import exchange_credentials, study_storage_url
from scalpbot.config import ExchangeSettings, load_settings
from scalpbot.errors import ConfigError
from scalpbot.wiring import build_services


@pytest.fixture
def client_factory(moto_server: Any) -> Any:
    def make(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_server.endpoint_url, region_name="us-east-1")

    return make


def test_keys_from_the_environment_need_no_aws() -> None:
    settings = ExchangeSettings(api_key="k", secret="s")  # type: ignore[arg-type]
    assert exchange_credentials(settings, client_factory=lambda _: pytest.fail("AWS was asked")) == {
        "apiKey": "k",
        "secret": "s",
    }


def test_keys_from_a_secrets_manager_secret(client_factory: Any) -> None:
    client_factory("secretsmanager").create_secret(
        Name="bot/binance", SecretString=json.dumps({"api_key": "key-1", "secret": "sec-1"})
    )
    settings = ExchangeSettings(secret_id="bot/binance")
    assert exchange_credentials(settings, client_factory) == {"apiKey": "key-1", "secret": "sec-1"}


def test_keys_from_ssm_secure_strings(client_factory: Any) -> None:
    ssm = client_factory("ssm")
    ssm.put_parameter(Name="/bot/binance/api_key", Value="key-2", Type="SecureString")
    ssm.put_parameter(Name="/bot/binance/secret", Value="sec-2", Type="SecureString")
    settings = ExchangeSettings(ssm_prefix="/bot/binance/")
    assert exchange_credentials(settings, client_factory) == {"apiKey": "key-2", "secret": "sec-2"}


def test_a_malformed_secret_is_a_clear_error_without_its_value(client_factory: Any) -> None:
    client_factory("secretsmanager").create_secret(Name="bad", SecretString='{"api_key": "leak-me"}')
    with pytest.raises(ConfigError, match="must be a JSON object with api_key and secret") as info:
        exchange_credentials(ExchangeSettings(secret_id="bad"), client_factory)
    assert "leak-me" not in str(info.value)
    with pytest.raises(ConfigError, match="needs exchange keys"):
        exchange_credentials(ExchangeSettings())


def test_the_study_storage_url_comes_from_a_secret_as_a_url_or_as_rds_keeps_it(client_factory: Any) -> None:
    secrets = client_factory("secretsmanager")
    url = "postgresql://tuner:p%40ss@db.example:5432/studies?sslmode=require"
    secrets.create_secret(Name="studies/url", SecretString=url)
    assert study_storage_url("studies/url", client_factory) == url
    rds = {
        "engine": "postgres",
        "host": "db.example",
        "port": 6432,
        "username": "tuner",
        "password": "p@ss/1",
    }
    secrets.create_secret(Name="studies/rds", SecretString=json.dumps({**rds, "dbname": "studies"}))
    assert (
        study_storage_url("studies/rds", client_factory)
        == "postgresql://tuner:p%40ss%2F1@db.example:6432/studies"
    )


def test_a_study_storage_secret_without_a_url_is_a_clear_error_without_its_value(client_factory: Any) -> None:
    client_factory("secretsmanager").create_secret(Name="studies/bad", SecretString='{"password": "leak-me"}')
    with pytest.raises(ConfigError, match="must hold a postgresql:// URL") as info:
        study_storage_url("studies/bad", client_factory)
    assert "leak-me" not in str(info.value)
    with pytest.raises(ConfigError, match="'studies/none'"):
        study_storage_url("studies/none", client_factory)


def test_the_services_read_the_study_storage_from_its_secret_once(
    client_factory: Any, moto_server: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    url = "postgresql://tuner:secret@db.example/studies"
    client_factory("secretsmanager").create_secret(Name="studies/services", SecretString=url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server.endpoint_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    overrides = {"store": {"url": str(tmp_path)}, "train": {"study_storage_secret_id": "studies/services"}}
    settings = load_settings(None, overrides)
    assert settings.train.study_storage is None
    assert build_services(settings).settings.train.study_storage == url
