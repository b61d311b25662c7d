"""Does the learning find an edge when there is one, and only then? (Not a test: known answers on real bars.)

**Planted edges** (``tests/support/learning_cases.py``): for each case and seed, a window of real Binance
BTC/USDT 1m bars of 2024 (``--days`` long, starting 17 days later for each seed) gets an effect planted - shock
reversion, momentum after volume bursts, time-of-day drift - clearly above the Binance spot round trip (0.2 %)
or below it; the short side: selling bursts (momentum down, the mirror image) on a Binance USD-M perpetual
swap, where it must be found and sold, and on spot, where no rule can earn it and the answer is a refusal;
null data are the real bars, their one-hour blocks shuffled, and a random walk. The train job runs with the
embedded defaults (walk-forward folds, the gate) on a fresh store. Per case: promotions, the median
test-window return, and the capture: the release's net PnL per unit of notional on the test window over the
oracle rule's (which knows the events) on the same window, at the same costs, over the promoted releases (a
refused one never trades; below costs, the oracle's own net is near 0 and the ratio means nothing). Beside it,
in hindsight: the capture had the release's confidence floor (``min_confidence``, the rest of its policy kept)
been the best one on the test window itself - what the model's ranking of the bars allowed, against what the
floor the folds chose kept of it. And a reference between the oracle and the learner: **the shape's rule**
(``tests/support/shape_rules.py``), which knows what an event looks like (a drop of k sigmas; a rise of k
sigmas on q times the recent volume; the clock) but not where the events are, its two thresholds fitted on
the bars before the test window. Where real bars look like the events, it takes them too: its capture is what
the effect's look allows on that window, and a release well below it learnt less than the shape shows.

**Month by month** (``--months``): on the real 2024 bars, train on the ``--days`` before month m, then trade
month m+1 with whatever is current (nothing, until a release is promoted) and print the out-of-sample return
net of fees beside the newest release traded without the gate, not trading, sma-cross and random entries (as
many as the current release took, at least one, with the sma-cross's SL/TP).

Runs are independent: ``--jobs J`` runs J of them at once, each process on its own core, and ``--out F``
appends each run's outcome to the JSON-lines file F as it ends; a rerun with the same ``--out`` skips the runs
already there (so a long bench that was stopped goes on where it was).

``--file PATH`` plants into other real 1m bars (any CSV or Parquet file in the import schema, e.g. your
exchange's export); by default the 2024 BTC/USDT year beside a checkout, else the bundled six-week sample
(then ``--days 41`` less one a seed beyond the first). A test window needs 7 days for the gate
(``--days 36`` or more).

``--train JSON`` measures other train settings (e.g. ``'{"ensemble": 3}'``), and ``--only 2,5,10`` runs some of
the seeds (their windows laid out for ``--seeds``), to look again at the runs a table showed weak.

``--effect 'shape=volume momentum,drift=0.5%,hold=15,per_day=3'`` plants an effect of your own (shape, drift,
hold, per_day, shock, burst, side long/short, market spot/swap; see ``effect_case``) instead of the standard
cases, or beside the ones ``--cases`` names: the learning measured on edges it was not developed on.

Usage: python bench/learning.py [--seeds N] [--days D] [--trials T] [--cases SUBSTRING[|...]] [--months M]
                                [--jobs J] [--out FILE] [--file BARS] [--train JSON] [--only SEEDS]
                                [--effect SPEC ...]
"""

from __future__ import annotations

# isort: off
import _single_core  # noqa: F401  (first: pins the process to one core before any import)

# isort: on
import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _data import year_or_sample
from scalpbot.config import TrainSettings, load_settings
from scalpbot.errors import ConfigError
from scalpbot.ml.fit_pool import die_with_parent

from support.learning_cases import (
    Case,
    Outcome,
    effect_case,
    load_bars,
    run_case,
    standard_cases,
    with_shape_rule,
)

_TARGET_CAPTURE = 0.6
"""The share of the oracle's net PnL a promoted release must capture on an edge clearly above costs."""


