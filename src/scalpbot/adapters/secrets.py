"""Exchange API keys: from the environment (settings), AWS Secrets Manager or SSM Parameter Store; the URL of
the tuning studies' PostgreSQL database (it holds a password) from Secrets Manager.

Keys never enter logs, the ledger or error messages: errors name where the keys were looked for, not them.
"""

from __future__ import annotations

import json
from typing import Any

from scalpbot.config import ExchangeSettings
from scalpbot.errors import ConfigError

_FIELDS = {"api_key": "apiKey", "secret": "secret", "password": "password"}


def exchange_credentials(exchange: ExchangeSettings, client_factory: Any = None) -> dict[str, str]:
    """Return ccxt's credential keys (``apiKey``, ``secret``, ``password``) from the first source that has them.

    Order: ``exchange.api_key``/``secret``/``password`` (``SCALPBOT_EXCHANGE__API_KEY`` ...), then the Secrets
    Manager secret ``exchange.secret_id`` (a JSON object with ``api_key``, ``secret``, optional ``password``),
    then the SSM parameters ``{exchange.ssm_prefix}/api_key`` ... (SecureString, decrypted).
    """
    direct = {
        ccxt_key: value.get_secret_value()
        for field, ccxt_key in _FIELDS.items()
        if (value := getattr(exchange, field)) is not None
    }
    if direct:
        return direct
    make = client_factory or _boto3_client
    if exchange.secret_id:
        return _from_secrets_manager(make("secretsmanager"), exchange.secret_id)
    if exchange.ssm_prefix:
        return _from_ssm(make("ssm"), exchange.ssm_prefix.rstrip("/"))
    raise ConfigError(
        "the ccxt broker needs exchange keys: set SCALPBOT_EXCHANGE__API_KEY and SCALPBOT_EXCHANGE__SECRET, "
        "or exchange.secret_id (AWS Secrets Manager), or exchange.ssm_prefix (SSM Parameter Store)"
    )


def study_storage_url(secret_id: str, client_factory: Any = None) -> str:
    """Return the PostgreSQL URL of the tuning studies kept in the Secrets Manager secret ``secret_id``.

    The secret's string is the URL itself (``postgresql://user:password@host:5432/database?sslmode=require``)
    or the JSON object RDS keeps for a database (``host``, ``port``, ``username``, ``password``, ``dbname``;
    user and password are URL-quoted).
    """
    from urllib.parse import quote

    make = client_factory or _boto3_client
    try:
        raw = str(make("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]).strip()
    except Exception as e:  # name the secret, never its value
        raise ConfigError(
            f"the study storage cannot be read from Secrets Manager secret {secret_id!r}: {type(e).__name__}"
        ) from None
    if raw.startswith(("postgresql:", "postgresql+", "postgres:")):
        return raw
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    needed = ("host", "username", "password")
    if not isinstance(body, dict) or not all(body.get(name) for name in needed):
        raise ConfigError(
            f"Secrets Manager secret {secret_id!r} must hold a postgresql:// URL or a JSON object with host, "
            "username, password (port, dbname optional)"
        )
    user, password = quote(str(body["username"]), safe=""), quote(str(body["password"]), safe="")
    database = quote(str(body.get("dbname") or "postgres"), safe="")
    return f"postgresql://{user}:{password}@{body['host']}:{int(body.get('port') or 5432)}/{database}"


def _boto3_client(service: str) -> Any:
    import boto3

    factory: Any = boto3.client  # typed per service name; the service is chosen at run time here
    return factory(service)


def _from_secrets_manager(client: Any, secret_id: str) -> dict[str, str]:
    try:
        raw = client.get_secret_value(SecretId=secret_id)["SecretString"]
        body = json.loads(raw)
    except Exception as e:  # boto3/botocore errors and bad JSON alike: name the secret, never its value
        raise ConfigError(
            f"exchange keys cannot be read from Secrets Manager secret {secret_id!r}: {type(e).__name__}"
        ) from None
    if not isinstance(body, dict) or not body.get("api_key") or not body.get("secret"):
        raise ConfigError(
            f"Secrets Manager secret {secret_id!r} must be a JSON object with api_key and secret"
        )
    return {ccxt_key: str(body[field]) for field, ccxt_key in _FIELDS.items() if body.get(field)}


def _from_ssm(client: Any, prefix: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for field, ccxt_key in _FIELDS.items():
        name = f"{prefix}/{field}"
        try:
            found[ccxt_key] = client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except Exception as e:
            if field == "password" and type(e).__name__ in ("ParameterNotFound", "ClientError"):
                continue
            raise ConfigError(
                f"exchange keys cannot be read from SSM parameter {name!r}: {type(e).__name__}"
            ) from None
    return found
