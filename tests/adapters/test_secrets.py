"""Exchange keys come from the environment, Secrets Manager or SSM (moto server), and never leak in errors."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from scalpbot.adapters.secrets import exchange_credentials
from scalpbot.config import ExchangeSettings
from scalpbot.errors import ConfigError


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
