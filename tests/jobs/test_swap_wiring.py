"""Settings and wiring of perpetual swaps: the swap keys validated, the live broker chosen from the symbol."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalpbot.adapters.ccxt.binance_swap import BinanceSwapBroker
from scalpbot.adapters.ccxt.okx_swap import OkxSwapBroker
from scalpbot.config import load_settings
from scalpbot.core.risk import Margin
from scalpbot.errors import ConfigError
from scalpbot.wiring import build_services, live_broker, risk_limits

from support.binance_trading import KEY as BINANCE_KEY
from support.binance_trading import SECRET as BINANCE_SECRET
from support.binance_usdm_server import running_usdm
from support.okx_server import KEY, PASSPHRASE, SECRET
from support.okx_swap_venue import running_okx_swap


@pytest.mark.parametrize(
    ("execute", "hint"),
    [
        ({"leverage": 0.5}, "leverage"),
        ({"leverage": 200}, "leverage"),
        ({"margin_mode": "portfolio"}, "margin_mode"),
        ({"liquidation_margin": 1.0}, "liquidation_margin"),
    ],
)
def test_swap_settings_out_of_range_are_refused(
    tmp_path: Path, execute: dict[str, object], hint: str
) -> None:
    with pytest.raises(ConfigError, match=hint):
        load_settings(None, {"store": {"url": str(tmp_path)}, "execute": execute})


def test_a_swap_symbol_gets_margin_rules_and_spot_none(tmp_path: Path) -> None:
    swap = build_services(
        load_settings(
            None,
            {
                "store": {"url": str(tmp_path)},
                "data": {"symbol": "BTC/USDT:USDT"},
                "execute": {"leverage": 5, "liquidation_margin": 0.6},
            },
        )
    )
    assert risk_limits(swap, "1m", "BTC/USDT:USDT").margin == Margin(5.0, 0.004, 0.6)
    assert risk_limits(swap, "1m", "BTC/USDT").margin is None


@pytest.mark.slow  # a venue double end to end: HTTP server, ccxt markets, wiring
def test_the_configured_swap_broker_is_okxs_and_binance_spot_ids_swaps_are_refused_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_okx_swap(monkeypatch) as okx:
        settings = load_settings(
            None,
            {
                "store": {"url": str(tmp_path)},
                "exchange": {
                    "id": "okx",
                    "api_url": okx.server.url,
                    "api_key": KEY,
                    "secret": SECRET,
                    "password": PASSPHRASE,
                    "timeout_ms": 2000,
                },
                "data": {"symbol": "BTC/USDT:USDT"},
                "execute": {"broker": "ccxt", "leverage": 4},
            },
        )
        services = build_services(settings)
        broker = live_broker(services, services.series(), bot="wired")
        assert isinstance(broker, OkxSwapBroker)
        broker.snapshot(okx.bars(), None)
        assert okx.book.levers["isolated"] == 4
    binance = build_services(
        load_settings(None, {"store": {"url": str(tmp_path)}, "data": {"symbol": "BTC/USDT:USDT"}})
    )
    with pytest.raises(
        ConfigError, match="traded live on okx and binanceusdm only.*exchange.id = binanceusdm"
    ):
        live_broker(binance, binance.series(), bot="wired")
    bybit = build_services(
        load_settings(
            None,
            {
                "store": {"url": str(tmp_path)},
                "exchange": {"id": "bybit"},
                "data": {"symbol": "BTC/USDT:USDT"},
            },
        )
    )
    with pytest.raises(ConfigError, match="use exchange.id = okx or binanceusdm"):
        live_broker(bybit, bybit.series(), bot="wired")


@pytest.mark.slow  # a venue double end to end: HTTP server, ccxt markets, wiring
def test_a_binanceusdm_swap_gets_the_binance_usd_m_broker_which_sets_its_leverage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_usdm(monkeypatch) as venue:
        settings = load_settings(
            None,
            {
                "store": {"url": str(tmp_path)},
                "exchange": {
                    "id": "binanceusdm",
                    "api_url": venue.server.url,
                    "api_key": BINANCE_KEY,
                    "secret": BINANCE_SECRET,
                    "timeout_ms": 2000,
                },
                "data": {"symbol": "BTC/USDT:USDT"},
                "execute": {"broker": "ccxt", "leverage": 4},
            },
        )
        services = build_services(settings)
        broker = live_broker(services, services.series(), bot="wired")
        assert isinstance(broker, BinanceSwapBroker)
        broker.snapshot(venue.bars(), None)
        assert (venue.book.leverage, venue.book.margin_type) == (4, "ISOLATED")
