"""Known answers for the learning: real bars with a planted, learnable edge (or none), and the oracle rule.

An **effect** is planted into real Binance BTC/USDT 1m bars by shifting the log price from an event on: the
bars are kept, only a drift is added. ``shape``:

* ``shock reversion``: the event bar closes ``shock`` lower (a one-minute drop of many recent sigmas), then the
  price drifts up by ``drift`` over the next ``hold`` bars (part of the drop is won back);
* ``volume momentum``: the event bar trades ``burst`` times its volume and closes ``shock / 2`` higher, then the
  price drifts up by ``drift`` over ``hold`` bars;
* ``time of day``: at fixed UTC times (every 6 hours from 01:30), the price drifts up by ``drift`` over ``hold``
  bars.

Prices move inside a bar: a bar opens at the previous close's shift and closes at its own, its high and low
follow (so bars stay valid OHLC). Shocks and bursts fall at random bars, ``hold * 3`` bars apart at least and
on no grid of the clock (events every 90 minutes from midnight would all fall at minute 0 or 30, and the clock
features would find them by their time rather than by their shock or volume). The **oracle rule** knows the
events: it buys at the open after each event bar and sells ``hold`` bars later at the open, through the
project's one fill kernel at the venue's costs; its net PnL per unit of notional (the sum over trades of
``pnl / (entry price * quantity)``) is what a perfect learner could earn. Binance spot is long only, so the
standard effects pay the long side.

**Short side** (``Effect.side = -1``): the mirror image - the shock is a jump, the burst closes lower, and the
price drifts *down* by ``drift`` - which only a venue that can short may earn. On a perpetual swap (the
``swap`` market of a :class:`Case`: Binance USD-M BTC/USDT:USDT, 0.05 % taker) the oracle sells at the open
after each event and buys back ``hold`` bars later; on spot no rule can earn it (a sell only closes a long),
so there is no oracle and the known answer is a refusal.

**Null data**: the real bars as they are, their one-hour blocks shuffled (every link between past and future
broken), and a random walk with the real bars' volatility and volumes.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scalpbot.adapters.marketdata.files import read_bar_file
from scalpbot.config import load_settings
from scalpbot.core.backtest.frame import backtest
from scalpbot.core.bars import validate_bars
from scalpbot.core.policy import StrategyParams, signals_frame
from scalpbot.inference.signals import TradingModel, predict_bars
from scalpbot.jobs.learning import LabelConfig
from scalpbot.jobs.train import simulate
from scalpbot.jobs.train import train as run_train
from scalpbot.jobs.train_steps import longest_horizon, split_folds
from scalpbot.state.releases import ReleaseStore
from scalpbot.wiring import build_services, venue_profile

from support.shape_rules import event_signals as oracle_signals  # the oracle trades each planted event
from support.shape_rules import fit_shape_rule, net_per_notional

SHARED_YEAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "BTC_USDT-1m-2024.csv.gz"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "BTC_USDT-1m-2024-05-01_2024-06-29.csv.gz"
SWAP_MARKET: dict[str, object] = {
    "exchange": {"id": "binanceusdm"},
    "data": {"symbol": "BTC/USDT:USDT"},
    "venue": {
        "taker_fee": 0.0005,
        "amount_step": 0.001,
        "price_tick": 0.1,
        "min_amount": 0.001,
        "min_notional": 100.0,
    },
}
"""The settings of a case on a perpetual swap: Binance USD-M BTC/USDT:USDT (0.05 % taker, 0.001 BTC steps,
100 USDT minimum notional), shorts allowed (the market's type); no funding is stored, so none is charged."""
SHAPES = ("shock reversion", "volume momentum", "time of day")
TIME_OF_DAY_STARTS = (90, 450, 810, 1170)
"""Minutes after midnight UTC at which the time-of-day drift starts."""
CONFIDENCE_GRID = tuple(round(0.4 + 0.025 * i, 3) for i in range(23))
"""The confidence floors (``min_confidence``, 0.40 .. 0.95) of the hindsight sweep, :func:`confidence_sweep`."""


@dataclass(frozen=True)
class Effect:
    """A planted effect: its shape, the drift it pays after each event (log return), how long, how often."""

    shape: str
    drift: float
    hold: int = 30
    per_day: float = 6.0
    shock: float = 0.006
    burst: float = 8.0
    side: int = 1
    """+1: the price drifts up after an event (a long edge); -1: the mirror image, a short edge."""

    @property
    def name(self) -> str:
        """Return ``shape, drift 0.80 %`` (``-0.80 %`` for a short edge)."""
        return f"{self.shape}, drift {self.side * self.drift:.2%}"


@dataclass(frozen=True)
class Case:
    """A known-answer case: an effect to plant, or a null kind ("real", "shuffled", "random walk")."""

    name: str
    effect: Effect | None = None
    null: str | None = None
    above_costs: bool = False
    market: str = "spot"
    """``spot`` (Binance spot, the embedded default) or ``swap`` (:data:`SWAP_MARKET`)."""


@dataclass(frozen=True)
class Planted:
    """Bars with the effect planted and the positions of the event bars (decisions at their close)."""

    bars: pd.DataFrame
    events: np.ndarray


def load_bars(path: Path = SHARED_YEAR) -> pd.DataFrame:
    """Return validated real 1m bars from ``path``."""
    return validate_bars(read_bar_file(path), "1m", source=path.name)


def _event_positions(bars: pd.DataFrame, effect: Effect, rng: np.random.Generator) -> np.ndarray:
    n, gap = len(bars), 3 * effect.hold
    if effect.shape == "time of day":
        minutes = (bars.index.hour * 60 + bars.index.minute).to_numpy()
        starts = np.flatnonzero(np.isin(minutes, TIME_OF_DAY_STARTS))
        events = starts - 1
        return events[(events >= 1) & (events < n - effect.hold - 2)]
    # Uniform among the placements at least ``gap`` apart (and ``gap`` from either end): a position drawn
    # from the room left once the gaps are set aside, plus the gaps before it. Not on a grid of the clock,
    # which the time-of-day features would read as the event's time.
    count = min(int(effect.per_day * n / 1440), max(n - gap, 0) // (gap + 1))
    room = n - gap - count * gap
    return gap + np.sort(rng.choice(room, size=count, replace=False)) + gap * np.arange(count)


def plant(bars: pd.DataFrame, effect: Effect, rng: np.random.Generator) -> Planted:
    """Return ``bars`` with ``effect`` planted (see the module docstring) and the event positions."""
    events = _event_positions(bars, effect, rng)
    step = np.zeros(len(bars))  # log shift added at the close of each bar
    volume = bars["volume"].to_numpy(dtype=np.float64).copy()
    sign = 1.0 if effect.side > 0 else -1.0
    for e in events:
        if effect.shape == "shock reversion":
            step[e] -= sign * effect.shock
        elif effect.shape == "volume momentum":
            step[e] += sign * effect.shock / 2
            volume[e] *= effect.burst
        step[e + 1 : e + 1 + effect.hold] += sign * effect.drift / effect.hold
    close_shift = np.cumsum(step)
    open_shift = np.concatenate(([0.0], close_shift[:-1]))
    o, h, lo, c = (bars[name].to_numpy(dtype=np.float64) for name in ("open", "high", "low", "close"))
    planted = pd.DataFrame(
        {
            "open": o * np.exp(open_shift),
            "high": h * np.exp(np.maximum(open_shift, close_shift)),
            "low": lo * np.exp(np.minimum(open_shift, close_shift)),
            "close": c * np.exp(close_shift),
            "volume": volume,
        },
        index=bars.index,
    )
    return Planted(planted, events)


def shuffled(bars: pd.DataFrame, rng: np.random.Generator, block: int = 60) -> pd.DataFrame:
    """Return bars on the same index whose ``block``-bar pieces (prices and volumes) are reordered, each piece
    rebased to open where the previous one closed."""
    n = len(bars) // block * block
    values = bars[["open", "high", "low", "close", "volume"]].to_numpy()[:n].reshape(-1, block, 5)
    pieces = values[rng.permutation(values.shape[0])]
    scale = np.ones(pieces.shape[0])
    for i in range(1, pieces.shape[0]):
        scale[i] = pieces[i - 1, -1, 3] * scale[i - 1] / pieces[i, 0, 0]
    pieces[:, :, :4] *= scale[:, None, None]
    return pd.DataFrame(pieces.reshape(n, 5), index=bars.index[:n], columns=bars.columns[:5])


def random_walk(bars: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Return a Gaussian random walk with the bars' 1-bar volatility, candle ranges and volumes."""
    close = bars["close"].to_numpy(dtype=np.float64)
    sd = float(np.std(np.diff(np.log(close))))
    path = close[0] * np.exp(np.cumsum(rng.normal(0.0, sd, len(bars))))
    open_ = np.concatenate(([close[0]], path[:-1]))
    wick = (bars["high"] / bars[["open", "close"]].max(axis=1)).to_numpy()
    tail = (bars[["open", "close"]].min(axis=1) / bars["low"]).to_numpy()
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, path) * wick,
            "low": np.minimum(open_, path) / tail,
            "close": path,
            "volume": bars["volume"].to_numpy(),
        },
        index=bars.index,
    )


