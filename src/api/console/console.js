// The souk admin console. Plain script, no build step, no outside assets.
// Every action is a call to the documented API with the bearer token of a
// session this page signed in; the token lives in sessionStorage only.
// Text from the server is always set with textContent, never as HTML.
"use strict";

const TOKEN_KEY = "souk.admin.token";
const POLL_MS = 2000;
// Points of the client-side histories (one per poll): ten minutes.
const HISTORY_MAX = 300;
// Pages of disputes read at most (100 each, newest first); past it the page
// says it shows only the newest ones.
const DISPUTE_PAGES_MAX = 20;
// Message lists of disputed orders fetched at once.
const MESSAGE_LOADS_MAX = 4;
// Ids per `GET /users?ids=` (the route's limit).
const NAME_IDS_MAX = 100;
// Usernames remembered at most; past it the memory starts again.
const NAMES_MAX = 10000;

const $ = (id) => document.getElementById(id);

// Bumped at every sign-in and sign-out: an answer to an older session's
// request is dropped, so nothing of it reaches the screen afterwards.
let epoch = 0;
// The next poll, set once the previous one has finished (never two at once).
let pollTimer = null;
let me = null;

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// One API call. 401 ends the session on this page (back to the sign-in
// form, every panel cleared); other refusals throw the server's message.
async function api(method, path, body, options = {}) {
  const started = epoch;
  const headers = {};
  const bearer = options.token || token();
  if (bearer) headers["Authorization"] = "Bearer " + bearer;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (options.idempotencyKey) headers["Idempotency-Key"] = options.idempotencyKey;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "network", "the server could not be reached");
  }
  if (started !== epoch) throw new ApiError(0, "stale", "signed out meanwhile");
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
  }
  // Again after the body: a late answer is not drawn, and a late 401 or
  // 403 cannot end a newer session.
  if (started !== epoch) throw new ApiError(0, "stale", "signed out meanwhile");
  if (response.status === 401 && !options.token && !options.noSessionEnd) {
    endSession("Your session has ended: sign in again.");
    throw new ApiError(401, "unauthenticated", "not signed in");
  }
  if (response.status === 403 && !options.token && path.startsWith("/api/v1/admin/")) {
    // The role was taken away meanwhile: refused like a non-admin's sign-in.
    const bearer = token();
    endSession("");
    await refuseAndEnd("this account is no longer an administrator.", bearer);
    throw new ApiError(403, "stale", "no longer an administrator");
  }
  if (!response.ok) {
    const error = data && data.error;
    throw new ApiError(
      response.status,
      error ? error.code : "http_" + response.status,
      error ? error.message : "the server answered " + response.status,
    );
  }
  return data;
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- DOM helpers ----------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function row(...cells) {
  return el("tr", {}, ...cells.map((c) => el("td", {}, c)));
}

function say(id, text, kind) {
  const node = $(id);
  node.textContent = text || "";
  node.className = "message" + (kind ? " " + kind : "");
}

function errorText(e) {
  return e instanceof ApiError ? e.message + " (" + e.status + " " + e.code + ")" : String(e);
}

// A refusal in a panel. A 401 has already sent the page back to the
// sign-in form (with its own message), and a stale answer belongs to an
// older session: neither is shown here.
function sayError(id, e) {
  if (e instanceof ApiError && (e.code === "stale" || e.status === 401)) return;
  say(id, "Refused: " + errorText(e), "error");
}

// Ends the session of `bearer` (made by this page for an account that may
// not use it) and says so on the sign-in form, or says that ending it failed.
async function refuseAndEnd(why, bearer) {
  let ended = "The session was ended.";
  if (bearer) {
    try {
      await api("DELETE", "/api/v1/sessions/current", undefined, { token: bearer });
    } catch (e) {
      ended = "Ending the session failed: " + errorText(e) + ".";
    }
  }
  say("signin-message", "Refused: " + why + " " + ended, "error");
}

function when(rfc3339) {
  if (!rfc3339) return "–";
  const d = new Date(rfc3339);
  return isNaN(d) ? rfc3339 : d.toLocaleString();
}

function fmt(n, digits = 1) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits });
}

