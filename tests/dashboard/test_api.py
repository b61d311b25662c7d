"""The dashboard's JSON API on a real server over a replayed store: reads, filters, and token-guarded actions."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from scalpbot.config import load_settings
from scalpbot.dashboard.app import build_app
from scalpbot.state.ledger import Ledger
from scalpbot.state.portfolio import PortfolioStore
from scalpbot.wiring import build_services

from support.operated import copy_of
from support.web import call, running_app

TOKEN = "s3cret-operator-token"


def _app(store: Path, token: str | None) -> object:
    serve = {"token": token} if token is not None else {}
    return build_app(build_services(load_settings(None, {"store": {"url": str(store)}, "serve": serve})))


@pytest.fixture(scope="module")
def base(operated_store: Path) -> Iterator[str]:
    with running_app(_app(operated_store, TOKEN)) as url:  # type: ignore[arg-type]
        yield url


def test_bots_lists_each_bot_with_its_status_equity_and_position(base: str, operated_store: Path) -> None:
    status, body, _ = call(f"{base}/api/bots")
    assert status == 200
    assert [b["bot"] for b in body["bots"]] == ["alpha", "beta"]
    alpha = body["bots"][0]
    snapshot = PortfolioStore(
        build_services(load_settings(None, {"store": {"url": str(operated_store)}})).store, "alpha"
    ).load()
    assert snapshot is not None
    assert alpha["equity"] == pytest.approx(snapshot.snapshot.equity)
    assert alpha["last_bar"] == "2024-12-29T11:59:00Z"
    assert alpha["status"] == "trading" and body["actions"] is True


def test_trades_equal_the_ledger_and_carry_a_totals_row(base: str, operated_store: Path) -> None:
    services = build_services(load_settings(None, {"store": {"url": str(operated_store)}}))
    expected = Ledger(services.store, "alpha").trades()
    status, body, _ = call(f"{base}/api/bots/alpha/trades")
    assert status == 200
    assert len(body["trades"]) == len(expected) > 5
    assert body["totals"]["pnl"] == pytest.approx(float(expected["pnl"].sum()))
    assert {t["side"] for t in body["trades"]} <= {"long", "short"}
    status, later, _ = call(f"{base}/api/bots/alpha/trades?from=2024-12-29T06:00:00Z")
    assert all(t["entry_time"] >= "2024-12-29T06:00:00Z" for t in later["trades"])
    assert len(later["trades"]) < len(body["trades"])


def test_events_filter_by_kind_and_time_newest_first(base: str) -> None:
    status, body, _ = call(
        f"{base}/api/bots/alpha/events?kind=decision&from=2024-12-29T01:00:00Z&to=2024-12-29T02:00:00Z&limit=5"
    )
    assert status == 200
    assert 0 < len(body) <= 5
    assert {e["kind"] for e in body} == {"decision"}
    times = [e["time"] for e in body]
    assert times == sorted(times, reverse=True) and all("2024-12-29T01" in t for t in times)


def test_risk_cycle_equity_price_releases_and_drift_answer(base: str) -> None:
    _, risk, _ = call(f"{base}/api/bots/alpha/risk")
    assert risk["halted"] is False
    assert risk["limits"]["max_drawdown"] == load_settings(None).risk.max_drawdown
    _, cycle, _ = call(f"{base}/api/bots/alpha/cycle")
    assert cycle["bar"] == "2024-12-29T11:59:00Z" and cycle["age_seconds"] > 0
    _, equity, _ = call(f"{base}/api/bots/alpha/equity?days=0.5")
    assert len(equity["time"]) == len(equity["equity"]) == 720 and max(equity["drawdown"]) <= 0
    _, price, _ = call(f"{base}/api/bots/alpha/price?days=0.25")
    assert len(price["close"]) == 360 and price["trades"]
    _, releases, _ = call(f"{base}/api/releases")
    assert [r["release_id"] for r in releases["releases"] if r["current"]] == [releases["current"]]
    ids = [r["release_id"] for r in releases["releases"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 2
    assert {r["origin"] for r in releases["releases"]} == {"train"}
    assert {r["model_kind"] for r in releases["releases"]} == {"mlp"}
    _, drift, _ = call(f"{base}/api/bots/alpha/drift")
    assert drift["totals"]["matched_trades"] >= 0 and drift["report"].endswith("metrics.json")
    _, none, _ = call(f"{base}/api/bots/beta/drift")
    assert none["totals"] is None


def test_an_unknown_bot_is_404_with_a_did_you_mean(base: str) -> None:
    status, body, _ = call(f"{base}/api/bots/alpah/position")
    assert status == 404
    assert "did you mean 'alpha'?" in body["error"]


def test_a_bad_query_is_400_with_the_fix(base: str) -> None:
    status, body, _ = call(f"{base}/api/bots/alpha/trades?from=tomorrow-ish")
    assert status == 400 and "ISO-8601" in body["error"]


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_halt_without_the_token_is_refused_and_changes_nothing(
    operated_store: Path, tmp_path: Path, token: str | None
) -> None:
    store = copy_of(operated_store, tmp_path)
    with running_app(_app(store, TOKEN)) as url:  # type: ignore[arg-type]
        status, body, _ = call(f"{url}/api/bots/alpha/halt", method="POST", body={"reason": "x"}, token=token)
    assert status == 401 and "token" in body["error"]
    services = build_services(load_settings(None, {"store": {"url": str(store)}}))
    loaded = PortfolioStore(services.store, "alpha").load()
    assert loaded is not None and loaded.snapshot.risk.halted is False
    assert not Ledger(services.store, "alpha").events(kinds=("halt",))


def test_actions_are_disabled_when_no_token_is_configured(operated_store: Path, tmp_path: Path) -> None:
    store = copy_of(operated_store, tmp_path)
    with running_app(_app(store, None)) as url:  # type: ignore[arg-type]
        status, body, _ = call(f"{url}/api/bots/alpha/halt", method="POST", body={}, token="anything")
        _, bots, _ = call(f"{url}/api/bots")
    assert status == 403 and "serve.token" in body["error"]
    assert bots["actions"] is False


def test_halt_and_resume_with_the_token_go_through_the_kill_switch_and_the_ledger(
    operated_store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = copy_of(operated_store, tmp_path)
    caplog.set_level(logging.DEBUG)
    with running_app(_app(store, TOKEN)) as url:  # type: ignore[arg-type]
        status, body, _ = call(
            f"{url}/api/bots/beta/halt", method="POST", body={"reason": "news"}, token=TOKEN
        )
        assert (status, body["halted"], body["halt_reason"]) == (200, True, "news")
        _, bots, _ = call(f"{url}/api/bots")
        assert [b["status"] for b in bots["bots"]] == ["trading", "halted"]
        status, body, _ = call(f"{url}/api/bots/beta/resume", method="POST", token=TOKEN)
        assert (status, body["halted"]) == (200, False)
        status, _, _ = call(f"{url}/api/bots/nobody/halt", method="POST", token=TOKEN)
        assert status == 404
    services = build_services(load_settings(None, {"store": {"url": str(store)}}))
    assert [e.kind for e in Ledger(services.store, "beta").events(kinds=("halt", "resume"))] == [
        "halt",
        "resume",
    ]
    assert TOKEN not in caplog.text


def test_the_page_and_its_plotly_asset_are_served_without_any_other_host(base: str) -> None:
    status, page, headers = call(f"{base}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert '<script src="/assets/plotly.min.js">' in page
    assert "://" not in page.replace("http://127.0.0.1", "")
    status, script, headers = call(f"{base}/assets/plotly.min.js")
    assert status == 200 and "text/javascript" in headers["content-type"] and len(script) > 1_000_000