def case_bars(case: Case, bars: pd.DataFrame, seed: int) -> Planted:
    """Return the bars of ``case`` for ``seed`` (events empty for null data)."""
    rng = np.random.default_rng(seed)
    base = bars[["open", "high", "low", "close", "volume"]]
    if case.effect is not None:
        return plant(base, case.effect, rng)
    if case.null == "shuffled":
        return Planted(shuffled(base, rng), np.empty(0, dtype=np.int64))
    if case.null == "random walk":
        return Planted(random_walk(base, rng), np.empty(0, dtype=np.int64))
    return Planted(base, np.empty(0, dtype=np.int64))


def confidence_sweep(
    index: pd.Index,
    probs: np.ndarray,
    vol: np.ndarray,
    params: StrategyParams,
    score: Callable[[pd.DataFrame], float],
) -> tuple[float, float]:
    """Return the floor, among :data:`CONFIDENCE_GRID` and the tuned one, whose signals score best, and that
    score (on a tie the tuned floor, then the lowest: the score is never below the tuned floor's).

    ``probs``/``vol``: a release's predictions on the bars of ``index``; ``params``: its tuned policy, of which
    only ``min_confidence`` changes; ``score``: a signal frame's result (e.g. its net PnL per unit notional
    on a test window). Swept on the test window itself, this is hindsight no bot has: it tells how much of a
    run's result the model's ranking of the bars allowed and how much the floor the folds chose kept.
    """
    best_floor, best = params.min_confidence, -np.inf
    for floor in (params.min_confidence, *CONFIDENCE_GRID):
        value = score(signals_frame(index, probs, vol, dataclasses.replace(params, min_confidence=floor)))
        if value > best:
            best_floor, best = floor, value
    return best_floor, float(best)


