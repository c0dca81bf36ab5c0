"use strict";
// tickloop dashboard: renders the snapshot the engine pushes over /ws every second.
// No libraries and nothing fetched from elsewhere: plain DOM and inline SVG.
(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  let token = params.get("token") || sessionStorage.getItem("tickloop-token") || "";
  if (params.has("token")) {
    // keep the token out of the address bar, the history and screenshots
    sessionStorage.setItem("tickloop-token", token);
    history.replaceState(null, "", location.pathname);
  }
  const selected = new Set();
  const seenCoins = new Set();
  let received = 0;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }
  function svgEl(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  const $ = (id) => document.getElementById(id);

  function fmtPrice(v) {
    if (v === null || v === undefined) return "–";
    const abs = Math.abs(v);
    const min = abs >= 1000 ? 2 : abs >= 1 ? 4 : 6;
    return v.toLocaleString("en-US", { minimumFractionDigits: min, maximumFractionDigits: 8 });
  }
  function fmtNum(v, digits) {
    if (v === null || v === undefined) return "–";
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function fmtSigned(v, digits) {
    if (v === null || v === undefined) return "–";
    return (v > 0 ? "+" : "") + fmtNum(v, digits);
  }
  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "–";
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function fmtClock(ms) {
    return ms === null || ms === undefined ? "–" : new Date(ms).toISOString().slice(11, 19);
  }
  function signClass(v) { return v > 0 ? "pos" : v < 0 ? "neg" : ""; }

  // -- header ----------------------------------------------------------------------------------
  function renderHeader(snap) {
    $("mode").textContent = `${snap.mode} · ${snap.market} · ${snap.strategy || "no strategy"}`;
    const state = snap.trading ? snap.trading.state : null;
    const badge = $("trading-state");
    badge.textContent = state ? `trading ${state}` : "not trading";
    badge.className = "pill state" + (state ? ` state-${state}` : "");
    $("exchange-time").textContent = fmtTime(snap.ts_ms);
    $("seq").textContent = String(snap.seq);
    document.body.dataset.seq = String(snap.seq);
    document.body.dataset.ts = String(snap.ts_ms);
  }

  // -- coins -----------------------------------------------------------------------------------
  function coinRow(coin) {
    const tr = el("tr", { "data-symbol": coin.symbol, class: "coin" });
    tr.append(el("td", { class: "sym" }, coin.symbol), el("td", { class: "num price" }),
      el("td", { class: "move" }), el("td", { class: "bar-cell" }), el("td", { class: "num conf" }),
      el("td", { class: "status" }));
    return tr;
  }
  function renderBar(cell, coin) {
    cell.textContent = "";
    const bar = el("div", { class: "bar" });
    if (coin.confidence === null) {
      bar.classList.add("empty");
      bar.title = "no confidence yet";
    } else {
      const [lo, hi] = coin.range;
      const pct = (v) => Math.max(0, Math.min(100, ((v - lo) / (hi - lo)) * 100));
      const fill = el("div", { class: "fill" + (coin.above ? " hot" : "") });
      fill.style.width = pct(coin.confidence).toFixed(2) + "%";
      const notch = el("div", { class: "notch", title: `threshold ${coin.threshold}` });
      notch.style.left = pct(coin.threshold).toFixed(2) + "%";
      bar.append(fill, notch);
    }
    cell.append(bar);
  }
  function renderCoins(coins) {
    const body = document.querySelector("#coins tbody");
    for (const coin of coins) {
      let tr = body.querySelector(`tr[data-symbol="${coin.symbol}"]`);
      if (!tr) { tr = coinRow(coin); body.append(tr); }
      const price = tr.querySelector(".price");
      price.textContent = fmtPrice(coin.price);
      price.dataset.price = coin.price === null ? "" : String(coin.price);
      const move = tr.querySelector(".move");
      move.textContent = coin.last_move === "up" ? "▲ up" : coin.last_move === "down" ? "▼ down" : "–";
      move.className = "move" + (coin.last_move ? ` move-${coin.last_move}` : "");
      move.title = coin.last_move_ts_ms ? `at ${fmtTime(coin.last_move_ts_ms)}` : "";
      renderBar(tr.querySelector(".bar-cell"), coin);
      const conf = tr.querySelector(".conf");
      conf.textContent = coin.confidence === null ? "–"
        : `${fmtNum(coin.confidence, 3)} / ${fmtNum(coin.threshold, 3)}`;
      conf.className = "num conf" + (coin.above ? " hot-text" : "");
      conf.dataset.confidence = coin.confidence === null ? "" : String(coin.confidence);
      conf.dataset.threshold = coin.threshold === null ? "" : String(coin.threshold);
      const status = tr.querySelector(".status");
      status.textContent = coin.status || `${coin.source} at ${fmtClock(coin.confidence_ts_ms)}`;
      tr.dataset.bookValid = String(coin.book_valid);
    }
  }

  // -- trajectories ----------------------------------------------------------------------------
  function renderPicker(coins) {
    const picker = $("coin-picker");
    for (const coin of coins) {
      if (seenCoins.has(coin.symbol)) continue;
      seenCoins.add(coin.symbol);
      selected.add(coin.symbol);
      const box = el("input", { type: "checkbox", value: coin.symbol });
      box.checked = true;
      box.addEventListener("change", () => {
        if (box.checked) selected.add(coin.symbol); else selected.delete(coin.symbol);
        if (lastSnap) renderTrajectories(lastSnap.coins);
      });
      const label = el("label");
      label.append(box, document.createTextNode(" " + coin.symbol));
      picker.append(label);
    }
  }
  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (lo === hi) { lo -= Math.abs(lo) * 1e-4 || 1; hi += Math.abs(hi) * 1e-4 || 1; }
    return [lo, hi];
  }
  function trajectory(coin) {
    const W = 300, H = 220, L = 34, R = 8, T = 8, B = 22;
    const box = el("div", { class: "traj", "data-symbol": coin.symbol });
    box.append(el("h4", {}, `${coin.symbol}  ${fmtPrice(coin.price)}`));
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}` });
    box.append(svg);
    const points = coin.history.filter((p) => p[2] !== null);
    svg.append(svgEl("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "#fafbfc", stroke: "#e1e4ea" }));
    if (points.length === 0) {
      // no confidence to plot: the price over time, and the honest reason
      const hist = coin.history;
      if (hist.length > 1) {
        const [t0, t1] = extent(hist.map((p) => p[0]));
        const [p0, p1] = extent(hist.map((p) => p[1]));
        const xs = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
        const ys = (p) => H - B - ((p - p0) / (p1 - p0)) * (H - T - B);
        const d = hist.map((p) => `${xs(p[0]).toFixed(1)},${ys(p[1]).toFixed(1)}`).join(" ");
        svg.append(svgEl("polyline", { points: d, fill: "none", stroke: "#4a78b5", "stroke-width": 1.2 }));
        svg.append(svgEl("text", { x: 2, y: T + 8 }, fmtPrice(p1)), svgEl("text", { x: 2, y: H - B }, fmtPrice(p0)));
      }
      box.append(el("div", { class: "note" }, "price over time; no confidence: " + (coin.status || "")));
      return box;
    }
    const [lo, hi] = coin.range;
    const [p0, p1] = extent(points.map((p) => p[1]));
    const xs = (p) => L + 4 + ((p - p0) / (p1 - p0)) * (W - L - R - 8);
    const ys = (c) => H - B - ((c - lo) / (hi - lo)) * (H - T - B);
    const thrY = ys(coin.threshold);
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: thrY, y2: thrY, stroke: "#dc143c", "stroke-dasharray": "4 3", "stroke-width": 1.2 }));
    svg.append(svgEl("text", { x: 2, y: thrY + 3 }, fmtNum(coin.threshold, 2)));
    svg.append(svgEl("text", { x: 2, y: T + 8 }, fmtNum(hi, 1)), svgEl("text", { x: 2, y: H - B }, fmtNum(lo, 1)));
    svg.append(svgEl("text", { x: L, y: H - 6 }, fmtPrice(p0)));
    svg.append(svgEl("text", { x: W - R, y: H - 6, "text-anchor": "end" }, fmtPrice(p1)));
    const n = points.length;
    points.forEach((p, i) => {
      const last = i === n - 1;
      const hot = p[2] >= coin.threshold;
      svg.append(svgEl("circle", {
        cx: xs(p[1]).toFixed(1), cy: ys(p[2]).toFixed(1), r: last ? 4.5 : 2.2,
        fill: hot ? "#dc143c" : "#4a78b5", "fill-opacity": last ? 1 : (0.12 + 0.75 * (i / n)).toFixed(2),
        stroke: last ? "#1d2330" : "none",
      }));
    });
    box.append(el("div", { class: "note" }, `x: price · y: ${coin.source} confidence · ${n} dots`));
    return box;
  }
  function renderTrajectories(coins) {
    const holder = $("trajectories");
    holder.textContent = "";
    for (const coin of coins) if (selected.has(coin.symbol)) holder.append(trajectory(coin));
  }

  // -- portfolio -------------------------------------------------------------------------------
  function figure(label, value, cls) {
    const div = el("div");
    div.append(el("span", {}, label), el("b", { class: cls || "" }, value));
    return div;
  }
  function renderPortfolio(t) {
    const figures = $("figures");
    figures.textContent = "";
    const curve = $("equity");
    curve.textContent = "";
    const positions = document.querySelector("#positions tbody");
    positions.textContent = "";
    if (!t) {
      figures.append(figure("trading", "off in this mode"));
      return;
    }
    figures.append(
      figure(`equity (${t.asset})`, fmtNum(t.equity, 2)),
      figure("return", fmtSigned(t.return_pct, 3) + " %", signClass(t.return_pct)),
      figure("drawdown", fmtNum(t.drawdown_pct, 3) + " %"),
      figure("realised PnL", fmtSigned(t.realized_pnl, 2), signClass(t.realized_pnl)),
      figure("unrealised PnL", fmtSigned(t.unrealized_pnl, 2), signClass(t.unrealized_pnl)),
      figure("fees", fmtNum(t.fees, 2)),
      figure("orders sent / fills", `${t.orders.submitted} / ${t.orders.fills}`),
      figure("denied", String(t.orders.denied)),
      figure("closed trades", String(t.closed_trades)),
    );
    const pts = t.equity_curve.filter((p) => p[1] !== null);
    if (pts.length > 1) {
      const [t0, t1] = extent(pts.map((p) => p[0]));
      const [e0, e1] = extent(pts.map((p) => p[1]));
      const d = pts.map((p) => `${(((p[0] - t0) / (t1 - t0)) * 396 + 2).toFixed(1)},${(94 - ((p[1] - e0) / (e1 - e0)) * 78).toFixed(1)}`).join(" ");
      curve.append(svgEl("polyline", { points: d, fill: "none", stroke: "#4a78b5", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke" }));
      curve.append(svgEl("text", { x: 4, y: 12 }, fmtNum(e1, 2)), svgEl("text", { x: 4, y: 107 }, fmtNum(e0, 2)),
        svgEl("text", { x: 396, y: 107, "text-anchor": "end" }, `${fmtClock(t0)} – ${fmtClock(t1)} UTC`));
    } else {
      curve.append(svgEl("text", { x: 8, y: 58 }, pts.length ? `equity ${fmtNum(pts[0][1], 2)}: one sample so far` : "no equity samples yet"));
    }
    if (t.positions.length === 0) {
      const tr = el("tr", { class: "empty-row" });
      tr.append(el("td", { colspan: "5" }, "flat"));
      positions.append(tr);
    }
    for (const p of t.positions) {
      const tr = el("tr", { "data-symbol": p.symbol });
      tr.append(el("td", { class: "sym" }, p.symbol), el("td", { class: "num" }, p.qty),
        el("td", { class: "num" }, fmtPrice(Number(p.avg_price))),
        el("td", { class: "num" }, p.mark === null ? "–" : fmtPrice(Number(p.mark))),
        el("td", { class: "num " + signClass(p.unrealized_pnl) }, fmtSigned(p.unrealized_pnl, 2)));
      positions.append(tr);
    }
  }
  function renderTrades(t) {
    const body = document.querySelector("#trades tbody");
    body.textContent = "";
    const trades = t ? t.recent_trades : [];
    if (trades.length === 0) {
      const tr = el("tr", { class: "empty-row" });
      tr.append(el("td", { colspan: "6" }, t ? "no closed trades yet" : "not trading"));
      body.append(tr);
    }
    for (const x of trades) {
      const tr = el("tr");
      tr.append(el("td", {}, fmtClock(x.closed_ms)), el("td", { class: "sym" }, x.symbol),
        el("td", {}, x.direction === "BUY" ? "long" : "short"),
        el("td", { class: "num" }, fmtPrice(Number(x.entry_price))),
        el("td", { class: "num" }, fmtPrice(Number(x.exit_price))),
        el("td", { class: "num " + signClass(x.pnl) }, fmtSigned(x.pnl, 2)));
      body.append(tr);
    }
  }
  function renderAlerts(alerts) {
    const list = $("alerts");
    list.textContent = "";
    if (alerts.length === 0) list.append(el("li", { class: "status" }, "no alerts"));
    for (const a of alerts) {
      const li = el("li");
      li.append(el("span", { class: `kind k-${a.kind}` }, a.kind),
        document.createTextNode(` ${fmtClock(a.ts_ms)} ${a.symbol ? a.symbol + " " : ""}${a.text}`));
      list.append(li);
    }
  }

  let lastSnap = null;
  function render(snap) {
    lastSnap = snap;
    received += 1;
    document.body.dataset.received = String(received);
    renderHeader(snap);
    renderCoins(snap.coins);
    renderPicker(snap.coins);
    renderTrajectories(snap.coins);
    renderPortfolio(snap.trading);
    renderTrades(snap.trading);
    renderAlerts(snap.alerts);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = token ? "?token=" + encodeURIComponent(token) : "";
    const ws = new WebSocket(`${scheme}://${location.host}/ws${query}`);
    const conn = $("connection");
    ws.onopen = () => { conn.textContent = "live"; conn.className = "pill conn-up"; };
    ws.onmessage = (event) => {
      try { render(JSON.parse(event.data)); } catch (err) { console.error(err); }
    };
    ws.onclose = () => {
      conn.textContent = "disconnected, retrying"; conn.className = "pill conn-down";
      setTimeout(connect, 2000);
    };
  }
  connect();
})();