// ---- Sign in and out ------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const username = $("signin-username").value.trim();
  const password = $("signin-password").value;
  $("signin-submit").disabled = true;
  say("signin-message", "signing in…");
  try {
    const session = await api("POST", "/api/v1/sessions", { username, password }, { noSessionEnd: true });
    if (!session || !session.token || !session.user) {
      throw new Error("the server answered without a session");
    }
    if (session.user.role !== "admin") {
      // Not an admin: end the session just made, and refuse.
      $("signin-password").value = "";
      await refuseAndEnd("`" + username + "` is not an administrator.", session.token);
      return;
    }
    $("signin-password").value = "";
    sessionStorage.setItem(TOKEN_KEY, session.token);
    say("signin-message", "");
    await start();
  } catch (e) {
    // Every refusal of the sign-in shows, a wrong password (401) too.
    say("signin-message", "Refused: " + errorText(e), "error");
  } finally {
    $("signin-submit").disabled = false;
  }
}

async function signOut() {
  const bearer = token();
  endSession("Signed out.");
  if (bearer) {
    await api("DELETE", "/api/v1/sessions/current", undefined, { token: bearer }).catch(() => {});
  }
}

// Back to the sign-in form with nothing of the session left on screen.
function endSession(message) {
  epoch += 1;
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
  clearPanels();
  $("console").hidden = true;
  $("tabs").hidden = true;
  $("sign-out").hidden = true;
  $("whoami").textContent = "";
  $("signin-username").value = "";
  $("signin-password").value = "";
  $("signin").hidden = false;
  say("signin-message", message || "", message ? "ok" : "");
}

function clearPanels() {
  for (const id of [
    "alerts", "user-results", "ud-facts", "ud-balances", "ud-entries", "ud-orders", "ud-title",
    "dispute-orders", "dispute-escrows", "listing-results", "fee-balances", "fw-currency", "ledger-result",
  ]) {
    $(id).textContent = "";
  }
  for (const id of ["users-message", "ud-message", "disputes-message", "listings-message", "fees-message", "ledger-message"]) {
    say(id, "");
  }
  for (const input of document.querySelectorAll("main input")) input.value = "";
  for (const tile of document.querySelectorAll(".tile .value")) tile.textContent = "–";
  for (const span of document.querySelectorAll(".window-s")) span.textContent = "–";
  $("overview-status").textContent = "waiting for the first figures…";
  $("user-detail").hidden = true;
  openUser = null;
  names.clear();
  samples.length = 0;
  lastCaches = null;
  for (const chart of Object.values(charts)) chart.set([]);
  showTab("overview");
}

async function start() {
  epoch += 1;
  let user;
  try {
    user = (await api("GET", "/api/v1/users/me")).user;
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) sayError("signin-message", e);
    return;
  }
  if (user.role !== "admin") {
    const bearer = token();
    endSession("");
    await refuseAndEnd("`" + user.username + "` is not an administrator.", bearer);
    return;
  }
  me = user;
  $("signin").hidden = true;
  $("console").hidden = false;
  $("tabs").hidden = false;
  $("sign-out").hidden = false;
  $("whoami").textContent = "signed in as " + user.username;
  pollLoop(epoch);
}

// Polls the dashboard, then waits POLL_MS after each answer: a slow server
// never has two polls of this page waiting at once. Stops at sign-out.
async function pollLoop(session) {
  pollTimer = null;
  await poll();
  if (session !== epoch) return;
  pollTimer = setTimeout(() => pollLoop(session), POLL_MS);
}

// ---- Tabs -----------------------------------------------------------------

function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const section of document.querySelectorAll("main .tab")) {
    section.hidden = section.id !== "tab-" + name;
  }
  if (!me) return;
  if (name === "overview") resizeCharts();
  if (name === "disputes") loadDisputes();
  if (name === "fees") loadFees();
}

// ---- Charts ---------------------------------------------------------------

// A line chart on a canvas: time on x (HH:MM:SS), the unit on y, a legend
// (colour and dash per series) and the values under the pointer.
class Chart {
  constructor(canvas, unit, series) {
    this.canvas = canvas;
    this.unit = unit;
    this.series = series;
    this.points = [];
    this.hover = null;
    canvas.addEventListener("mousemove", (e) => this.onHover(e));
    canvas.addEventListener("mouseleave", () => {
      this.hover = null;
      $("tooltip").hidden = true;
      this.draw();
    });
  }

  set(points) {
    this.points = points;
    // How many points are drawn, for a test to read.
    this.canvas.dataset.points = String(points.length);
    this.draw();
  }

  layout() {
    const rect = this.canvas.getBoundingClientRect();
    return { w: rect.width, h: rect.height, right: 12, top: 22, bottom: 22 };
  }