def events_taken(bars: pd.DataFrame, trades: pd.DataFrame, events: np.ndarray, hold: int) -> tuple[int, int]:
    """Return how many of ``events`` (positions in ``bars``) a trade was decided in, within the ``hold`` bars
    of their drift, and how many on the event bar itself, as the oracle decides (a trade entering at the open
    of bar ``t + 1`` was decided at the close of ``t``)."""
    if trades.empty or not len(events):
        return 0, 0
    decided = np.asarray(bars.index.get_indexer(pd.DatetimeIndex(trades["entry_time"]))) - 1
    inside = (decided[None, :] >= events[:, None]) & (decided[None, :] < events[:, None] + hold)
    on_time = (decided[None, :] == events[:, None]).any(axis=1)
    return int(inside.any(axis=1).sum()), int(on_time.sum())


def oracle_net(
    bars: pd.DataFrame, events: np.ndarray, hold: int, *, fee: float, slippage: float = 0.0, side: int = 1
) -> float:
    """Return the oracle's net PnL per unit notional on ``bars`` (``events`` relative to ``bars``), trading
    ``side`` (+1 long, -1 short) at each event."""
    result = backtest(
        bars, oracle_signals(bars, events, hold, side), fee=fee, slippage=slippage, initial_equity=1.0
    )
    return net_per_notional(result.trades)


