"""The dashboard's one page: HTML, style and the script that draws it from the JSON API and refreshes it.

The script asks ``/api/...`` for data and draws with plotly.js from ``/assets/plotly.min.js`` (served from the
installed plotly package), so the page needs no network beyond the server. Every text from the store is
inserted as text (``textContent``), never as HTML.
"""

from __future__ import annotations

import html
import json

__all__ = ["render_page"]

_STYLE = """
*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1f2328}
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between;
padding:.6rem 1.2rem;background:#1f2937;color:#f9fafb}
header h1{font-size:1.2rem;margin:0}header .meta{font-size:.85rem;color:#cbd5e1}
header label{font-size:.85rem}header input{padding:.25rem .4rem;border-radius:4px;border:1px solid #64748b}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:1rem;padding:1rem 1.2rem}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:.6rem .9rem;min-width:0}
section.wide{grid-column:1/-1}h2{font-size:1rem;margin:.2rem 0 .5rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{padding:.25rem .45rem;border-bottom:1px solid #eef0f3;text-align:left;white-space:nowrap}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.selected{background:#eef6ff}tbody tr{cursor:pointer}
.badge{display:inline-block;padding:.05rem .45rem;border-radius:9px;font-size:.75rem;font-weight:600}
.trading{background:#dcfce7;color:#166534}.halted{background:#fee2e2;color:#991b1b}.idle{background:#e5e7eb}
.pos{color:#15803d}.neg{color:#b91c1c}.muted{color:#6b7280;font-size:.85rem}
button{font:inherit;font-size:.8rem;padding:.15rem .6rem;border-radius:4px;border:1px solid #9ca3af;
background:#fff;cursor:pointer}button.halt{border-color:#b91c1c;color:#b91c1c}
#status{font-size:.85rem;min-height:1.2em}.chart{width:100%;min-height:220px}
.scroll{max-height:320px;overflow:auto}td.reason{white-space:normal;min-width:16rem}
"""

