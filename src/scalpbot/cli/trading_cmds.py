"""``scalpbot trade|replay|trades|positions|halt|resume``: run and inspect the execute job."""

from __future__ import annotations

import signal as signals
import threading
from dataclasses import replace
from datetime import datetime
from types import FrameType
from typing import Any

import pandas as pd
import typer

from scalpbot.adapters.progress import progress_bar
from scalpbot.cli.backtest_cmd import trades_payload
from scalpbot.cli.data_cmds import TimeframeOpt
from scalpbot.cli.dates import parse_range
from scalpbot.cli.render import err, iso, out, print_json
from scalpbot.cli.state import reported, state_of
from scalpbot.cli.summary import release_line
from scalpbot.cli.symbols import SymbolsOpt, parse_symbols, trading_symbols
from scalpbot.cli.tables import trades_table
from scalpbot.core.timeframes import timeframe_delta
from scalpbot.dashboard.basket import for_bot
from scalpbot.errors import ConfigError
from scalpbot.jobs.cycle import CycleReport
from scalpbot.jobs.services import state_symbol
from scalpbot.jobs.trading import basket_trader, replay, set_halt, trade_loop
from scalpbot.state.bots import check_bot_exists
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioSnapshot, PortfolioStore
from scalpbot.state.release_choice import choose_release
from scalpbot.state.releases import ReleaseStore
from scalpbot.wiring import Services, build_executor, build_market_data, stored_history

BotOpt = typer.Option(None, "--bot", help="Bot name: its ledger and portfolio [config bot.name]")


def _services(ctx: typer.Context, bot: str | None, **data: str | None) -> Services:
    return state_of(ctx).services({"bot": {"name": bot}, "data": dict(data)})


def _basket(
    ctx: typer.Context, bot: str | None, symbols: list[str] | None, timeframe: str | None
) -> tuple[Services, tuple[str, ...]]:
    """Return the services and the symbols a trading command trades (see :func:`trading_symbols`); one symbol
    given overrides ``data.symbol`` as it always did."""
    given = parse_symbols(symbols)
    services = _services(ctx, bot, symbol=given[0] if len(given) == 1 else None, timeframe=timeframe)
    return services, trading_symbols(services.settings, given)


def _read_services(ctx: typer.Context, bot: str | None) -> Services:
    return state_of(ctx).read_services({"bot": {"name": bot}})


def _print_cycle(report: CycleReport) -> None:
    signal = report.signal
    action = (
        "-"
        if signal is None
        else f"side {signal.side:+d} size {signal.size:.3f} sl {signal.sl:.4f} tp {signal.tp:.4f}"
    )
    acks = ", ".join(f"{a.intent} {a.status}" for a in report.acks) or "no order"
    equity = "-" if report.equity is None else f"{report.equity:,.2f}"
    denial = f"; denied: {report.denial}" if report.denial else ""
    message = f"; {report.message}" if report.message else ""
    symbol = f"{report.symbol} " if report.symbol else ""
    out.print(
        f"{symbol}{iso(report.bar)} {report.status}: equity {equity}, {action}, {acks}{denial}{message}"
    )


def trade(
    ctx: typer.Context,
    once: bool = typer.Option(False, "--once", help="Run one cycle at the last closed bar and exit"),
    bot: str | None = BotOpt,
    source: str = typer.Option(
        "ccxt", "--source", help="Where new bars come from: ccxt | file:PATH | sample"
    ),
    symbol: list[str] | None = SymbolsOpt,
    timeframe: str | None = TimeframeOpt,
    adopt: bool = typer.Option(
        False,
        "--adopt",
        help="Live: take base coins already on the account as the bot's position (otherwise refused at start)",
    ),
) -> None:
    """Trade the current release on each bar close: fetch the bar, reconcile, decide, place orders.

    The loop goes on through failures (an exchange outage is recorded and notified once, and the next bar
    is traded when the exchange answers again) until SIGINT or SIGTERM. A bot of several symbols
    (``bot.symbols``) trades each of them on every bar close, in that order.
    """
    services, symbols = _basket(ctx, bot, symbol, timeframe)
    if adopt:
        execute = services.settings.execute.model_copy(update={"adopt": True})
        services = replace(services, settings=services.settings.model_copy(update={"execute": execute}))
    name = services.settings.bot.name
    executors = []
    for each in symbols:
        series = services.series(each)
        executors.append(build_executor(services, series, bot=name, bars=stored_history(services, series)))
    trader = basket_trader(
        services, executors, source=build_market_data(source, services, symbols), release_lease=once
    )
    err.print(release_line(services))
    if once:
        reports = trader(pd.Timestamp(services.clock.now()))
        cycles = (reports,) if isinstance(reports, CycleReport) else tuple(reports)
        for report in cycles:
            _print_cycle(report)
        if any(report.status == "failed" for report in cycles):
            raise typer.Exit(1)  # the cycle failed closed (nothing placed): a script or scheduler must see it
        return
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        err.print("stopping after the cycle in flight")
        stop.set()

    signals.signal(signals.SIGINT, request_stop)
    signals.signal(signals.SIGTERM, request_stop)
    trade_loop(trader, services.clock, stop.wait, on_cycle=_print_cycle)