def standard_cases() -> tuple[Case, ...]:
    """Return the bench's cases: each shape clearly above, near and below the Binance spot round trip
    (0.2 %), then null data."""
    cases = []
    for shape in SHAPES:
        per_day = 4.0 if shape == "time of day" else 6.0
        cases.append(Case(f"{shape}, strong", Effect(shape, 0.010, per_day=per_day), above_costs=True))
        cases.append(Case(f"{shape}, below costs", Effect(shape, 0.0012, per_day=per_day)))
    cases.extend(short_cases())
    cases.extend(Case(f"null: {kind}", null=kind) for kind in ("real", "shuffled", "random walk"))
    return tuple(cases)


def short_cases() -> tuple[Case, ...]:
    """Return the short-side known answers: momentum *down* after selling bursts, clearly above costs, on a
    perpetual swap (found and shorted) and on spot (refused: no rule can earn it there)."""
    effect = Effect("volume momentum", 0.010, side=-1)
    return (
        Case("selling bursts, strong, swap", effect, above_costs=True, market="swap"),
        Case("selling bursts, strong, spot (long only)", effect),
    )


EFFECT_KEYS = ("shape", "drift", "hold", "per_day", "shock", "burst", "side", "market")
"""The keys of :func:`effect_case`'s text."""
ROUND_TRIP = {"spot": 0.002, "swap": 2 * float(SWAP_MARKET["venue"]["taker_fee"])}
"""The taker round trip of each market (Binance spot 0.1 % a side, :data:`SWAP_MARKET`'s), as a fraction."""


def effect_case(text: str) -> Case:
    """Return the case of an effect described as ``key=value`` pairs separated by commas, e.g.
    ``shape=volume momentum,drift=0.5%,hold=15,per_day=3,side=short,market=swap``.

    Keys: :data:`EFFECT_KEYS`; ``shape`` is required, the others take :class:`Effect`'s defaults (``drift``
    1 %, ``market`` spot); ``drift`` and ``shock`` are log returns (``0.005`` or ``0.5%``), ``side`` is
    ``long`` or ``short``. The case counts as above costs when its drift is at least twice the market's
    round trip (:data:`ROUND_TRIP`). Raise ``ValueError`` naming the key and what it takes."""
    fields: dict[str, str] = {}
    for part in (piece.strip() for piece in text.split(",")):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in EFFECT_KEYS:
            raise ValueError(f"{part!r} is not key=value with a key among {', '.join(EFFECT_KEYS)}")
        fields[key] = value.strip()
    if fields.get("shape") not in SHAPES:
        raise ValueError(f"shape takes one of {', '.join(SHAPES)}; got {fields.get('shape')!r}")

    def number(key: str, default: float) -> float:
        value = fields.get(key)
        if value is None:
            return default
        try:
            number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
        except ValueError:
            raise ValueError(f"{key} takes a number (0.005 or 0.5%); got {value!r}") from None
        if not number > 0:
            raise ValueError(f"{key} takes a number above 0; got {value!r}")
        return number

    side = {"long": 1, "short": -1}.get(fields.get("side", "long"))
    market = fields.get("market", "spot")
    if side is None or market not in ROUND_TRIP:
        raise ValueError(f"side takes long or short, market spot or swap; got {text!r}")
    hold = number("hold", 30)
    if hold != int(hold):
        raise ValueError(f"hold takes whole bars; got {fields['hold']!r}")
    shape = fields["shape"]
    effect = Effect(
        shape,
        number("drift", 0.010),
        hold=int(hold),
        per_day=number("per_day", 4.0 if shape == "time of day" else 6.0),
        shock=number("shock", Effect.shock),
        burst=number("burst", Effect.burst),
        side=side,
    )
    name = f"{effect.name}, hold {effect.hold}, {effect.per_day:g}/day, {market}"
    return Case(name, effect, above_costs=effect.drift >= 2 * ROUND_TRIP[market], market=market)