def _median(values: list[float]) -> str:
    return "-" if not values else f"{np.median(values):+.2%}"


def _window(bars: pd.DataFrame, seed: int, days: int, seeds: int) -> pd.DataFrame:
    """Return seed ``seed``'s ``days``-long window: 17 days after the previous seed's, or closer when ``seeds``
    windows would not fit in the bars."""
    span = (bars.index[-1] - bars.index[0]).days
    step = max(1, min(17, (span - days) // max(seeds - 1, 1)))
    start = bars.index[0] + pd.Timedelta(days=step * seed)
    return bars.loc[start : start + pd.Timedelta(days=days) - pd.Timedelta(minutes=1)]


_BARS: pd.DataFrame | None = None


def _start_worker(cores: list[int], counter: object, path: Path) -> None:
    """Give each worker process its own core (the bench process itself is pinned to one) and the bars of
    ``path``."""
    global _BARS
    with counter.get_lock():  # type: ignore[attr-defined]
        index = counter.value  # type: ignore[attr-defined]
        counter.value += 1  # type: ignore[attr-defined]
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cores[index % len(cores)]})
    die_with_parent()  # a bench stopped (SIGTERM, SIGKILL) leaves no run computing
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it was stopped before the request took effect
        os._exit(1)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    _BARS = load_bars(path)


def _run(task: tuple[Case, int, dict[str, Any]]) -> Outcome:
    case, seed, train = task
    bars = _BARS if _BARS is not None else load_bars(year_or_sample())
    with tempfile.TemporaryDirectory() as tmp:
        return run_case(case, seed, _window(bars, seed, train["days"], train["seeds"]), Path(tmp), {
            **train["settings"], "days": train["days"], "trials": train["trials"],
        })  # fmt: skip


def _outcomes(tasks: list[tuple[Case, int, dict[str, Any]]], args: argparse.Namespace) -> Iterator[Outcome]:
    if args.jobs <= 1:  # in this process: the bars main read (_BARS)
        yield from map(_run, tasks)
        return
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    cores = list(range(os.cpu_count() or 1)) if len(cores) < args.jobs else cores
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    with ProcessPoolExecutor(
        args.jobs, mp_context=context, initializer=_start_worker, initargs=(cores, counter, args.file)
    ) as pool:
        yield from pool.map(_run, tasks)


def _done(path: Path | None) -> dict[tuple[str, int], Outcome]:
    if path is None or not path.exists():
        return {}
    outcomes = (Outcome(**json.loads(line)) for line in path.read_text().splitlines() if line.strip())
    return {(o.case, o.seed): o for o in outcomes}


def planted(args: argparse.Namespace) -> None:
    """Run the known-answer cases and print their table."""
    wanted = [part for part in args.cases.split("|") if part]
    cases = [case for case in standard_cases() if not wanted or any(part in case.name for part in wanted)]
    if args.effect:
        cases = (cases if wanted else []) + args.effect
    done = _done(args.out)
    train = {"days": args.days, "trials": args.trials, "seeds": args.seeds, "settings": args.train}
    by_name = {case.name: case for case in cases}
    assert _BARS is not None
    settings = {**args.train, "days": args.days, "trials": args.trials}
    for key, outcome in done.items():  # runs recorded before the shape's rule was measured get it now
        if outcome.case in by_name and outcome.rule_net is None:
            window = _window(_BARS, outcome.seed, args.days, args.seeds)
            done[key] = with_shape_rule(outcome, by_name[outcome.case], window, settings)
    seeds = range(args.seeds) if args.only is None else args.only
    # Seed by seed over the cases, so that a stopped bench has an even sample of every case.
    todo = [(case, seed, train) for seed in seeds for case in cases if (case.name, seed) not in done]
    if done:
        print(f"{len(done)} runs read from {args.out}, {len(todo)} to run")
    above = {case.name for case in cases if case.above_costs}
    for outcome in _outcomes(todo, args):
        done[(outcome.case, outcome.seed)] = outcome
        if args.out is not None:
            with args.out.open("a") as out:
                out.write(json.dumps(asdict(outcome)) + "\n")
        # a capture means something where the oracle clearly earns: below costs it divides by next to nothing
        shown = outcome.case in above and outcome.capture is not None
        print(
            f"  {outcome.case}, seed {outcome.seed}: {'promoted' if outcome.promoted else 'refused'}, "
            f"test {outcome.test_return:+.2%}, capture "
            f"{f'{outcome.capture:.0%}{_floors(outcome)}{_rule(outcome)}' if shown else '-'}, "
            f"{outcome.seconds:.0f} s"
            f"{f'; meta filter {outcome.meta_label}' if outcome.meta_label else ''}",
            flush=True,
        )
    table(cases, [[done[(case.name, seed)] for seed in seeds if (case.name, seed) in done] for case in cases])


