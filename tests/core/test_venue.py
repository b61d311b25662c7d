"""The venue profile: honest offline defaults, each value's source, overrides, and a lossless JSON form."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scalpbot.core.backtest.enums import OrderRules
from scalpbot.core.labels import LABEL_SHORT, triple_barrier_labels
from scalpbot.core.risk import MarketRules
from scalpbot.core.venue import VALUE_FIELDS, Venue, default_venue, market_type_of
from scalpbot.errors import ConfigError


def test_binance_spot_defaults_to_its_real_fee_and_no_shorts() -> None:
    venue = default_venue("binance", "BTC/USDT")
    assert venue.market_type == "spot"
    assert (venue.taker_fee, venue.maker_fee) == (0.001, 0.001)
    assert venue.shorts is False
    assert venue.protection == ("oco",)
    assert (venue.amount_step, venue.price_tick, venue.min_amount, venue.min_notional) == (
        1e-5,
        0.01,
        1e-5,
        5.0,
    )
    assert set(venue.sources.values()) == {"default"}
    assert venue.buy_fee_in_base is True
    assert venue.order_rules() == OrderRules(
        1e-5, 1e-5, 5.0, False, cost_step=0.01, buy_fee_in_base=True, price_tick=0.01
    )
    assert venue.market_rules() == MarketRules(
        amount_step=1e-5, min_qty=1e-5, min_notional=5.0, price_tick=0.01
    )


def test_okx_spot_defaults_to_sl_tp_attached_to_the_entry_and_no_shorts() -> None:
    venue = default_venue("okx", "BTC/USDT")
    assert (venue.protection, venue.shorts, venue.taker_fee) == (("attached",), False, 0.001)
    assert default_venue("kraken", "BTC/USDT").protection == ()


def test_any_spot_market_is_long_only_and_a_swap_can_short() -> None:
    assert default_venue("kraken", "XMR/BTC").shorts is False
    assert default_venue("kraken", "XMR/BTC").amount_step == 0.0  # unknown offline: no rule until fetched
    swap = default_venue("binance", "BTC/USDT:USDT")
    assert (swap.market_type, swap.shorts, swap.protection, swap.taker_fee) == (
        "swap",
        True,
        ("reduce_only",),
        0.0005,
    )
    assert market_type_of("BTC/USDT:USDT-241227") == "future"
    # derivatives orders are contracts sized at the decision bar's close; spot buys a quote amount at the fill
    assert swap.order_rules().size_at_close is True
    assert default_venue("okx", "BTC/USDT:USDT-241227").order_rules().size_at_close is True
    assert default_venue("binance", "BTC/USDT").order_rules().size_at_close is False


def test_an_override_changes_only_the_named_values_and_marks_them_config() -> None:
    venue = default_venue("binance", "BTC/USDT").override({"taker_fee": 0.00075, "shorts": None})
    assert venue.taker_fee == 0.00075
    assert venue.sources["taker_fee"] == "config"
    assert venue.sources["shorts"] == "default" and venue.shorts is False
    assert [row[2] for row in venue.rows()].count("config") == 1
    with pytest.raises(ConfigError, match="did you mean 'taker_fee'"):
        venue.override({"taker_fe": 0.001})


def test_the_json_form_round_trips_every_value_and_source() -> None:
    venue = default_venue("binance", "BTC/USDT").override({"min_notional": 10.0}, "exchange")
    again = Venue.from_dict(json.loads(json.dumps(venue.to_dict())))
    assert again == venue
    assert again.sources["min_notional"] == "exchange"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"taker_fee": -0.001}, "taker_fee"),
        ({"taker_fee": 0.2}, "taker_fee"),
        ({"amount_step": -1.0}, "amount_step"),
        ({"protection": ("oco", "trailing")}, "protection 'trailing' is unknown"),
        ({"shorts": "no"}, "shorts must be true or false"),
    ],
)
def test_a_bad_value_is_refused_with_what_to_write(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        default_venue("binance", "BTC/USDT").override(change)


def test_a_profile_missing_a_source_is_refused() -> None:
    data = default_venue("binance", "BTC/USDT").to_dict()
    del data["sources"]["taker_fee"]
    with pytest.raises(ConfigError, match="missing \\['taker_fee'\\]"):
        Venue.from_dict(data)
    assert len(VALUE_FIELDS) == len(default_venue("binance", "BTC/USDT").rows())


def test_labels_on_a_venue_that_cannot_short_never_say_short_wins(sample_bars: pd.DataFrame) -> None:
    bars = sample_bars.iloc[:20_000]
    both = triple_barrier_labels(bars, horizon=30, k_sl=1.0, k_tp=1.0, fee=0.001)["label"].to_numpy()
    spot = triple_barrier_labels(bars, horizon=30, k_sl=1.0, k_tp=1.0, fee=0.001, shorts=False)[
        "label"
    ].to_numpy()
    assert (both == LABEL_SHORT).sum() > 1000
    assert not (spot == LABEL_SHORT).any()
    np.testing.assert_array_equal(spot[both != LABEL_SHORT], both[both != LABEL_SHORT])
    assert set(np.unique(spot[both == LABEL_SHORT])) <= {1, 2}