@dataclass(frozen=True)
class Outcome:
    """One run of a case: the verdict, the test window's return, the model's and oracle's net PnL per unit
    notional on the test window (``capture``: their ratio; ``None`` without an oracle), the release's five
    most important features, its label in words and the label's kind (``barrier``, ``holding``; empty in
    outcomes recorded before it was kept), and how many of the ``oracle_trades`` events the release traded in
    their drift and on the event bar itself (None in outcomes recorded before they were counted).

    ``min_confidence``: the release's tuned confidence floor; ``hindsight_confidence`` and
    ``hindsight_capture``: the floor that would have captured most on the test window and that capture
    (:func:`confidence_sweep`; None without a planted edge, and in outcomes recorded before the sweep)."""

    case: str
    seed: int
    promoted: bool
    reason: str
    test_return: float
    trades: int
    model_net: float
    oracle_net: float | None
    capture: float | None
    oracle_trades: int
    seconds: float
    top_features: tuple[str, ...] = ()
    label: str = ""
    label_kind: str = ""
    events_taken: int | None = None
    events_on_time: int | None = None
    min_confidence: float | None = None
    hindsight_confidence: float | None = None
    hindsight_capture: float | None = None
    meta_label: str = ""
    """The meta filter's verdict in words (``train.meta_label``; empty when it is off)."""
    rule_net: float | None = None
    """The shape's rule's net PnL per unit notional on the test window (:mod:`support.shape_rules`: it knows
    the effect's shape, not its events; the oracle itself for ``time of day``); None without an oracle, and
    in outcomes recorded before the rule was measured."""
    rule: str = ""
    """The shape's rule's fitted thresholds in words (``3.5 sigmas, volume >= 2 x mean``)."""

    @property
    def rule_capture(self) -> float | None:
        """Return the shape's rule's net PnL over the oracle's (None without both)."""
        if self.rule_net is None or self.oracle_net is None or self.oracle_net <= 0:
            return None
        return self.rule_net / self.oracle_net


def run_case(
    case: Case,
    seed: int,
    bars: pd.DataFrame,
    store: Path,
    train: dict[str, object] | None = None,
) -> Outcome:
    """Store the case's bars in a folder store at ``store``, run the train job, and score the release and the
    oracle on the release's test window on the venue (Binance spot by default)."""
    planted = case_bars(case, bars, seed)
    market = SWAP_MARKET if case.market == "swap" else {}
    overrides = {**market, "store": {"url": str(store)}, "train": {"seed": seed, **(train or {})}}
    services = build_services(load_settings(None, overrides))
    series = services.series()
    services.dataset.append(series, validate_bars(planted.bars, "1m", source=case.name))
    started = time.perf_counter()
    report = run_train(services, series)
    seconds = time.perf_counter() - started
    venue = venue_profile(services.store, services.settings, series)
    release = ReleaseStore(services.store).load(series.symbol, report.release_id)
    trading = TradingModel.from_release(release).for_venue(venue)
    test_start = pd.Timestamp(report.windows["test"][0])
    # what release_signals trades, with the predictions kept for the hindsight sweep below
    probs, vol = predict_bars(
        planted.bars, trading.model, feature_set=trading.feature_set, window=trading.window
    )
    signals = signals_frame(planted.bars.index, probs, vol, trading.params).loc[test_start:]
    window = planted.bars.loc[test_start:]
    trades = simulate(window, signals, services.settings.backtest, venue).trades
    model = net_per_notional(trades)
    oracle: float | None = None
    oracle_trades = 0
    taken: int | None = None
    on_time: int | None = None
    # an effect no rule can trade on this venue (a short edge on spot) has no oracle: its answer is a refusal
    if case.effect is not None and (case.effect.side > 0 or venue.shorts):
        first = int(planted.bars.index.get_indexer([test_start])[0])
        events = planted.events - first
        side = case.effect.side
        traded = oracle_signals(window, events, case.effect.hold, side)["side"].to_numpy() != 0
        oracle_trades = int(traded.sum())
        taken, on_time = events_taken(window, trades, np.flatnonzero(traded), case.effect.hold)
        oracle = oracle_net(
            window,
            events,
            case.effect.hold,
            fee=venue.taker_fee,
            slippage=services.settings.backtest.slippage,
            side=side,
        )
    capture = model / oracle if oracle is not None and oracle > 0 else None
    rule_net, rule = (None, "") if oracle is None or case.effect is None else shape_rule_net(
        planted.bars, test_start, case.effect, oracle, fee=venue.taker_fee,
        slippage=services.settings.backtest.slippage,
    )  # fmt: skip
    swept: tuple[float | None, float | None] = (None, None)
    if capture is not None and oracle is not None:
        floor, net = confidence_sweep(
            planted.bars.index,
            probs,
            vol,
            trading.params,
            lambda frame: net_per_notional(
                simulate(window, frame.loc[test_start:], services.settings.backtest, venue).trades
            ),
        )
        swept = (floor, net / oracle)
    label = LabelConfig.from_manifest(report.labels)
    return Outcome(
        case.name, seed, report.promoted, report.reason, float(report.test.get("total_return") or 0.0),
        int(report.test.get("trades") or 0), model, oracle, capture, oracle_trades, seconds,
        tuple(list(report.importance)[:5]), label.describe(), label.kind, taken, on_time,
        trading.params.min_confidence, *swept, _meta_text(release.manifest.get("meta_label")), rule_net, rule,
    )  # fmt: skip