def _floors(outcome: Outcome) -> str:
    """Return `` (floor 0.74; 0.55 would capture 71 %)``: the tuned confidence floor beside the test window's
    best, or nothing without the sweep."""
    if outcome.hindsight_capture is None or outcome.min_confidence is None:
        return ""
    return (
        f" (floor {outcome.min_confidence:.2f}; {outcome.hindsight_confidence:.2f} would capture "
        f"{outcome.hindsight_capture:.0%})"
    )


def _rule(outcome: Outcome) -> str:
    """Return ``; the shape's rule 70 % (3 sigmas, volume >= 1 x mean)``, or nothing without it."""
    capture = outcome.rule_capture
    return "" if capture is None else f"; the shape's rule {capture:.0%} ({outcome.rule})"


def _rules(outcomes: list[Outcome]) -> str:
    """Return the median and least capture of the shape's rule over the promoted runs, and how many of their
    releases captured at least as much: ``75 % [58 %], release >= rule 6/20`` (``-`` without it)."""
    pairs = [(o.rule_capture, o.capture) for o in outcomes if o.promoted and o.rule_capture is not None]
    if not pairs:
        return "-"
    rules = [rule for rule, _ in pairs]
    level = sum(model is not None and model >= rule for rule, model in pairs)
    return f"{np.median(rules):.0%} [{min(rules):.0%}], release >= rule {level}/{len(pairs)}"


def _events_taken(outcomes: list[Outcome]) -> str:
    """Return the median share of a run's events its release traded in their drift, and on the event bar
    itself: ``62 % (9 %)`` (``-`` without events, or for outcomes recorded before they were counted)."""
    counted = [o for o in outcomes if o.events_taken is not None and o.oracle_trades]
    if not counted:
        return "-"
    taken = np.median([(o.events_taken or 0) / o.oracle_trades for o in counted])
    on_time = np.median([(o.events_on_time or 0) / o.oracle_trades for o in counted])
    return f"{taken:.0%} ({on_time:.0%})"


def _hindsight(outcomes: list[Outcome]) -> str:
    """Return the median and least capture of the promoted runs had their confidence floor been the best one on
    the test window (hindsight, :func:`support.learning_cases.confidence_sweep`): ``81 % [66 %]`` (``-``
    without a planted edge, or for outcomes recorded before the sweep)."""
    swept = [o.hindsight_capture for o in outcomes if o.promoted and o.hindsight_capture is not None]
    return "-" if not swept else f"{np.median(swept):.0%} [{min(swept):.0%}]"


def _label_counts(outcomes: list[Outcome]) -> str:
    """Return how many runs chose each kind of label: ``barrier 8, holding 12`` (outcomes recorded before the
    kind was kept: by their label's words)."""
    kinds = [
        o.label_kind or ("holding" if o.label.startswith("holding") else "barrier")
        for o in outcomes
        if o.label
    ]
    return ", ".join(f"{kind} {kinds.count(kind)}" for kind in sorted(set(kinds))) or "-"