  draw() {
    const c = this.canvas;
    const { w, h, right, top, bottom } = this.layout();
    if (w === 0 || h === 0) return;
    const ratio = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
      c.width = Math.round(w * ratio);
      c.height = Math.round(h * ratio);
    }
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    g.font = "11px system-ui, sans-serif";
    const pts = this.points;
    let peak = 0;
    for (const p of pts) for (const v of p.v) if (v > peak) peak = v;
    // Four steps of a round size; labels as precise as the step needs.
    const step = niceCeil(peak / 4);
    const digits = step < 1 ? 2 : Number.isInteger(step) ? 0 : 1;
    const label = (v) => fmt(v, digits) + " " + this.unit;
    let widest = 0;
    for (let i = 0; i <= 4; i++) widest = Math.max(widest, g.measureText(label(step * i)).width);
    const left = Math.ceil(widest) + 10;
    const plotW = w - left - right;
    const plotH = h - top - bottom;
    const t0 = pts.length ? pts[0].t : Date.now() - 60000;
    const t1 = pts.length > 1 ? pts[pts.length - 1].t : t0 + 60000;
    const x = (t) => left + ((t - t0) / Math.max(1, t1 - t0)) * plotW;
    const y = (v) => top + plotH - (v / (step * 4)) * plotH;
    this.scale = { x, t0, t1, left, plotW };
    const box = { w, left, right, top, plotW, plotH };
    this.drawAxes(g, box, step, label, x, y);
    this.drawLines(g, x, y);
    this.drawLegend(g, left);
    if (this.hover !== null && pts[this.hover]) {
      const px = Math.round(x(pts[this.hover].t)) + 0.5;
      g.strokeStyle = "#dde3ea";
      g.beginPath();
      g.moveTo(px, top);
      g.lineTo(px, top + plotH);
      g.stroke();
    }
  }

  // Grid lines with the value and unit, and times along the bottom.
  drawAxes(g, box, step, label, x, y) {
    const { w, left, right, top, plotW, plotH } = box;
    g.strokeStyle = "#2a3542";
    g.fillStyle = "#8a9bb0";
    g.lineWidth = 1;
    g.setLineDash([]);
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const yy = Math.round(y(step * i)) + 0.5;
      g.beginPath();
      g.moveTo(left, yy);
      g.lineTo(w - right, yy);
      g.stroke();
      g.fillText(label(step * i), left - 4, yy);
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    const { t0, t1 } = this.scale;
    let previous = "";
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      const text = clock(t);
      if (text === previous) continue;
      previous = text;
      g.fillText(text, Math.min(Math.max(x(t), left + 24), w - right - 24), top + plotH + 5);
    }
    if (!this.points.length) {
      g.textBaseline = "middle";
      g.fillText("no data yet", left + plotW / 2, top + plotH / 2);
    }
  }

  drawLines(g, x, y) {
    this.series.forEach((s, i) => {
      g.strokeStyle = s.color;
      g.lineWidth = 1.6;
      g.setLineDash(s.dash || []);
      g.beginPath();
      this.points.forEach((p, k) => {
        const px = x(p.t);
        const py = y(p.v[i] || 0);
        if (k === 0) g.moveTo(px, py);
        else g.lineTo(px, py);
      });
      g.stroke();
    });
    g.setLineDash([]);
  }

  // A sample of each line (colour and dash) and its name.
  drawLegend(g, left) {
    g.textAlign = "left";
    g.textBaseline = "middle";
    g.lineWidth = 1.6;
    let lx = left;
    for (const s of this.series) {
      g.strokeStyle = s.color;
      g.setLineDash(s.dash || []);
      g.beginPath();
      g.moveTo(lx, 9);
      g.lineTo(lx + 22, 9);
      g.stroke();
      g.fillStyle = "#dde3ea";
      g.fillText(s.name, lx + 26, 9);
      lx += 34 + g.measureText(s.name).width;
    }
    g.setLineDash([]);
    g.lineWidth = 1;
  }

  onHover(e) {
    if (!this.points.length || !this.scale) return;
    const rect = this.canvas.getBoundingClientRect();
    const { t0, t1, left, plotW } = this.scale;
    const t = t0 + ((e.clientX - rect.left - left) / plotW) * (t1 - t0);
    let best = 0;
    this.points.forEach((p, i) => {
      if (Math.abs(p.t - t) < Math.abs(this.points[best].t - t)) best = i;
    });
    this.hover = best;
    this.draw();
    const p = this.points[best];
    const lines = [clock(p.t)].concat(this.series.map((s, i) => s.name + ": " + fmt(p.v[i], 2) + " " + this.unit));
    const tip = $("tooltip");
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    tip.style.left = Math.min(e.clientX + 14, window.innerWidth - 200) + "px";
    tip.style.top = e.clientY + 14 + "px";
  }
}