_SCRIPT = r"""
const cfg = JSON.parse(document.getElementById('config').textContent);
let selected = null;
let selectedSymbol = null;  // one symbol of a basket bot; null for a bot of one symbol
const $ = (id) => document.getElementById(id);
const pct = (v) => v == null ? '-' : (Math.abs(v) < 0.00005 ? 0 : v * 100).toFixed(2) + '%';
const money = (v) => v == null ? '-' : (Math.abs(v) < 0.005 ? 0 : v).toLocaleString('en-US', {minimumFractionDigits: 2, maximumFractionDigits: 2});
const price = (v) => v == null ? '-' : v.toLocaleString('en-US', {maximumSignificantDigits: 8});
const when = (t) => t == null ? '-' : t.replace('T', ' ').replace(/:00Z$/, '').replace('Z', '');
const age = (s) => s == null ? '-' : s < 120 ? Math.round(s) + ' s' : s < 7200 ? Math.round(s / 60) + ' min'
  : s < 172800 ? (s / 3600).toFixed(1) + ' h' : (s / 86400).toFixed(1) + ' d';
async function api(path) {
  const r = await fetch(path, {cache: 'no-store'});
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function row(cells, classes) {
  const tr = document.createElement('tr');
  cells.forEach((c, i) => {
    const td = document.createElement('td');
    if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? '-' : String(c);
    if (classes && classes[i]) td.className = classes[i];
    tr.appendChild(td);
  });
  return tr;
}
function fill(id, rows, empty) {
  const body = $(id);
  body.replaceChildren(...rows);
  if (!rows.length) body.appendChild(row([empty]));
}
function badge(text) { const s = document.createElement('span'); s.className = 'badge ' + text; s.textContent = text; return s; }
function signed(v, f) { const s = document.createElement('span'); s.className = v > 0 ? 'pos' : v < 0 ? 'neg' : ''; s.textContent = f(v); return s; }
function say(text, bad) { const s = $('status'); s.textContent = text; s.className = bad ? 'neg' : 'muted'; }
async function act(bot, action) {
  const token = $('token').value;
  const headers = {'Content-Type': 'application/json'};
  if (token) headers['Authorization'] = 'Bearer ' + token;
  const reason = action === 'halt' ? 'halted from the dashboard' : undefined;
  const r = await fetch(`/api/bots/${encodeURIComponent(bot)}/${action}`,
    {method: 'POST', headers, body: JSON.stringify(reason ? {reason} : {})});
  const body = await r.json();
  if (!r.ok) { say(`${action} ${bot} refused: ${body.error}`, true); return; }
  say(`${bot} ${body.halted ? 'halted' : 'resumed'}`);
  await refresh();
}
function actionButton(bot, halted) {
  const b = document.createElement('button');
  b.textContent = halted ? 'Resume' : 'Halt';
  b.className = halted ? 'resume' : 'halt';
  b.dataset.bot = bot; b.dataset.action = halted ? 'resume' : 'halt';
  b.addEventListener('click', (e) => { e.stopPropagation(); act(bot, b.dataset.action); });
  return b;
}
function held(p) {
  if (!p) return 'flat';
  return `${p.side} ${price(p.qty)} @ ${price(p.entry_price)}`;
}
function basketText(k) { return `basket of ${k.symbols.length}: ${k.open_positions} open`; }
const scope = (sep) => selectedSymbol ? `${sep}symbol=${encodeURIComponent(selectedSymbol)}` : '';
let basketOf = {};
async function drawBots() {
  const data = await api('/api/bots');
  $('series').textContent = `${data.symbol} ${data.timeframe} · ${cfg.store} · ${when(data.now)} UTC`;
  if (!selected || !data.bots.some((b) => b.bot === selected)) selected = data.bots.length ? data.bots[0].bot : null;
  basketOf = Object.fromEntries(data.bots.map((b) => [b.bot, b.basket || null]));
  const symbols = basketOf[selected] ? basketOf[selected].symbols : [];
  if (!symbols.includes(selectedSymbol)) selectedSymbol = symbols.length ? symbols[0] : null;
  fill('bots', data.bots.map((b) => {
    const tr = row([b.bot, badge(b.status), when(b.last_bar), age(b.age_seconds), age(b.latency_seconds),
      money(b.equity), signed(b.drawdown, pct), b.basket ? basketText(b.basket) : held(b.position), b.release_id,
      actionButton(b.bot, b.halted)],
      [null, null, null, 'num', 'num', 'num', 'num', null, null, null]);
    tr.dataset.bot = b.bot;
    if (b.bot === selected) tr.className = 'selected';
    tr.addEventListener('click', () => { if (selected !== b.bot) selectedSymbol = null; selected = b.bot; refresh(); });
    return tr;
  }), 'no bot has state in this store yet: run `scalpbot replay` or `scalpbot trade`');
}
function killSwitch(b) {
  const s = document.createElement('span');
  s.appendChild(badge(b && b.halted ? 'halted' : 'trading'));
  if (b && b.halted) s.append(' ' + (b.halt_reason || ''));
  return s;
}
function counts(c) { const e = Object.entries(c || {}); return e.length ? e.map(([k, n]) => `${k} ${n}`).join(', ') : 'none'; }
function drawPortfolio(bot) {
  const k = basketOf[bot];
  $('portfolio').hidden = !k;
  if (!k) return;
  $('portfolio-name').textContent = bot;
  const b = k.budget;
  const d = k.denials;
  const cap = b && b.gross_cap != null ? ` of ${money(b.gross_cap)} cap` : ' (no cap)';
  const most = b && b.max_positions != null ? ` of ${b.max_positions} max` : ' (no max)';
  fill('portfolio-summary', [
    row(['equity (the accounts of its symbols)', money(k.equity)], [null, 'num']),
    row(['budget equity (realized)', b ? money(b.equity) : '-'], [null, 'num']),
    row(['gross exposure', b ? money(b.gross) + cap : '-'], [null, 'num']),
    row(['open positions', b ? b.positions + most : String(k.open_positions)], [null, 'num']),
    row(['kill switch', killSwitch(b)], [null, 'num']),
    row(['denials, last day: portfolio', d ? counts(d.by_reason.portfolio) : '-'], [null, 'num reason']),
    row(['denials, last day: risk checks', d ? counts(d.by_reason.risk) : '-'], [null, 'num reason']),
  ], '');
  fill('symbols', k.per_symbol.map((s) => {
    const c = s.cycle;
    const tr = row([s.symbol, s.halted ? badge('halted') : badge(c.bar ? 'trading' : 'idle'), held(s.position),
      money(s.reserved), when(s.last_bar), c.status, age(c.age_seconds), age(c.latency_seconds),
      signed(s.pnl, money), s.trades, s.wins],
      [null, null, null, 'num', null, null, 'num', 'num', 'num', 'num', 'num']);
    tr.dataset.symbol = s.symbol;
    if (s.symbol === selectedSymbol) tr.className = 'selected';
    tr.addEventListener('click', () => { selectedSymbol = s.symbol; refresh(); });
    return tr;
  }), 'no symbol has traded yet');
}
const layout = (extra) => Object.assign({margin: {l: 56, r: 12, t: 8, b: 32}, height: 240, showlegend: false,
  xaxis: {type: 'date'}, font: {size: 11}}, extra);
const plotConfig = {displaylogo: false, responsive: true, displayModeBar: false};
async function drawCharts(bot) {
  const [eq, px] = await Promise.all([api(`/api/bots/${bot}/equity?days=2${scope('&')}`),
    api(`/api/bots/${bot}/price?days=1${scope('&')}`)]);
  Plotly.react('equity-chart', [{x: eq.time, y: eq.equity, mode: 'lines', line: {color: '#2c7fb8', width: 1.5},
    hovertemplate: '%{x} UTC<br>equity %{y:,.2f}<extra></extra>'}], layout({yaxis: {tickformat: ',.0f'}}), plotConfig);
  Plotly.react('drawdown-chart', [{x: eq.time, y: eq.drawdown, mode: 'lines', fill: 'tozeroy',
    line: {color: '#d73027', width: 1}, hovertemplate: '%{x} UTC<br>drawdown %{y:.2%}<extra></extra>'}],
    layout({height: 160, yaxis: {tickformat: '.2%'}}), plotConfig);
  const m = eq.metrics || {};
  $('equity-note').textContent = `last 2 days · return ${pct(m.total_return)} · max drawdown ${pct(m.max_drawdown)} · ${m.trades ?? 0} closed trades`;
  const t = px.trades;
  const marks = (name, pick, xs, ys, symbol, color, size) => {
    const chosen = t.filter(pick);
    return {name, x: chosen.map(xs), y: chosen.map(ys), mode: 'markers', type: 'scatter',
      text: chosen.map((x) => `${x.side} · ${x.exit_reason} · pnl ${money(x.pnl)}`),
      hovertemplate: '%{text}<br>%{x} UTC @ %{y:,.8~g}<extra></extra>',
      marker: {symbol, color, size, line: {width: 1, color: '#333'}}};
  };
  Plotly.react('price-chart', [
    {type: 'candlestick', x: px.time, open: px.open, high: px.high, low: px.low, close: px.close,
     name: px.timeframe + ' candles', increasing: {line: {color: '#7fbf7b', width: 1}},
     decreasing: {line: {color: '#e7959b', width: 1}}},
    marks('long entry', (x) => x.side === 'long', (x) => x.entry_time, (x) => x.entry_price, 'triangle-up', '#1a9850', 9),
    marks('short entry', (x) => x.side === 'short', (x) => x.entry_time, (x) => x.entry_price, 'triangle-down', '#d73027', 9),
    marks('exit in profit', (x) => x.exit_reason !== 'open' && x.pnl > 0, (x) => x.exit_time, (x) => x.exit_price, 'x-thin-open', '#1a9850', 7),
    marks('exit at a loss', (x) => x.exit_reason !== 'open' && x.pnl <= 0, (x) => x.exit_time, (x) => x.exit_price, 'x-thin-open', '#b91c1c', 7),
  ], layout({height: 340, showlegend: true, legend: {orientation: 'h', y: 1.12},
    xaxis: {type: 'date', rangeslider: {visible: false}}, yaxis: {tickformat: ',~g'}}), plotConfig);
}
async function drawTables(bot) {
  const [ev, rel, drift, notes] = await Promise.all([
    api(`/api/bots/${bot}/events?kind=decision,denial&limit=15${scope('&')}`), api(`/api/releases${scope('?')}`),
    api(`/api/bots/${bot}/drift`), api(`/api/bots/${bot}/notifications`)]);
  fill('decisions', ev.map((e) => {
    const p = e.payload;
    const what = e.kind === 'denial' ? (p.message || p.reason || 'denied')
      : `p_long ${pct(p.p_long)} · p_short ${pct(p.p_short)} · size ${pct(p.size)}`;
    const side = p.side > 0 ? 'long' : p.side < 0 ? 'short' : 'flat';
    return row([when(e.time), e.kind, side, what], [null, e.kind === 'denial' ? 'neg' : null, null, 'reason']);
  }), 'no decision recorded yet');
  fill('releases', rel.releases.map((r) => row([r.release_id, r.current ? 'current' : '', r.origin, r.model_kind,
    r.passed_gate == null ? '-' : r.passed_gate ? 'promoted' : 'refused', pct(r.total_return),
    r.sharpe == null ? '-' : r.sharpe.toFixed(2), r.trades, r.reason],
    [null, null, null, null, null, 'num', 'num', 'num', 'reason'])), 'no release yet: run `scalpbot train`');
  const tot = drift.totals;
  fill('drift', tot ? [
    row(['live PnL', money(tot.live_pnl)], [null, 'num']), row(['simulated PnL', money(tot.simulated_pnl)], [null, 'num']),
    row(['live minus simulated', money(tot.live_pnl - tot.simulated_pnl)], [null, 'num']),
    row(['matched trades', tot.matched_trades], [null, 'num']), row(['missed trades', tot.missed_trades], [null, 'num']),
    row(['extra trades', tot.extra_trades], [null, 'num']),
    row(['mean entry slippage', money(tot.mean_entry_slippage)], [null, 'num'])]
    : [row([drift.note || 'no weekly report yet: run `scalpbot monitor`'])], '');
  $('drift-note').textContent = drift.report ? `from ${drift.report}` : '';
  fill('notifications', notes.map((n) => row([when(n.time), n.kind,
    n.payload.reason || n.payload.message || n.payload.cause || JSON.stringify(n.payload)], [null, null, 'reason'])),
    'nothing to report');
}
async function refresh() {
  try {
    await drawBots();
    if (selected) {
      $('bot-name').textContent = selected + (selectedSymbol ? ' · ' + selectedSymbol : '');
      drawPortfolio(selected);
      await Promise.all([drawCharts(selected), drawTables(selected)]);
    }
    $('updated').textContent = 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
  } catch (e) { say('refresh failed: ' + e.message, true); }
}
refresh();
setInterval(refresh, cfg.refresh_seconds * 1000);
"""

