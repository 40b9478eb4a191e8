// saekit feature browser: plain JS, no network. Data arrive as <script> chunks that call
// saekitChunk(key, data) (file:// pages cannot fetch() JSON in Chromium).
// URL hash: #dict=NAME&open=LATENT&search=TEXT&sort=COL&desc=1 ; add &check=1 (and &follow=OTHER)
// to run the page's self-check, which writes its findings as JSON into <pre id="selfcheck">.
"use strict";
(function () {
  const CONFIG = JSON.parse(document.getElementById("saekit-config").textContent);
  const store = {};
  const waiting = {};
  const chunks = { requested: 0, loaded: 0, failed: [] };
  const errors = [];
  window.addEventListener("error", (e) => {
    const t = e.target;
    errors.push(t && t.src ? "could not load " + t.src : String(e.message || e));
  }, true);
  window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason)));
  const origError = console.error;
  console.error = function (...args) { errors.push(args.map(String).join(" ")); origError.apply(console, args); };

  window.saekitChunk = function (key, data) {
    store[key] = data;
    const w = waiting[key];
    if (w) chunks.loaded++;
    if (w) { delete waiting[key]; w.res.forEach((f) => f(data)); }
  };

  function load(path, key) {
    if (key in store) return Promise.resolve(store[key]);
    return new Promise((res, rej) => {
      if (waiting[key]) { waiting[key].res.push(res); waiting[key].rej.push(rej); return; }
      waiting[key] = { res: [res], rej: [rej] };
      chunks.requested++;
      const s = document.createElement("script");
      s.src = path;
      s.onload = () => {
        if (!(key in store)) errors.push("chunk " + path + " did not deliver " + key);
      };
      s.onerror = () => {
        chunks.failed.push(path);
        const w = waiting[key];
        delete waiting[key];
        if (w) w.rej.forEach((f) => f(new Error("could not load " + path)));
      };
      document.head.appendChild(s);
    });
  }

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const LABELS = { latent: "latent", density: "density", max: "max act", f1: "F1", precision: "P", recall: "R",
    entropy: "tok. entropy", abstractness: "abstract.", explanation: "explanation", top: "top tokens" };
  const NUMERIC = ["density", "max", "f1", "precision", "recall", "entropy", "abstractness"];
  const PAGE = 200;
  const state = { dict: null, meta: null, rows: [], filtered: [], sort: "density", desc: true, search: "",
    ranges: {}, shown: PAGE, open: null, routes: 0 };

  function params() {
    const p = {};
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      if (!part) continue;
      const i = part.indexOf("=");
      const k = decodeURIComponent(i < 0 ? part : part.slice(0, i));
      p[k] = i < 0 ? "1" : decodeURIComponent(part.slice(i + 1).replace(/\+/g, " "));
    }
    return p;
  }
  const hashFor = (dict, latent) => "#dict=" + encodeURIComponent(dict) + "&open=" + latent;
  const fmt = (v) => (v === null || v === undefined ? "–" : Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3)
    ? v.toExponential(2) : (+v.toPrecision(3)).toString());
  const base = (dict) => "data/" + encodeURIComponent(dict) + "/";

  async function openDict(name) {
    if (state.dict === name) return;
    const meta = await load(base(name) + "meta.js", name + "/meta");
    const parts = [];
    for (let c = 0; c < meta.index_chunks; c++) parts.push(load(base(name) + "index_" + c + ".js", name + "/index/" + c));
    parts.push(load(base(name) + "vocab.js", name + "/vocab"));
    const got = await Promise.all(parts);
    got.pop();
    state.dict = name; state.meta = meta; state.rows = [].concat(...got); state.open = null; state.ranges = {};
    for (const a of document.querySelectorAll("a.dict-link")) {
      a.classList.toggle("current", a.getAttribute("href") === "#dict=" + encodeURIComponent(name));
    }
    buildHead();
  }

  function col(name) { return state.meta.columns.indexOf(name); }

  function buildHead() {
    const thead = document.querySelector("#index thead");
    thead.textContent = "";
    const tr = el("tr"); const fr = el("tr", "filters");
    for (const name of state.meta.columns) {
      if (name === "abstractness" && !state.meta.has_abstractness) continue;
      const th = el("th", null, LABELS[name] || name);
      th.dataset.col = name;
      th.addEventListener("click", () => { state.desc = state.sort === name ? !state.desc : true; state.sort = name; render(); });
      tr.appendChild(th);
      const fd = el("td");
      if (NUMERIC.includes(name)) {
        for (const side of ["min", "max"]) {
          const inp = el("input"); inp.type = "number"; inp.step = "any"; inp.placeholder = side;
          inp.dataset.col = name; inp.dataset.side = side;
          inp.addEventListener("input", () => {
            const r = state.ranges[name] || (state.ranges[name] = {});
            r[side] = inp.value === "" ? null : Number(inp.value);
            state.shown = PAGE; render();
          });
          fd.appendChild(inp);
        }
      }
      fr.appendChild(fd);
    }
    thead.appendChild(tr); thead.appendChild(fr);
  }

  function applyFilters() {
    const q = state.search.trim().toLowerCase();
    const ie = col("explanation"), it = col("top");
    const ranges = Object.entries(state.ranges).map(([k, r]) => [col(k), r]);
    state.filtered = state.rows.filter((row) => {
      if (q && !((row[ie] || "").toLowerCase().includes(q) || (row[it] || "").toLowerCase().includes(q))) return false;
      for (const [i, r] of ranges) {
        const v = row[i];
        if ((r.min !== null && r.min !== undefined) && !(v !== null && v >= r.min)) return false;
        if ((r.max !== null && r.max !== undefined) && !(v !== null && v <= r.max)) return false;
      }
      return true;
    });
    const si = col(state.sort), sign = state.desc ? -1 : 1;
    state.filtered.sort((a, b) => {
      const x = a[si], y = b[si];
      if (x === y) return a[0] - b[0];
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * sign;
    });
  }

  function render() {
    applyFilters();
    for (const th of document.querySelectorAll("#index th")) {
      th.classList.toggle("sorted", th.dataset.col === state.sort);
      th.classList.toggle("asc", th.dataset.col === state.sort && !state.desc);
    }
    const tbody = document.querySelector("#index tbody");
    tbody.textContent = "";
    for (const row of state.filtered.slice(0, state.shown)) {
      const tr = el("tr", "row" + (row[0] === state.open ? " open" : ""));
      tr.dataset.latent = row[0];
      state.meta.columns.forEach((name, i) => {
        if (name === "abstractness" && !state.meta.has_abstractness) return;
        const text = NUMERIC.includes(name) ? fmt(row[i]) : row[i];
        tr.appendChild(el("td", name === "explanation" || name === "top" ? "text" : null, text));
      });
      tr.addEventListener("click", () => { location.hash = hashFor(state.dict, row[0]) + searchPart(); });
      tbody.appendChild(tr);
    }
    $("more").hidden = state.filtered.length <= state.shown;
    $("status").textContent = state.filtered.length + " of " + state.rows.length + " latents of " + state.dict +
      " (" + state.meta.hook + ", " + state.meta.n_tokens + " tokens)";
  }
  const searchPart = () => (state.search ? "&search=" + encodeURIComponent(state.search) : "");

  function tokenText(vocab, t) {
    const s = vocab[String(t)];
    return s === undefined ? "<" + t + ">" : s.replace(/\n/g, "⏎");
  }

  function context(c, vmax, vocab, label) {
    const div = el("div", "ctx");
    div.appendChild(el("span", "label", label));
    c.tokens.forEach((t, j) => {
      const a = c.acts[j] || 0;
      const s = el("span", "tok" + (a > 0 ? " hl" : "") + (j === c.focus ? " max" : ""), tokenText(vocab, t));
      if (a > 0) s.style.background = "rgba(255,140,0," + Math.min(1, 0.12 + 0.88 * a / (vmax || 1)).toFixed(3) + ")";
      s.title = "activation " + fmt(a);
      div.appendChild(s);
    });
    return div;
  }

  function histogram(h) {
    const W = 360, H = 90, n = h.counts.length, top = Math.max(1, ...h.counts);
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("width", W); svg.setAttribute("height", H + 14); svg.setAttribute("class", "hist");
    h.counts.forEach((c, i) => {
      const r = document.createElementNS(ns, "rect");
      const bh = c ? Math.max(1, (H * c) / top) : 0;
      r.setAttribute("x", (i * W) / n); r.setAttribute("width", W / n - 1);
      r.setAttribute("y", H - bh); r.setAttribute("height", bh);
      const t = document.createElementNS(ns, "title"); t.textContent = c + " tokens";
      r.appendChild(t); svg.appendChild(r);
    });
    for (const [x, s, anchor] of [[0, "0", "start"], [W, fmt(h.edges_top), "end"]]) {
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", x); t.setAttribute("y", H + 12); t.setAttribute("text-anchor", anchor); t.textContent = s;
      svg.appendChild(t);
    }
    return svg;
  }

  function link(dict, latent, text, cls) {
    const a = el("a", "latent-link" + (cls ? " " + cls : ""), text);
    a.href = hashFor(dict, latent); a.dataset.dict = dict; a.dataset.latent = latent;
    return a;
  }

  async function showLatent(i) {
    const m = state.meta, c = Math.floor(i / m.latent_chunk);
    const data = await load(base(state.dict) + "latents_" + c + ".js", state.dict + "/latents/" + c);
    const d = data[i - c * m.latent_chunk];
    const vocab = store[state.dict + "/vocab"];
    const pane = $("latent-pane");
    pane.textContent = "";
    pane.appendChild(el("h2", null, state.dict + " · latent " + i)).id = "latent-title";
    const st = el("div", "stats");
    for (const [k, v] of [["fires", d.count + " tokens"], ["density", fmt(d.density)], ["mean", fmt(d.mean)],
      ["max", fmt(d.max)], ["token entropy", fmt(d.entropy) + " bits"]]) st.appendChild(el("span", null, k + ": " + v));
    pane.appendChild(st);
    const e = d.explanation || {};
    pane.appendChild(el("h3", null, "n-gram explanation"));
    pane.appendChild(el("div", "expl", e.explanation || "(none)"));
    pane.appendChild(el("div", "muted", "held-out precision " + fmt(e.precision) + " · recall " + fmt(e.recall) +
      " · F1 " + fmt(e.f1)));
    pane.appendChild(el("h3", null, "top activations"));
    if (!d.top.length) pane.appendChild(el("div", "muted", "never fired on these tokens"));
    for (const ctx of d.top) pane.appendChild(context(ctx, d.max, vocab, fmt(ctx.value)));
    pane.appendChild(el("h3", null, "sampled across activation quantiles"));
    for (const ctx of d.samples) pane.appendChild(context(ctx, d.max, vocab, "q" + fmt(ctx.quantile) + " " + fmt(ctx.value)));
    pane.appendChild(el("h3", null, "activation histogram (firing tokens)"));
    pane.appendChild(histogram(d.hist));
    if (d.logits && d.logits.up) {
      pane.appendChild(el("h3", null, "logit effects (W_dec · W_U)"));
      const cols = el("div", "cols");
      for (const [title, list] of [["promoted", d.logits.up], ["suppressed", d.logits.down]]) {
        const box = el("div"); box.appendChild(el("b", null, title));
        const ol = el("ol", "logits " + title);
        for (const [t, v] of list) ol.appendChild(el("li", null, JSON.stringify(tokenText(vocab, t)) + "  " + fmt(v)));
        box.appendChild(ol); cols.appendChild(box);
      }
      pane.appendChild(cols);
    }
    pane.appendChild(el("h3", null, "nearest latents (decoder cosine)"));
    const nb = el("div");
    for (const [j, cs] of d.neighbours || []) { nb.appendChild(link(state.dict, j, "#" + j + " (" + fmt(cs) + ")", "neighbour")); nb.appendChild(document.createTextNode("  ")); }
    pane.appendChild(nb);
    const names = Object.keys(d.matches || {});
    if (names.length) {
      pane.appendChild(el("h3", null, "matched latent in the other dictionaries (decoder cosine)"));
      for (const name of names) {
        const [j, cs] = d.matches[name];
        const row = el("div");
        row.appendChild(link(name, j, name + " · latent " + j, "match"));
        row.appendChild(el("span", "muted", "  cos " + fmt(cs)));
        pane.appendChild(row);
      }
    }
    state.open = i;
    for (const tr of document.querySelectorAll("#index tr.row")) tr.classList.toggle("open", Number(tr.dataset.latent) === i);
  }

  async function route() {
    const p = params();
    const names = CONFIG.dictionaries.map((d) => d.name);
    const dict = names.includes(p.dict) ? p.dict : names[0];
    await openDict(dict);
    if (p.search !== undefined && p.search !== state.search) { state.search = p.search; $("search").value = p.search; state.shown = PAGE; }
    if (p.sort && state.meta.columns.includes(p.sort)) { state.sort = p.sort; state.desc = p.desc !== "0"; }
    render();
    if (p.open !== undefined && p.open !== "" && Number(p.open) >= 0 && Number(p.open) < state.meta.n_latents) {
      await showLatent(Number(p.open));
    }
    state.routes++;
  }

  const panelFacts = () => {
    const pane = $("latent-pane"), first = pane.querySelector(".ctx .tok.max");
    return { dict: state.dict, open: state.open, title: ($("latent-title") || {}).textContent || null,
      contexts: pane.querySelectorAll(".ctx").length, highlighted: pane.querySelectorAll(".ctx .tok.hl").length,
      max_token: first ? first.textContent : null, histogram_bars: pane.querySelectorAll(".hist rect").length,
      logits: pane.querySelectorAll("ol.logits li").length };
  };

  async function selfCheck(p) {
    const r = { search: state.search, hits: state.filtered.slice(0, 20).map((row) => row[0]), n_rows: state.rows.length,
      table_rows: document.querySelectorAll("#index tbody tr").length, panel: panelFacts() };
    if (p.follow) {
      const a = $("latent-pane").querySelector('a.match[data-dict="' + p.follow + '"]');
      r.follow_href = a ? a.getAttribute("href") : null;
      if (a) {
        const before = state.routes;
        a.click();
        for (let k = 0; k < 200 && state.routes === before; k++) await new Promise((res) => setTimeout(res, 10));
        r.after = panelFacts();
      }
    }
    r.chunks = chunks;
    r.errors = errors;
    const pre = $("selfcheck");
    pre.textContent = JSON.stringify(r);
    pre.dataset.done = "1";
  }

  let routing = Promise.resolve();
  const go = () => (routing = routing.then(route).catch((e) => { errors.push(String(e)); $("status").textContent = String(e); }));
  window.addEventListener("hashchange", go);
  $("search").addEventListener("input", (ev) => { state.search = ev.target.value; state.shown = PAGE; render(); });
  $("more").addEventListener("click", () => { state.shown += PAGE; render(); });
  go().then(() => { const p = params(); if (p.check) return selfCheck(p); });
})();