function niceCeil(v) {
  if (!(v > 0)) return 0.25;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function clock(t) {
  const d = new Date(t);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

const BLUE = "#4fb3ff";
const ORANGE = "#ff9f43";
const RED = "#ff6b6b";
const GREEN = "#6bdc8a";
const VIOLET = "#c39bff";

const charts = {};
const samples = [];
let lastCaches = null;

function makeCharts() {
  charts.rate = new Chart($("c-rate"), "req/s", [{ name: "requests", color: BLUE }]);
  charts.latency = new Chart($("c-latency"), "ms", [
    { name: "p50", color: GREEN },
    { name: "p95", color: ORANGE, dash: [6, 3] },
    { name: "p99", color: RED, dash: [2, 3] },
  ]);
  charts.errors = new Chart($("c-errors"), "%", [
    { name: "4xx", color: ORANGE },
    { name: "5xx", color: RED, dash: [6, 3] },
  ]);
  charts.cpu = new Chart($("c-cpu"), "%", [
    { name: "host", color: BLUE },
    { name: "souk", color: ORANGE, dash: [6, 3] },
  ]);
  charts.rss = new Chart($("c-rss"), "MB", [{ name: "RSS", color: VIOLET }]);
  charts.cache = new Chart($("c-cache"), "%", [
    { name: "profiles", color: BLUE },
    { name: "sessions", color: ORANGE, dash: [6, 3] },
    { name: "balances", color: GREEN, dash: [2, 3] },
    { name: "listings", color: VIOLET, dash: [10, 3, 2, 3] },
    { name: "searches", color: RED, dash: [1, 5] },
  ]);
  charts.batch = new Chart($("c-batch"), "jobs", [
    { name: "last batch", color: BLUE },
    { name: "average since start", color: ORANGE, dash: [6, 3] },
  ]);
  charts.queue = new Chart($("c-queue"), "jobs", [{ name: "queued", color: GREEN }]);
}

function resizeCharts() {
  for (const chart of Object.values(charts)) chart.draw();
}

// ---- Overview -------------------------------------------------------------

async function poll() {
  let d;
  try {
    d = await api("GET", "/api/v1/admin/dashboard");
  } catch (e) {
    if (!(e instanceof ApiError && (e.code === "stale" || e.status === 401))) {
      $("overview-status").textContent = "figures unavailable: " + e.message;
    }
    return;
  }
  showTiles(d);
  showTrafficCharts(d.traffic.per_second);
  recordSample(d);
  showSampleCharts();
  showAlerts(d.alerts);
}

function showTiles(d) {
  const last = d.traffic.last_interval;
  const since = d.traffic.since_start;
  for (const span of document.querySelectorAll(".window-s")) span.textContent = fmt(last.seconds, 0);
  $("t-rate").textContent = fmt(last.requests_per_s, 2);
  $("t-latency").textContent = fmt(last.latency_p50_ms, 1) + " / " + fmt(last.latency_p95_ms, 1) + " / " + fmt(last.latency_p99_ms, 1) + " ms";
  $("t-errors").textContent = fmt(last.errors_4xx_percent, 2) + " % / " + fmt(last.errors_5xx_percent, 2) + " %";
  $("t-total").textContent = String(since.requests);
  $("t-rss").textContent = fmt(d.system_metrics.memory.process_rss_mb, 1) + " MB";
  $("t-queue").textContent = d.store.write_queue_depth + " / " + d.store.write_queue_capacity + " jobs";
  const circuit = d.store.circuit;
  const circuitTile = $("t-circuit");
  circuitTile.textContent = circuit.state.replace("_", "-") + (circuit.state === "closed" ? "" : " (" + circuit.reason + ")");
  circuitTile.className = "value state-" + circuit.state;
  $("t-uptime").textContent = uptime(d.uptime_s);
  $("overview-status").textContent =
    "Tiles over the last " + fmt(last.seconds, 0) + " s unless marked; since start: " + since.requests +
    " requests, p99 " + fmt(since.latency_p99_ms, 1) + " ms, 5xx " + fmt(since.errors_5xx_percent, 2) +
    " %. Updated " + clock(Date.now()) + ".";
}

// The server's per-second series: complete from the first poll.
function showTrafficCharts(perSecond) {
  charts.rate.set(perSecond.map((p) => ({ t: p.at_ms, v: [p.requests_per_s] })));
  charts.latency.set(perSecond.map((p) => ({ t: p.at_ms, v: [p.latency_p50_ms, p.latency_p95_ms, p.latency_p99_ms] })));
  charts.errors.set(perSecond.map((p) => ({ t: p.at_ms, v: [p.errors_4xx_percent, p.errors_5xx_percent] })));
}

const CACHES = ["profiles", "sessions", "balances", "listings", "searches"];

// One point per poll for the gauges, kept on the page (HISTORY_MAX).
function recordSample(d) {
  // Hit rate between two polls; null when a cache had no lookup.
  const cacheRates = CACHES.map((name) => {
    const now = d.caches[name];
    const before = lastCaches && lastCaches[name];
    if (!before) return now.hit_rate_percent;
    const hits = now.hits - before.hits;
    const misses = now.misses - before.misses;
    return hits + misses > 0 ? (hits * 100) / (hits + misses) : null;
  });
  lastCaches = d.caches;
  samples.push({
    t: Date.now(),
    cpu: [d.system_metrics.cpu.percent, d.system_metrics.cpu.process_percent],
    rss: [d.system_metrics.memory.process_rss_mb],
    cache: cacheRates,
    batch: [d.store.last_batch_size, d.store.avg_batch_size],
    queue: [d.store.write_queue_depth],
  });
  while (samples.length > HISTORY_MAX) samples.shift();
}

function showSampleCharts() {
  charts.cpu.set(samples.map((h) => ({ t: h.t, v: h.cpu })));
  charts.rss.set(samples.map((h) => ({ t: h.t, v: h.rss })));
  // A cache with no lookups between two polls keeps its previous rate.
  const carried = [];
  charts.cache.set(samples.map((h) => ({
    t: h.t,
    v: h.cache.map((r, i) => (carried[i] = r === null ? carried[i] || 0 : r)),
  })));
  charts.batch.set(samples.map((h) => ({ t: h.t, v: h.batch })));
  charts.queue.set(samples.map((h) => ({ t: h.t, v: h.queue })));
}

function showAlerts(book) {
  const box = $("alerts");
  box.textContent = "";
  if (!book.active.length && !book.recent.length) {
    box.append(el("p", { class: "hint", text: "No alert has fired." }));
  }
  const line = (a) => a.rule + ": " + fmt(a.value, 2) + " (threshold " + fmt(a.threshold, 2) + ")";
  for (const a of book.active) {
    box.append(el("p", { class: "alert", text: "ACTIVE " + line(a) + " since " + when(a.fired_at) }));
  }
  for (const a of book.recent.slice(0, 10)) {
    box.append(el("p", { class: "hint", text: "fired " + when(a.fired_at) + " — " + line(a) }));
  }
}

function uptime(s) {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return (h ? h + " h " : "") + m + " min " + (s % 60) + " s";
}

// ---- Users ----------------------------------------------------------------

let openUser = null;

async function searchUsers(event) {
  event.preventDefault();
  const q = $("user-q").value.trim();
  say("users-message", "");
  const body = $("user-results");
  try {
    const page = await api("GET", "/api/v1/users?limit=50&q=" + encodeURIComponent(q));
    body.textContent = "";
    if (!page.users.length) say("users-message", "No username starts with `" + q + "`.");
    for (const u of page.users) {
      const tr = row(u.username, u.display_name || "", u.id, when(u.created_at));
      tr.className = "pick";
      tr.dataset.userId = u.id;
      tr.addEventListener("click", () => openUserDetail(u.id));
      body.append(tr);
    }
  } catch (e) {
    sayError("users-message", e);
  }
}

async function openUserDetail(id) {
  openUser = id;
  say("ud-message", "");
  try {
    const [detail, entries, orders] = await Promise.all([
      api("GET", "/api/v1/admin/users/" + id),
      api("GET", "/api/v1/admin/users/" + id + "/entries?limit=20"),
      api("GET", "/api/v1/admin/users/" + id + "/orders?limit=20"),
    ]);
    if (openUser !== id) return;
    const u = detail.user;
    $("ud-title").textContent = u.username + (u.display_name ? " (" + u.display_name + ")" : "");
    const facts = $("ud-facts");
    facts.textContent = "";
    const fact = (name, value, cls) => facts.append(el("dt", { text: name }), el("dd", { id: "ud-" + name.replace(/ /g, "-"), class: cls || "", text: value }));
    fact("id", u.id);
    fact("role", u.role);
    fact("status", u.status, "state-" + u.status);
    fact("locked until", u.locked_until ? when(u.locked_until) : "not locked out", u.locked_until ? "bad" : "");
    fact("joined", when(u.created_at));
    fact("last login", when(u.last_login_at));
    $("ud-role").value = u.role;
    $("ud-suspend").hidden = u.status !== "active";
    $("ud-reactivate").hidden = u.status === "active";
    $("ud-unlock").disabled = !u.locked_until;
    const balances = $("ud-balances");
    balances.textContent = "";
    for (const [code, b] of Object.entries(detail.balances)) balances.append(row(code, b.available, b.held));
    const entryRows = $("ud-entries");
    entryRows.textContent = "";
    for (const e of entries.entries) {
      const sign = e.direction === "credit" ? "+" : "−";
      entryRows.append(row(when(e.created_at), e.kind, sign + e.amount + " " + e.currency, e.counterparty === null ? "outside" : e.counterparty, e.memo || e.reference || ""));
    }
    if (!entries.entries.length) entryRows.append(row("none", "", "", "", ""));
    const orderRows = $("ud-orders");
    orderRows.textContent = "";
    for (const o of orders.orders) {
      orderRows.append(row(o.id, o.title, o.buyer === u.id ? "buyer" : "seller", o.amount + " " + o.currency, o.state, when(o.updated_at)));
    }
    if (!orders.orders.length) orderRows.append(row("none", "", "", "", "", ""));
    $("user-detail").hidden = false;
  } catch (e) {
    sayError("ud-message", e);
  }
}

async function userAction(label, call) {
  const id = openUser;
  if (!id) return;
  say("ud-message", label + "…");
  try {
    await call(id);
    await openUserDetail(id);
    say("ud-message", label + ": done.", "ok");
  } catch (e) {
    sayError("ud-message", e);
  }
}

// ---- Usernames of ids ------------------------------------------------------

// Usernames by id, learnt this session (cleared at sign-out).
const names = new Map();

async function learnNames(ids) {
  if (names.size > NAMES_MAX) names.clear();
  const missing = [...new Set(ids)].filter((id) => !names.has(id));
  for (let i = 0; i < missing.length; i += NAME_IDS_MAX) {
    const chunk = missing.slice(i, i + NAME_IDS_MAX);
    const page = await api("GET", "/api/v1/users?ids=" + chunk.join(","));
    for (const u of page.users) names.set(u.id, u.username);
  }
}

function nameOf(id) {
  return names.has(id) ? names.get(id) + " (" + id + ")" : id;
}

// ---- Disputes -------------------------------------------------------------

// Minor units of a decimal string with at most `places` decimals, or null.
function toMinor(text, places) {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!m || (m[2] || "").length > places) return null;
  return BigInt(m[1] + (m[2] || "").padEnd(places, "0"));
}

function placesOf(amount) {
  const dot = amount.indexOf(".");
  return dot < 0 ? 0 : amount.length - dot - 1;
}

// Every page of a list (newest first), or the first DISPUTE_PAGES_MAX:
// `{items, cut}` with `cut` true when more were left unread.
async function allPages(path, key) {
  let items = [];
  let after = null;
  for (let i = 0; i < DISPUTE_PAGES_MAX; i++) {
    const page = await api("GET", path + "&limit=100" + (after ? "&after=" + after : ""));
    items = items.concat(page[key]);
    after = page.next;
    if (!after) return { items, cut: false };
  }
  return { items, cut: true };
}

// `load` of every item, at most `width` at once; the answers in order.
async function inPool(items, width, load) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await load(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}

async function loadDisputes() {
  say("disputes-message", "loading…");
  try {
    // Plain escrows only: an order's escrow is resolved through its order.
    const [orderList, escrowList] = await Promise.all([
      allPages("/api/v1/admin/orders?state=disputed", "orders"),
      allPages("/api/v1/admin/escrows?state=disputed&kind=plain", "escrows"),
    ]);
    const orders = orderList.items;
    const plain = escrowList.items;
    orders.sort((a, b) => a.updated_at.localeCompare(b.updated_at) || a.created_at.localeCompare(b.created_at));
    plain.sort((a, b) => a.created_at.localeCompare(b.created_at));
    const messages = await inPool(orders, MESSAGE_LOADS_MAX, (o) => api("GET", "/api/v1/orders/" + o.id + "/messages?limit=100"));
    await learnNames(orders.concat(plain).flatMap((o) => [o.buyer, o.seller]));
    const orderBox = $("dispute-orders");
    orderBox.textContent = "";
    orders.forEach((o, i) => orderBox.append(disputeCard("order", o, messages[i].messages)));
    if (!orders.length) orderBox.append(el("p", { class: "hint", text: "No disputed order." }));
    const escrowBox = $("dispute-escrows");
    escrowBox.textContent = "";
    for (const e of plain) escrowBox.append(disputeCard("escrow", e, null));
    if (!plain.length) escrowBox.append(el("p", { class: "hint", text: "No disputed escrow outside an order." }));
    const cut = [];
    if (orderList.cut) cut.push("the newest " + orders.length + " disputed orders");
    if (escrowList.cut) cut.push("the newest " + plain.length + " disputed escrows");
    if (cut.length) {
      // Older ones exist but were not read: say so, never drop them silently.
      say("disputes-message", "Showing only " + cut.join(" and ") + ": there are more; resolve these and reload.", "error");
    } else {
      say("disputes-message", orders.length + " disputed orders, " + plain.length + " disputed escrows.");
    }
  } catch (e) {
    sayError("disputes-message", e);
  }
}

function disputeCard(kind, item, messages) {
  const card = el("div", { class: "card", dataset: { kind, id: item.id } });
  const title = kind === "order" ? "Order " + item.id + ": " + item.title : "Escrow " + item.id;
  card.append(el("h3", { text: title }));
  card.append(el("p", {
    text: "buyer " + nameOf(item.buyer) + " · seller " + nameOf(item.seller) + " · amount " + item.amount + " " + item.currency +
      (kind === "order" ? " · fee " + item.fee + " · disputed since " + when(item.updated_at) : " · opened " + when(item.created_at)),
  }));
  if (kind === "order" && item.dispute_reason) card.append(el("p", { text: "Reason: " + item.dispute_reason }));
  if (messages) {
    const box = el("div", { class: "messages" });
    for (const m of messages) {
      const who = m.author === item.buyer ? "buyer" : m.author === item.seller ? "seller" : "admin " + m.author;
      box.append(el("p", {}, el("span", { class: "who", text: when(m.created_at) + " " + who + ": " }), m.body));
    }
    if (!messages.length) box.append(el("p", { class: "hint", text: "No messages." }));
    card.append(box);
  }
  const seller = el("input", { class: "to-seller", size: "16", placeholder: "0" });
  const buyer = el("input", { class: "to-buyer", size: "16", placeholder: "0" });
  const message = el("p", { class: "message", role: "alert" });
  // One key per form: resending the same resolution replays, never pays twice.
  const key = newKey();
  const submit = el("button", { type: "submit", text: "Resolve" });
  const form = el("form", { class: "row resolve" },
    el("label", {}, "to seller", seller), el("label", {}, "to buyer", buyer), submit);
  // A refusal is about the parts as they were: editing them clears it.
  for (const part of [seller, buyer]) {
    part.addEventListener("input", () => {
      message.textContent = "";
      message.className = "message";
    });
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const places = placesOf(item.amount);
    const total = toMinor(item.amount, places);
    const a = toMinor(seller.value || "0", places);
    const b = toMinor(buyer.value || "0", places);
    if (a === null || b === null) {
      message.textContent = "Each part is a decimal amount with at most " + places + " decimals.";
      message.className = "message error";
      return;
    }
    if (a + b !== total) {
      message.textContent = "The parts must add up to " + item.amount + " " + item.currency + ".";
      message.className = "message error";
      return;
    }
    submit.disabled = true;
    const path = kind === "order" ? "/api/v1/admin/orders/" + item.id + "/resolve" : "/api/v1/admin/escrows/" + item.id + "/resolve";
    try {
      await api("POST", path, { to_seller: seller.value.trim() || "0", to_buyer: buyer.value.trim() || "0" }, { idempotencyKey: key });
      message.textContent = "Resolved.";
      message.className = "message ok";
      await loadDisputes();
      say("disputes-message", kind + " " + item.id + " resolved.", "ok");
    } catch (e) {
      submit.disabled = false;
      if (e instanceof ApiError && (e.code === "stale" || e.status === 401)) return;
      message.textContent = "Refused: " + e.message + " (" + e.status + " " + e.code + ")";
      message.className = "message error";
    }
  });
  card.append(form, message);
  return card;
}