_BODY = """
<header><div><h1>scalpbot</h1><div class="meta" id="series"></div></div>
<div><label>Token <input id="token" type="password" autocomplete="off" placeholder="for halt / resume"></label>
<span id="updated" class="meta"></span></div></header>
<main>
<section class="wide"><h2>Bots</h2><div id="status"></div><table><thead><tr><th>bot</th><th>status</th>
<th>last bar (UTC)</th><th class="num">age</th><th class="num" title="from the bar's close to the end of its live cycle">latency</th><th class="num">equity</th><th class="num">drawdown</th>
<th>position</th><th>release</th><th></th></tr></thead><tbody id="bots"></tbody></table></section>
<section class="wide" id="portfolio" hidden><h2>Portfolio · <span id="portfolio-name"></span></h2>
<div class="muted">the bot's symbols share one risk budget; click a symbol for its charts and tables</div>
<table><tbody id="portfolio-summary"></tbody></table>
<table><thead><tr><th>symbol</th><th>status</th><th>position</th><th class="num">reserved</th>
<th>last bar (UTC)</th><th>cycle</th><th class="num">age</th><th class="num">latency</th><th class="num">PnL</th>
<th class="num">trades</th><th class="num">won</th></tr></thead><tbody id="symbols"></tbody></table></section>
<section><h2>Equity and drawdown · <span id="bot-name"></span></h2><div class="muted" id="equity-note"></div>
<div id="equity-chart" class="chart"></div><div id="drawdown-chart" class="chart"></div></section>
<section><h2>Price, entries and exits (last day)</h2><div id="price-chart" class="chart"></div></section>
<section><h2>Latest decisions and denials</h2><div class="scroll"><table><thead><tr><th>bar (UTC)</th>
<th>event</th><th>side</th><th>detail</th></tr></thead><tbody id="decisions"></tbody></table></div></section>
<section><h2>Live against simulation</h2><div class="muted" id="drift-note"></div><table>
<tbody id="drift"></tbody></table><h2>Notifications</h2><div class="scroll"><table><tbody id="notifications">
</tbody></table></div></section>
<section class="wide"><h2>Releases</h2><div class="scroll"><table><thead><tr><th>release</th><th></th>
<th>origin</th><th>model</th><th>gate</th><th class="num">return</th><th class="num">sharpe</th><th class="num">trades</th>
<th>reason</th></tr></thead><tbody id="releases"></tbody></table></div></section>
</main>
"""


def render_page(*, refresh_seconds: float, store: str) -> str:
    """Return the dashboard page; it reloads its data every ``refresh_seconds`` seconds."""
    config = json.dumps({"refresh_seconds": refresh_seconds, "store": store}).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<title>scalpbot · {html.escape(store)}</title><style>{_STYLE}</style>"
        '<script src="/assets/plotly.min.js"></script></head><body>'
        f'{_BODY}<script type="application/json" id="config">{config}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
