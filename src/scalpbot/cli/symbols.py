"""Which symbols a command runs for: ``--symbol`` repeated or comma-separated, else the bot's ``bot.symbols``.

Data commands (``fetch``, ``train``, ``backtest``) run once per symbol; trading commands (``trade``,
``replay``, ``run``) trade the bot's basket, or the symbols given when they belong to it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Sequence

import typer

from scalpbot.cli.render import out, print_json
from scalpbot.config import Settings, check_symbol
from scalpbot.errors import ConfigError

SymbolsOpt = typer.Option(
    None,
    "--symbol",
    help="Unified symbol, e.g. BTC/USDT; repeat it or comma-separate several [config bot.symbols, else data.symbol]",
)


def parse_symbols(values: Sequence[str] | None) -> tuple[str, ...]:
    """Return the symbols named by ``--symbol`` options (each one symbol or a comma list), in order, validated.

    Raise ``ConfigError`` for a malformed or repeated symbol."""
    symbols: list[str] = []
    for value in values or ():
        for part in value.split(","):
            if any(ch.isspace() for ch in part.strip()):
                raise ConfigError(
                    f"--symbol {value!r}: separate several symbols with commas or repeat --symbol, "
                    "e.g. --symbol BTC/USDT,ETH/USDT"
                )
            try:
                symbol = check_symbol(part)
            except ValueError as e:
                raise ConfigError(f"--symbol {part!r}: {e}") from None
            if symbol in symbols:
                raise ConfigError(f"--symbol names {symbol} twice; give each symbol once")
            symbols.append(symbol)
    return tuple(symbols)


def data_symbols(settings: Settings, values: Sequence[str] | None) -> tuple[str | None, ...]:
    """Return the symbols a data command runs for: those given, else ``bot.symbols`` when set, else ``None``
    (the configured ``data.symbol``, as a bot of one symbol always ran)."""
    return parse_symbols(values) or settings.bot.symbols or (None,)


def trading_symbols(settings: Settings, values: Sequence[str] | None) -> tuple[str, ...]:
    """Return the symbols a trading command trades: those given (several must be in ``bot.symbols``: their state
    is kept per symbol only in a bot that lists them), else the bot's symbols."""
    given = parse_symbols(values)
    if not given:
        return settings.symbols
    configured = settings.bot.symbols
    if len(given) > 1 or len(configured) > 1:
        foreign = [symbol for symbol in given if symbol not in configured]
        if foreign:
            raise ConfigError(
                f"{', '.join(foreign)} {'is' if len(foreign) == 1 else 'are'} not in bot.symbols "
                f"({', '.join(configured) or 'unset'}): list every symbol of the bot there, so each keeps its "
                "own state"
            )
    return given


def for_each_symbol(symbols: Sequence[str | None], as_json: bool, run: Callable[[str | None], None]) -> None:
    """Run ``run(symbol)`` for each symbol; one symbol prints as always, several print a header each (or, with
    ``--json``, one JSON list of the per-symbol documents)."""
    if len(symbols) == 1:
        run(symbols[0])
        return
    documents = []
    for symbol in symbols:
        if not as_json:
            out.print(f"[bold]{symbol}[/]")
            run(symbol)
            continue
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            run(symbol)
        documents.append(json.loads(captured.getvalue()))
    if as_json:
        print_json(documents)


__all__ = ["SymbolsOpt", "data_symbols", "for_each_symbol", "parse_symbols", "trading_symbols"]