def with_shape_rule(outcome: Outcome, case: Case, bars: pd.DataFrame, train: dict[str, object]) -> Outcome:
    """Return ``outcome`` (a run of ``case`` on the window ``bars`` with ``train`` settings, recorded before the
    shape's rule was measured) with the rule measured on its test window; as it is without an oracle."""
    if case.effect is None or outcome.oracle_net is None or outcome.rule_net is not None:
        return outcome
    planted = case_bars(case, bars, outcome.seed)
    market = SWAP_MARKET if case.market == "swap" else {}
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(load_settings(None, {**market, "store": {"url": tmp}}))
        venue = venue_profile(services.store, services.settings, services.series())
    net, text = shape_rule_net(
        planted.bars, held_out_start(planted.bars, {**train, "seed": outcome.seed}), case.effect,
        outcome.oracle_net, fee=venue.taker_fee, slippage=services.settings.backtest.slippage,
    )  # fmt: skip
    return dataclasses.replace(outcome, rule_net=net, rule=text)


def held_out_start(bars: pd.DataFrame, train: dict[str, object] | None = None) -> pd.Timestamp:
    """Return the first bar of the test window the train job cuts from ``bars`` with ``train`` settings (the
    walk-forward split of :func:`scalpbot.jobs.train_steps.prepare`)."""
    cfg = load_settings(None, {"train": train or {}}).train
    return pd.Timestamp(bars.index[split_folds(len(bars), cfg, longest_horizon(cfg)).test[0]])


def shape_rule_net(
    bars: pd.DataFrame,
    test_start: pd.Timestamp,
    effect: Effect,
    oracle: float,
    *,
    fee: float,
    slippage: float,
) -> tuple[float, str]:
    """Return the shape's rule's net PnL per unit notional on the test window of ``bars`` (from ``test_start``)
    and its thresholds in words: :func:`support.shape_rules.fit_shape_rule`, or for ``time of day`` (whose
    signature is the clock) the ``oracle``'s own net PnL."""
    if effect.shape == "time of day":
        return oracle, "the clock (the oracle)"
    rule = fit_shape_rule(
        bars,
        test_start,
        effect.shape,
        effect.side,
        effect.hold,
        fee=fee,
        slippage=slippage,
        shock=effect.shock,
    )
    return rule.test_net, rule.text


def _meta_text(record: Mapping[str, Any] | None) -> str:
    """Return ``kept: folds 2, 3: +1.00% unfiltered, +2.00% filtered`` for a manifest's ``meta_label`` record."""
    if not record:
        return ""
    return f"{'kept' if record.get('adopted') else 'not kept'}: {record.get('reason', '')}"