// ---- Listings -------------------------------------------------------------

function listingRow(l) {
  const close = el("button", { type: "button", text: "Close" });
  close.disabled = l.state === "closed";
  const tr = el("tr", { dataset: { listingId: l.id } },
    el("td", { text: l.title }), el("td", { text: nameOf(l.seller) }), el("td", { text: l.price + " " + l.currency }),
    el("td", { text: String(l.quantity) }), el("td", { text: l.state }), el("td", {}, close));
  close.addEventListener("click", async () => {
    close.disabled = true;
    try {
      const changed = await api("PATCH", "/api/v1/listings/" + l.id, { state: "closed" });
      say("listings-message", "Listing " + l.id + " closed.", "ok");
      tr.replaceWith(listingRow(changed.listing));
    } catch (e) {
      close.disabled = false;
      sayError("listings-message", e);
    }
  });
  return tr;
}

async function showListings(listings) {
  await learnNames(listings.map((l) => l.seller));
  const body = $("listing-results");
  body.textContent = "";
  for (const l of listings) body.append(listingRow(l));
}

async function searchListings(event) {
  event.preventDefault();
  say("listings-message", "");
  const q = $("listing-q").value.trim();
  try {
    const page = await api("GET", "/api/v1/listings?limit=50" + (q ? "&q=" + encodeURIComponent(q) : ""));
    await showListings(page.listings);
    if (!page.listings.length) say("listings-message", "No active listing matches.");
  } catch (e) {
    sayError("listings-message", e);
  }
}