def table(cases: list[Case], runs: list[list[Outcome]]) -> None:
    """Print the known-answer table: a row per case over its seeds, then the first seed's verdict per case."""
    header = (
        "case",
        "promoted",
        "test return (median)",
        "capture of the promoted (median [min, max])",
        f"capture >= {_TARGET_CAPTURE:.0%}",
        "with the test's best floor (median [min])",
        "the shape's rule (median [min])",
        "events taken (on the event bar)",
        "trades / oracle",
        "labels chosen",
        "s/run",
    )
    print()
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    first_lines = []
    for case, outcomes in zip(cases, runs, strict=True):
        captures = [o.capture for o in outcomes if o.promoted and o.capture is not None]
        capture = (
            "-" if not captures else f"{np.median(captures):.0%} [{min(captures):.0%}, {max(captures):.0%}]"
        )
        trades = ", ".join(f"{o.trades}/{o.oracle_trades}" for o in outcomes[:3]) if case.effect else "-"
        row = (
            case.name,
            f"{sum(o.promoted for o in outcomes)}/{len(outcomes)}",
            _median([o.test_return for o in outcomes]),
            capture,
            f"{sum(c >= _TARGET_CAPTURE for c in captures)}/{len(captures)}" if captures else "-",
            _hindsight(outcomes),
            _rules(outcomes) if case.above_costs else "-",
            _events_taken(outcomes),
            trades,
            _label_counts(outcomes),
            f"{np.mean([o.seconds for o in outcomes]):.0f}",
        )
        print(" | ".join(row), flush=True)
        first_lines.append(f"{case.name}, seed {outcomes[0].seed}: {outcomes[0].reason}")
    print()
    print("\n".join(first_lines))


def month_by_month(bars: pd.DataFrame, args: argparse.Namespace) -> None:
    """Print the walk-forward month by month on real bars: what trading the current release earned."""
    from scalpbot.config import load_settings
    from scalpbot.core.strategies import sma_cross_signals
    from scalpbot.inference.signals import ReleaseCache, TradingModel, release_signals
    from scalpbot.jobs.train import score_signals, train
    from scalpbot.state.releases import ReleaseStore
    from scalpbot.wiring import build_services, venue_profile

    header = (
        "month traded",
        "current release",
        "promoted",
        "out of sample",
        "trades",
        "newest, ungated",
        "not trading",
        "sma-cross",
        "random",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    months = pd.date_range(
        bars.index[0].normalize() + pd.Timedelta(days=args.days), bars.index[-1], freq="MS"
    )
    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"store": {"url": tmp}, "train": {"days": args.days, "trials": args.trials}}
        services = build_services(load_settings(None, overrides))
        series = services.series()
        services.dataset.append(series, bars)
        costs = services.settings.backtest
        venue = venue_profile(services.store, services.settings, series)
        rng = np.random.default_rng(0)
        for month in months[: args.months]:
            report = train(services, series, until=month.to_pydatetime())
            nxt = month + pd.offsets.MonthBegin(1)
            history = bars.loc[month - pd.Timedelta(days=2) : nxt - pd.Timedelta(minutes=1)]
            window = history.loc[month:]
            cache = ReleaseCache(ReleaseStore(services.store), series.symbol)
            if cache.available():
                trading = cache.current().for_venue(venue)
                signals = release_signals(history, trading).loc[month:]
                release = trading.release_id
            else:
                signals = pd.DataFrame(
                    {"side": 0, "size": 0.0, "sl": 0.0, "tp": 0.0, "max_hold": 0}, index=window.index
                )
                release = "none current"
            ours = score_signals(window, signals, costs, venue)
            newest = TradingModel.from_release(
                ReleaseStore(services.store).load(series.symbol, report.release_id)
            ).for_venue(venue)
            ungated = score_signals(window, release_signals(history, newest).loc[month:], costs, venue)
            flat = score_signals(window, signals.assign(side=0), costs, venue)
            sma = sma_cross_signals(
                window,
                length=costs.sma_length,
                sl=costs.sl,
                tp=costs.tp,
                size=costs.size,
                max_hold=costs.max_hold,
            )
            side = np.zeros(len(window), dtype=np.int8)
            side[rng.choice(len(window) - 1, size=max(int(ours["trades"] or 0), 1), replace=False)] = 1
            random = signals.assign(
                side=side, size=costs.size, sl=costs.sl, tp=costs.tp, max_hold=costs.max_hold
            )
            row = (
                f"{month:%Y-%m}",
                release,
                "yes" if report.promoted else "no",
                f"{ours['total_return']:+.2%}",
                str(ours["trades"]),
                f"{ungated['total_return']:+.2%} ({ungated['trades']})",
                f"{flat['total_return']:+.2%}",
                f"{score_signals(window, sma, costs, venue)['total_return']:+.2%}",
                f"{score_signals(window, random, costs, venue)['total_return']:+.2%}",
            )
            print(" | ".join(row), flush=True)
            print(f"    {report.reason}", flush=True)


