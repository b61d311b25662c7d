"""The dashboard's web app (Starlette): one page, its plotly.js asset and a JSON API over the store.

Routes (``{bot}`` must have state in the store; otherwise 404 with a did-you-mean)::

    GET  /                                  the page (refreshes itself)
    GET  /assets/plotly.min.js              plotly.js from the installed plotly package (no CDN)
    GET  /api/bots                          every bot at a glance: status, last bar, equity, position
                                            (a basket: its portfolio under ``basket``)
    GET  /api/bots/{bot}/portfolio          a basket's portfolio: budget, denials by reason, each symbol
    GET  /api/bots/{bot}/position           open position, equity, release
    GET  /api/bots/{bot}/risk               kill switch, cool-down, drawdown, limits
    GET  /api/bots/{bot}/cycle              last processed bar, its status, events and age
    GET  /api/bots/{bot}/equity?days=2      equity and drawdown at bar closes, window metrics
    GET  /api/bots/{bot}/price?days=1       candles and the trades entered in them
    GET  /api/bots/{bot}/trades?from=&to=   trades with totals
    GET  /api/bots/{bot}/events?kind=&from=&to=&limit=   ledger events, newest first
    GET  /api/bots/{bot}/notifications      halts, resumes, errors, failed notifications
    GET  /api/bots/{bot}/drift              live against simulated, from the latest weekly report
    GET  /api/releases?symbol=              releases with model kinds, gate verdicts, reasons and metrics
    POST /api/bots/{bot}/halt   {"reason"}  engage the kill switch   (Authorization: Bearer TOKEN)
    POST /api/bots/{bot}/resume             release the kill switch  (Authorization: Bearer TOKEN)

A bot of several symbols (a basket) answers the per-bot reads for one of its symbols with ``?symbol=BTC/USDT``
(the first of its basket without one); a symbol outside its basket is 400.

The actions compare the bearer token with ``serve.token`` in constant time; without a configured token they
are refused (403), with a wrong or missing one too (401). The token is never logged or echoed.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pandas as pd
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from scalpbot.dashboard import basket, queries
from scalpbot.dashboard.page import render_page
from scalpbot.errors import ConfigError, ScalpbotError
from scalpbot.wiring import Services

__all__ = ["build_app"]

_Handler = Callable[[Request], Awaitable[Response]]
_Scoped = Callable[[Services, str, str | None, Request], Any]
"""A read of one bot's state: the services keyed as its cycles key it, the bot, its symbol, the request."""


def _json(payload: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> JSONResponse:
    return _json({"error": message}, status)


def _time(request: Request, name: str) -> pd.Timestamp | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise ConfigError(f"{name} {value!r} is not an ISO-8601 time, e.g. 2024-01-01T00:00:00Z") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _number(request: Request, name: str, default: float, low: float, high: float) -> float:
    value = request.query_params.get(name)
    try:
        number = default if value is None else float(value)
    except ValueError:
        raise ConfigError(f"{name} {value!r} is not a number") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}; got {number:g}")
    return number


