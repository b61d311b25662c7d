"""Settings come from defaults, the TOML file, the environment and CLI options, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalpbot.config import load_settings, redacted
from scalpbot.errors import ConfigError


def _toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_embedded_defaults_need_no_file() -> None:
    settings = load_settings()
    assert (settings.store.url, settings.exchange.id, settings.data.symbol) == (
        "./scalpbot-data",
        "binance",
        "BTC/USDT",
    )
    assert (settings.data.timeframe, settings.data.format) == ("1m", "parquet")


def test_cli_beats_environment_beats_file_beats_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(tmp_path / "scalpbot.toml", '[data]\ntimeframe = "5m"\nsymbol = "ETH/USDT"\nformat = "csv"\n')
    monkeypatch.setenv("SCALPBOT_DATA__TIMEFRAME", "15m")
    monkeypatch.setenv("SCALPBOT_DATA__SYMBOL", "SOL/USDT")
    settings = load_settings(None, {"data": {"symbol": "XRP/USDT", "timeframe": None}})
    assert (settings.data.symbol, settings.data.timeframe, settings.data.format) == ("XRP/USDT", "15m", "csv")


def test_scalpbot_store_names_the_store_and_the_endpoint_is_separate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPBOT_STORE", "s3://bot-data/prod")
    monkeypatch.setenv("SCALPBOT_STORE__ENDPOINT_URL", "http://127.0.0.1:9000")
    settings = load_settings()
    assert (settings.store.url, settings.store.endpoint_url) == (
        "s3://bot-data/prod",
        "http://127.0.0.1:9000",
    )


def test_an_explicit_config_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[data]\ntimefrme = "1m"\n',
            "unknown key 'data.timefrme' in scalpbot.toml (did you mean 'timeframe'?)",
        ),
        ('[stor]\nurl = "x"\n', "unknown section 'stor' in scalpbot.toml (did you mean 'store'?)"),
        ('[data]\ntimeframe = "1min"\n', "timeframe '1min' is not supported (did you mean '1m'?)"),
        ("[venue]\ntaker_fee = -0.1\n", "invalid setting venue.taker_fee"),
        (
            "[venue]\ntaker_fe = 0.001\n",
            "unknown key 'venue.taker_fe' in scalpbot.toml (did you mean 'taker_fee'?)",
        ),
        (
            "[backtest]\nfee = 0.001\n",
            "unknown key 'backtest.fee' in scalpbot.toml (it moved to 'venue.taker_fee')",
        ),
        ("[data\n", "is not valid TOML"),
    ],
)
def test_bad_file_content_is_rejected_with_a_fix_it_message(tmp_path: Path, text: str, message: str) -> None:
    _toml(tmp_path / "scalpbot.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("SCALPBOT_DATA__TIMEFRAM", "did you mean SCALPBOT_DATA__TIMEFRAME?"),
        ("SCALPBOT_EXCHANG__ID", "did you mean SCALPBOT_EXCHANGE__...?"),
        ("SCALPBOT_DATA", "must name a key"),
    ],
)
def test_unknown_environment_variables_are_rejected_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    monkeypatch.setenv(name, "1m")
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace(".", r"\.")):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [("SCALPBOT_TRAIN__WIDTHS", "64,64"), ("SCALPBOT_BOT__SYMBOLS", "BTC/USDT,ETH/USDT")],
)
def test_a_list_setting_in_the_environment_takes_json_and_a_bare_list_is_told_so(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    monkeypatch.setenv("SCALPBOT_TRAIN__HOLDING_HORIZONS", "[5, 10]")  # JSON: read, not blamed
    monkeypatch.setenv("SCALPBOT_TRAIN__MODEL", "mlp")  # a str or a list: plain text is read as is
    with pytest.raises(ConfigError, match=f"^{name} cannot be read: .* takes JSON") as caught:
        load_settings(None)
    assert "\n" not in str(caught.value) and "HOLDING" not in str(caught.value)
    assert "MODEL" not in str(caught.value).split(" cannot")[0]
    monkeypatch.setenv("SCALPBOT_TRAIN__WIDTHS", "[64, 32]")
    monkeypatch.setenv("SCALPBOT_BOT__SYMBOLS", '["BTC/USDT", "ETH/USDT"]')
    settings = load_settings(None)
    assert settings.train.widths == (64, 32) and settings.symbols == ("BTC/USDT", "ETH/USDT")


def test_a_retired_key_in_a_file_is_told_to_be_deleted(tmp_path: Path) -> None:
    path = tmp_path / "scalpbot.toml"
    path.write_text("[execute]\nhistory_days = 2\n")
    with pytest.raises(
        ConfigError, match=r"'execute.history_days' in .* no longer sets anything .* delete it"
    ):
        load_settings(path)


def test_secrets_are_redacted_when_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCALPBOT_EXCHANGE__API_KEY", "key-123")
    monkeypatch.setenv("SCALPBOT_EXCHANGE__SECRET", "secret-456")
    settings = load_settings()
    assert settings.exchange.secret is not None
    assert settings.exchange.secret.get_secret_value() == "secret-456"
    shown = redacted(settings)
    assert shown["exchange"]["api_key"] == shown["exchange"]["secret"] == "********"
    assert "secret-456" not in repr(settings) and "key-123" not in str(shown)


def test_exchange_api_url_keeps_scheme_and_host_only_and_excludes_the_sandbox() -> None:
    settings = load_settings(None, {"exchange": {"api_url": " http://127.0.0.1:8080/ "}})
    assert settings.exchange.api_url == "http://127.0.0.1:8080"
    assert load_settings(None, {"exchange": {"api_url": ""}}).exchange.api_url is None
    for bad in ("127.0.0.1:8080", "ftp://proxy", "https://proxy.example/api/v3"):
        with pytest.raises(ConfigError, match="api_url"):
            load_settings(None, {"exchange": {"api_url": bad}})
    with pytest.raises(ConfigError, match="sandbox"):
        load_settings(None, {"exchange": {"api_url": "https://proxy.example", "sandbox": True}})


def test_the_kernel_cache_seed_variable_is_not_mistaken_for_a_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCALPBOT_NUMBA_CACHE_SEED", "/opt/scalpbot/numba-cache")
    assert load_settings(None, {}).store.url == "./scalpbot-data"


def test_rebased_api_urls_keep_every_path_of_the_venue() -> None:
    from scalpbot.adapters.ccxt.common import rebased_api_urls

    urls = rebased_api_urls("binance", "http://127.0.0.1:9")
    assert urls["public"] == "http://127.0.0.1:9/api/v3"
    assert all(str(u).startswith("http://127.0.0.1:9/") for u in urls.values() if isinstance(u, str))


def test_the_portfolio_section_binds_nothing_by_default_and_rejects_unknown_or_bad_keys(
    tmp_path: Path,
) -> None:
    from scalpbot.wiring import portfolio_limits

    default = portfolio_limits(load_settings(None))
    assert (default.max_gross_exposure, default.max_positions, default.max_daily_loss) == (
        float("inf"),
        None,
        None,
    )
    path = tmp_path / "scalpbot.toml"
    path.write_text("[portfolio]\nmax_gross_exposure = 2.0\nmax_positions = 3\nmax_drawdown = 0.15\n")
    limits = portfolio_limits(load_settings(path))
    assert (limits.max_gross_exposure, limits.max_positions, limits.max_drawdown) == (2.0, 3, 0.15)
    path.write_text("[portfolio]\nmax_position = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'portfolio.max_position'.*max_positions"):
        load_settings(path)
    path.write_text("[portfolio]\nmax_daily_loss = 1.5\n")
    with pytest.raises(ConfigError, match="portfolio.max_daily_loss"):
        load_settings(path)


def test_bot_symbols_default_to_the_data_symbol_and_refuse_duplicates_mixed_quotes_and_bad_names(
    tmp_path: Path,
) -> None:
    assert load_settings(None).symbols == ("BTC/USDT",)
    path = tmp_path / "scalpbot.toml"
    path.write_text('[data]\nsymbol = "eth/usdt"\n')
    assert load_settings(path).symbols == ("ETH/USDT",)  # unset: the one data.symbol
    path.write_text('[bot]\nsymbols = ["sol/usdt", "BTC/USDT", "ETH/USDT"]\n')
    assert load_settings(path).symbols == ("SOL/USDT", "BTC/USDT", "ETH/USDT")  # order kept
    for text, message in (
        ('symbols = ["BTC/USDT", "btc/usdt"]', "BTC/USDT more than once"),
        ('symbols = ["BTC/USDT", "ETH/BTC"]', "mixes quote currencies"),
        ('symbols = ["BTC-USDT"]', "must look like BASE/QUOTE"),
        ('symbols = ["BTC/USDT,ETH/USDT"]', "one symbol at a time"),
    ):
        path.write_text(f"[bot]\n{text}\n")
        with pytest.raises(ConfigError, match=message):
            load_settings(path)