async function openListing() {
  say("listings-message", "");
  const id = $("listing-id").value.trim();
  try {
    const found = await api("GET", "/api/v1/listings/" + encodeURIComponent(id));
    await showListings([found.listing]);
  } catch (e) {
    sayError("listings-message", e);
  }
}

// ---- Fees -----------------------------------------------------------------

let feeKey = newKey();

async function loadFees() {
  try {
    const data = await api("GET", "/api/v1/admin/fees");
    const body = $("fee-balances");
    body.textContent = "";
    const select = $("fw-currency");
    const chosen = select.value;
    select.textContent = "";
    for (const [code, f] of Object.entries(data.fees)) {
      body.append(row(code, f.balance, f.withdrawn, f.collected));
      select.append(el("option", { value: code, text: code }));
    }
    if (chosen) select.value = chosen;
  } catch (e) {
    sayError("fees-message", e);
  }
}

async function withdrawFees(event) {
  event.preventDefault();
  const body = {
    currency: $("fw-currency").value,
    amount: $("fw-amount").value.trim(),
    reference: $("fw-reference").value.trim(),
  };
  try {
    const done = await api("POST", "/api/v1/admin/fees/withdrawals", body, { idempotencyKey: feeKey });
    feeKey = newKey();
    say("fees-message", "Withdrew " + done.withdrawal.amount + " " + done.withdrawal.currency + " (reference " + done.withdrawal.reference + ").", "ok");
    $("fw-amount").value = "";
    $("fw-reference").value = "";
    await loadFees();
  } catch (e) {
    sayError("fees-message", e);
  }
}