def build_app(services: Services) -> Starlette:
    """Return the app over ``services`` (the store, the dataset, the settings and the clock)."""
    settings = services.settings.serve
    token = settings.token.get_secret_value() if settings.token is not None else None
    page = render_page(refresh_seconds=settings.refresh_seconds, store=services.store.describe())
    plotly_js: list[bytes] = []

    def now() -> pd.Timestamp:
        return pd.Timestamp(services.clock.now()).tz_convert("UTC")

    def bot_of(request: Request) -> str:
        return queries.check_bot_exists(services.store, str(request.path_params["bot"]))

    def guarded(work: Callable[[Request], Any]) -> _Handler:
        """Run ``work`` in a thread (the store is blocking I/O); map our errors to 4xx JSON."""

        async def handler(request: Request) -> Response:
            try:
                result = await run_in_threadpool(work, request)
            except ConfigError as e:
                status = 404 if str(e).startswith("no bot named") else 400
                return _error(status, str(e))
            except ScalpbotError as e:
                return _error(500, str(e))
            return result if isinstance(result, Response) else _json(result)

        return handler

    def authorized(request: Request) -> Response | None:
        if token is None:
            return _error(403, "actions are disabled: set serve.token (SCALPBOT_SERVE__TOKEN) to enable them")
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), token.encode()):
            return _error(401, "a valid token is required (Authorization: Bearer TOKEN)")
        return None

    async def switch(request: Request, *, halted: bool) -> Response:
        refused = authorized(request)
        if refused is not None:
            return refused
        reason = "resumed from the dashboard"
        if halted:
            body: Any = {}
            if await request.body():
                try:
                    body = await request.json()
                except ValueError:
                    return _error(400, 'the body must be JSON, e.g. {"reason": "news at 14:30"}')
            reason = str(body.get("reason") or "halted from the dashboard") if isinstance(body, dict) else ""
            if not reason:
                return _error(400, 'the body must be a JSON object, e.g. {"reason": "news at 14:30"}')

        def apply(request: Request) -> dict[str, Any]:
            from scalpbot.jobs.trading import set_halt

            bot = bot_of(request)  # a basket halts (resumes) every symbol it keeps state for
            snapshot = set_halt(basket.for_bot(services, bot), bot, halted=halted, reason=reason)
            return {"bot": bot, "halted": snapshot.risk.halted, "halt_reason": snapshot.risk.halt_reason}

        return await guarded(apply)(request)

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    async def plotly(request: Request) -> Response:
        if not plotly_js:
            from plotly.offline import get_plotlyjs

            plotly_js.append(get_plotlyjs().encode())
        return Response(
            plotly_js[0], media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    def bots(request: Request) -> dict[str, Any]:
        moment = now()
        names = queries.bot_names(services.store)
        return {
            "symbol": services.settings.data.symbol,
            "timeframe": services.settings.data.timeframe,
            "now": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "actions": token is not None,
            "bots": [basket.bot_status(services, name, moment) for name in names],
        }

    def scoped(request: Request) -> tuple[Services, str, str | None]:
        """Return the services keyed as the bot's cycles key its state, the bot, and the symbol asked for
        (``None``: a bot of one symbol)."""
        bot = bot_of(request)
        symbols = basket.basket_symbols(services, bot)
        asked = request.query_params.get("symbol") or None
        if not symbols:
            if asked is not None and asked != services.settings.data.symbol:
                raise ConfigError(f"bot {bot} trades one symbol; leave out symbol={asked}")
            return basket.for_bot(services, bot), bot, None
        if asked is not None and asked not in symbols:
            raise ConfigError(f"symbol {asked!r} is not in bot {bot}'s basket: {', '.join(symbols)}")
        return basket.for_bot(services, bot), bot, asked or symbols[0]

    def events(request: Request) -> list[dict[str, Any]]:
        kinds = [k for part in request.query_params.getlist("kind") for k in part.split(",") if k]
        found = queries.events(
            services,
            bot_of(request),
            kinds=kinds or None,
            since=_time(request, "from"),
            until=_time(request, "to"),
            limit=int(_number(request, "limit", 100, 1, 10_000)),
        )
        asked = request.query_params.get("symbol")
        return found if not asked else [e for e in found if e["payload"].get("symbol") in (None, asked)]

    def portfolio(request: Request) -> dict[str, Any]:
        bot = bot_of(request)
        found = basket.portfolio(services, bot, now())
        return {"bot": bot, "symbols": []} if found is None else found

    def releases(request: Request) -> dict[str, Any]:
        return queries.releases(services, request.query_params.get("symbol") or None)

    def of_symbol(read: _Scoped) -> Callable[[Request], Any]:
        """Return a read of the bot's state (for the symbol asked for, in a basket)."""
        return lambda request: read(*scoped(request), request)

    per_bot: dict[str, Callable[[Request], Any]] = {
        "position": of_symbol(lambda s, bot, symbol, r: queries.position(s, bot, symbol)),
        "risk": of_symbol(lambda s, bot, symbol, r: queries.risk(s, bot, symbol)),
        "cycle": of_symbol(lambda s, bot, symbol, r: queries.last_cycle(s, bot, now(), symbol)),
        "equity": of_symbol(
            lambda s, bot, symbol, r: queries.equity_curve(s, bot, _number(r, "days", 2.0, 0.01, 366), symbol)
        ),
        "price": of_symbol(
            lambda s, bot, symbol, r: queries.price_with_trades(
                s, bot, _number(r, "days", 1.0, 0.01, 31), symbol
            )
        ),
        "trades": of_symbol(
            lambda s, bot, symbol, r: queries.trades(s, bot, _time(r, "from"), _time(r, "to"), symbol)
        ),
        "portfolio": portfolio,
        "events": events,
        "notifications": lambda r: queries.notifications(services, bot_of(r)),
        "drift": of_symbol(lambda s, bot, symbol, r: queries.drift(s, bot, symbol)),
    }
    routes = [
        Route("/", index),
        Route("/assets/plotly.min.js", plotly),
        Route("/api/bots", guarded(bots)),
        Route("/api/releases", guarded(releases)),
        *(Route(f"/api/bots/{{bot}}/{name}", guarded(work)) for name, work in per_bot.items()),
        Route("/api/bots/{bot}/halt", partial(switch, halted=True), methods=["POST"]),
        Route("/api/bots/{bot}/resume", partial(switch, halted=False), methods=["POST"]),
    ]
    return Starlette(routes=routes)