def _settings(text: str) -> dict[str, Any]:
    """Return the ``--train`` JSON object, checked against the train settings."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc.msg}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"takes a JSON object of train settings, got {text}")
    try:
        load_settings(None, {"train": value})
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc} in {text}") from None
    return value


def _effect(text: str) -> Case:
    """Return the ``--effect`` case."""
    try:
        return effect_case(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seed_list(text: str) -> list[int]:
    """Return the ``--only`` seeds, ``2,5,10``."""
    try:
        seeds = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes seeds separated by commas, e.g. 2,5,10; got {text}"
        ) from None
    if not seeds or seeds[0] < 0:
        raise argparse.ArgumentTypeError(f"takes seeds 0 and up, e.g. 2,5,10; got {text}")
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--trials", type=int, default=TrainSettings().trials, help="default: train.trials")
    parser.add_argument(
        "--cases", default="", help="run only the cases whose name contains this (or any of A|B)"
    )
    parser.add_argument("--months", type=int, default=0, help="also run the month-by-month walk-forward")
    parser.add_argument("--no-planted", action="store_true", help="skip the planted cases")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, one core each")
    parser.add_argument(
        "--file",
        type=Path,
        default=None,
        help="real 1m bars to plant into (CSV or Parquet, the import schema); default: the 2024 BTC/USDT "
        "year beside a checkout, else the bundled sample",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON lines of the runs (read back on rerun)")
    parser.add_argument(
        "--train",
        type=_settings,
        default={},
        help="train settings beside the embedded defaults, as JSON (e.g. '{\"ensemble\": 3}')",
    )
    parser.add_argument(
        "--effect",
        type=_effect,
        action="append",
        default=[],
        help="plant this effect instead of the standard cases (or beside those --cases names), e.g. "
        "'shape=volume momentum,drift=0.5%%,hold=15,per_day=3,side=short,market=swap'; repeatable",
    )
    parser.add_argument(
        "--only", type=_seed_list, default=None, help="run only these seeds (e.g. 2,5,10), windows as --seeds"
    )
    args = parser.parse_args()
    if args.only is not None and max(args.only) >= args.seeds:
        parser.error(f"--only {max(args.only)} is not below --seeds {args.seeds}")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    started = time.perf_counter()
    args.file = args.file or year_or_sample()
    global _BARS
    bars = _BARS = load_bars(args.file)  # a worker process reads its own (_start_worker)
    span = (bars.index[-1] - bars.index[0]).days
    if span < args.days + args.seeds - 1:  # each seed's window starts at least a day after the previous one
        raise SystemExit(
            f"{args.file.name} spans {span} days: {args.seeds} windows of {args.days} days, a day apart at "
            f"least, need {args.days + args.seeds - 1}; pass fewer --seeds or --days {span - args.seeds + 1}"
        )
    print(
        f"{len(bars):,} real 1m bars of {args.file.name}, {bars.index[0]:%Y-%m-%d} .. {bars.index[-1]:%Y-%m-%d}; "
        f"{args.seeds} seeds, {args.days} days a run, {args.trials} trials, {args.jobs} at once"
    )
    if not args.no_planted:
        planted(args)
    if args.months:
        print()
        month_by_month(bars, args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