// ---- Ledger ---------------------------------------------------------------

async function runCheck() {
  say("ledger-message", "checking every invariant…");
  const box = $("ledger-result");
  box.textContent = "";
  try {
    const report = await api("GET", "/api/v1/admin/check");
    say("ledger-message", "");
    if (report.ok) {
      box.append(el("p", { class: "good", text: "All invariants hold (checked " + new Date().toLocaleString() + ")." }));
    } else {
      box.append(el("p", { class: "bad", text: report.problems.length + " invariants are broken:" }));
      const list = el("ul");
      for (const p of report.problems) list.append(el("li", { text: p }));
      box.append(list);
    }
  } catch (e) {
    sayError("ledger-message", e);
  }
}

// ---- Wiring ---------------------------------------------------------------

function wire() {
  makeCharts();
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  $("user-search").addEventListener("submit", searchUsers);
  $("ud-suspend").addEventListener("click", () =>
    userAction("Suspend", (id) => api("PATCH", "/api/v1/admin/users/" + id, { status: "suspended" })));
  $("ud-reactivate").addEventListener("click", () =>
    userAction("Reactivate", (id) => api("PATCH", "/api/v1/admin/users/" + id, { status: "active" })));
  $("ud-set-role").addEventListener("click", () =>
    userAction("Change role", (id) => api("PATCH", "/api/v1/admin/users/" + id, { role: $("ud-role").value })));
  $("ud-unlock").addEventListener("click", () =>
    userAction("Lift lockout", (id) => api("POST", "/api/v1/admin/users/" + id + "/unlock")));
  $("disputes-reload").addEventListener("click", loadDisputes);
  $("listing-search").addEventListener("submit", searchListings);
  $("listing-open").addEventListener("click", openListing);
  $("fees-reload").addEventListener("click", loadFees);
  $("fee-withdraw").addEventListener("submit", withdrawFees);
  $("ledger-run").addEventListener("click", runCheck);
  window.addEventListener("resize", resizeCharts);
  if (token()) start();
}

document.addEventListener("DOMContentLoaded", wire);