def run_replay(
    ctx: typer.Context,
    since: str = typer.Option(..., "--from", help="First bar to trade, ISO-8601 UTC"),
    until: str = typer.Option(..., "--to", help="Stop before this bar"),
    bot: str | None = BotOpt,
    symbol: list[str] | None = SymbolsOpt,
    timeframe: str | None = TimeframeOpt,
    release: str | None = typer.Option(
        None, "--release", help="current | latest (passed the gate) | newest | an id prefix [current]"
    ),
    verbose_cycles: bool = typer.Option(False, "--cycles", help="Print every cycle"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """Drive the execute job bar by bar through stored history with the paper broker.

    A bot of several symbols (``bot.symbols``) replays them together, each symbol's current release, through
    the shared portfolio budget."""
    services, symbols = _basket(ctx, bot, symbol, timeframe)
    start, end = parse_range(since, until)
    assert start is not None and end is not None
    release_id: str | None = None
    if len(symbols) == 1:
        choice = choose_release(ReleaseStore(services.store), symbols[0], release)
        err.print(f"replaying {choice.describe()}")
        release_id = choice.release_id
    elif release not in (None, "current"):
        raise ConfigError("--release names one symbol's release; a basket replays each symbol's current one")
    bars = int((pd.Timestamp(end) - pd.Timestamp(start)) / timeframe_delta(services.settings.data.timeframe))
    with reported(services, "replay"), progress_bar(bars * len(symbols), "replay") as advance:
        report = replay(
            services,
            [services.series(each) for each in symbols],
            pd.Timestamp(start),
            pd.Timestamp(end),
            bot=services.settings.bot.name,
            release_id=release_id,
            on_cycle=_print_cycle if verbose_cycles else lambda _: advance(),
        )
    if as_json:
        print_json(
            {
                "bot": report.bot,
                **({"symbols": list(report.symbols)} if report.symbols else {}),
                "release": release_id,
                "first": iso(report.first),
                "last": iso(report.last),
                "cycles": report.cycles,
                "trades": report.trades,
                "equity": report.equity,
            }
        )
        return
    cycles = ", ".join(f"{n} {status}" for status, n in sorted(report.cycles.items()))
    equity = "-" if report.equity is None else f"{report.equity:,.2f}"
    out.print(
        f"replayed {iso(report.first)} .. {iso(report.last)} as bot {report.bot}: {cycles}; "
        f"{report.trades} trades, equity {equity}. See `scalpbot trades --bot {report.bot}`"
    )


def list_trades(
    ctx: typer.Context,
    bot: str | None = BotOpt,
    since: str | None = typer.Option(
        None, "--from", "--since", help="Trades entered from this time, ISO-8601 UTC"
    ),
    until: str | None = typer.Option(None, "--to", "--until", help="Trades entered before this time"),
    symbol: list[str] | None = SymbolsOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """List the bot's closed and open trades from its ledger (the backtest's trade columns).

    A bot of several symbols lists each symbol's trades (``--symbol``: only those), with a ``symbol`` field."""
    first, last = parse_range(since, until)  # a bad date is refused before the store is read
    services = _read_services(ctx, bot)
    name = check_bot_exists(services.store, services.settings.bot.name)
    symbols = trading_symbols(services.settings, symbol)
    rows: list[dict[str, Any]] = []
    for each in symbols:
        scope = state_symbol(services.settings, each)
        trades = _symbol_trades(services, name, each, scope, first, last)
        if as_json:
            rows += [{**row, "symbol": each} if scope else row for row in trades_payload(trades)]
        else:
            title = f"trades of bot {name}" + (f" on {each}" if scope else "")
            out.print(trades_table(trades, title, out.width))
    if as_json:
        print_json({"bot": name, "trades": rows})


def _symbol_trades(
    services: Services,
    bot: str,
    symbol: str,
    scope: str | None,
    first: datetime | None,
    last: datetime | None,
) -> pd.DataFrame:
    """Return the trades of ``symbol`` of ``bot`` (all of a single-symbol bot), an open one marked at the
    close of its last cycle's bar."""
    stored = PortfolioStore(services.store, bot, scope).load()
    mark: dict[str, Any] = {}
    if (
        stored is not None
        and stored.snapshot.position is not None
        and stored.snapshot.last_bar_time is not None
    ):
        bars = services.dataset.read(services.series(symbol), stored.snapshot.last_bar_time, None)
        if len(bars):
            mark = {"mark_price": float(bars["close"].iloc[0]), "mark_time": stored.snapshot.last_bar_time}
    # Up to the last cycle the ledger must hold as many fills as the portfolio counted: none lost.
    count = None if stored is None or last is not None else stored.snapshot.fill_count
    return Ledger(services.store, bot).trades(first, last, fill_count=count, symbol=scope, **mark)


def positions(
    ctx: typer.Context,
    bot: str | None = BotOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object"),
) -> None:
    """Show the bot's open position, equity and risk state as of its last cycle (each symbol's, in a bot of
    several: one JSON object with ``symbols``)."""
    services = _read_services(ctx, bot)
    name = check_bot_exists(services.store, services.settings.bot.name)
    symbols = services.settings.symbols
    payloads: list[dict[str, Any]] = []
    for symbol in symbols:
        scope = state_symbol(services.settings, symbol)
        stored = PortfolioStore(services.store, name, scope).load()
        if stored is None:
            if scope is None:
                raise ConfigError(f"bot {name} has not traded yet; run `scalpbot trade` or `scalpbot replay`")
            payloads.append({"symbol": symbol, "last_bar": None})
            continue
        payloads.append({**({"symbol": symbol} if scope else {}), **_position_payload(stored.snapshot)})
    if all(p["last_bar"] is None for p in payloads):
        raise ConfigError(f"bot {name} has not traded yet; run `scalpbot trade` or `scalpbot replay`")
    if as_json:
        print_json({"bot": name, **payloads[0]} if len(symbols) == 1 else {"bot": name, "symbols": payloads})
        return
    for payload in payloads:
        where = f" {payload['symbol']}" if "symbol" in payload else ""
        if payload["last_bar"] is None:
            out.print(f"bot {name}{where}: no cycle yet")
            continue
        position = payload["position"]
        held = (
            "flat"
            if position is None
            else f"{'long' if position['side'] > 0 else 'short'} {position['qty']:g} @ {position['entry_price']:,.2f} "
            f"(SL {position['sl_price']:,.2f}, TP {position['tp_price']:,.2f})"
        )
        halted = f"; HALTED: {payload['halt_reason']}" if payload["halted"] else ""
        out.print(
            f"bot {name}{where} after {payload['last_bar']}: equity {payload['equity']:,.2f}, {held}{halted}"
        )


def _position_payload(snap: PortfolioSnapshot) -> dict[str, Any]:
    """Return what ``positions`` shows of one snapshot (JSON-native)."""
    position = snap.position
    return {
        "last_bar": iso(snap.last_bar_time),
        "equity": snap.equity,
        "halted": snap.risk.halted,
        "halt_reason": snap.risk.halt_reason,
        "position": None
        if position is None
        else {
            "side": position.side,
            "qty": position.qty,
            "entry_price": position.entry_price,
            "entry_time": iso(position.entry_time),
            "sl_price": position.sl_price,
            "tp_price": position.tp_price,
        },
    }


def halt_bot(
    ctx: typer.Context,
    bot: str | None = BotOpt,
    reason: str = typer.Option("manual halt", "--reason", help="Why; recorded in the ledger"),
) -> None:
    """Engage the kill switch: the next cycle flattens and no entry is placed until `scalpbot resume`.

    A bot of several symbols is halted on every symbol it keeps state for, whatever the configuration lists."""
    services = _read_services(ctx, bot)
    check_bot_exists(services.store, services.settings.bot.name)
    services = for_bot(services, services.settings.bot.name)
    set_halt(services, services.settings.bot.name, halted=True, reason=reason)
    out.print(f"bot {services.settings.bot.name} halted: {reason}")


def resume_bot(ctx: typer.Context, bot: str | None = BotOpt) -> None:
    """Release the kill switch; losses so far are accepted as the new baseline."""
    services = _read_services(ctx, bot)
    check_bot_exists(services.store, services.settings.bot.name)
    services = for_bot(services, services.settings.bot.name)
    set_halt(services, services.settings.bot.name, halted=False, reason="resumed by the operator")
    out.print(f"bot {services.settings.bot.name} resumed")


__all__ = ["halt_bot", "list_trades", "positions", "resume_bot", "run_replay", "trade"]
