// edge-ser dashboard: loads the recent history once, then follows the daemon through
// Server-Sent Events (api/stream). No framework, no build step; relative URLs so the page
// also works behind a reverse proxy under a sub-path.
"use strict";

(function () {
  // Okabe-Ito colours (colour-blind safe) with a two-letter code each, so the timeline and
  // tiles never rely on colour alone.
  const STYLE = {
    neutral: { color: "#999999", code: "Ne" }, calm: { color: "#56b4e9", code: "Ca" },
    happy: { color: "#f0e442", code: "Ha" }, sad: { color: "#0072b2", code: "Sa", light: true },
    angry: { color: "#d55e00", code: "An" }, fearful: { color: "#cc79a7", code: "Fe" },
    disgust: { color: "#009e73", code: "Di" }, surprised: { color: "#e69f00", code: "Su" },
  };
  const RESULT_TYPES = ["utterance", "window"];
  const HOUR_MS = 3600 * 1000;
  const LEVEL_MIN_DB = -90;

  const $ = (id) => document.getElementById(id);
  const state = {
    labels: Object.keys(STYLE), results: [], lastId: 0, skewMs: 0, statusAt: 0,
    uptime: null, peakDb: LEVEL_MIN_DB, levelAt: 0, source: null, stripsAt: 0,
  };

  function styleOf(emotion) {
    if (STYLE[emotion]) return STYLE[emotion];
    return { color: "#bbbbbb", code: String(emotion || "?").slice(0, 2) };
  }
  function paint(el, emotion) {
    const s = styleOf(emotion);
    el.style.background = s.color;
    el.style.color = s.light ? "#ffffff" : "#000000";
  }
  function pct(x) { return (100 * (Number(x) || 0)).toFixed(0) + "%"; }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    const s = Math.floor(seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? h + " h " + m + " min" : m ? m + " min " + sec + " s" : sec + " s";
  }
  function clockTime(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  }
  function now() { return Date.now() + state.skewMs; } // the device's clock, as best we know it

  // -- bars ---------------------------------------------------------------------------------------
  function buildBars(list, labels) {
    list.textContent = "";
    const rows = {};
    for (const label of labels) {
      const li = el("li");
      li.dataset.emotion = label;
      const track = el("span", "track"), fill = el("span", "fill");
      fill.style.display = "block";
      paint(fill, label);
      track.appendChild(fill);
      li.append(el("span", "name", label), track, el("span", "pct", "–"));
      list.appendChild(li);
      rows[label] = li;
    }
    return rows;
  }
  function setBars(rows, values, texts) {
    let best = null;
    for (const [label, value] of Object.entries(values)) if (best === null || value > values[best]) best = label;
    for (const [label, li] of Object.entries(rows)) {
      const value = Number(values[label]) || 0;
      li.querySelector(".fill").style.width = (100 * Math.min(1, Math.max(0, value))).toFixed(1) + "%";
      li.querySelector(".pct").textContent = texts ? texts[label] : pct(value);
      li.classList.toggle("top", label === best && value > 0);
    }
  }

  let probRows = {}, shareRows = {};
  function buildStatic() {
    probRows = buildBars($("probs"), state.labels);
    shareRows = buildBars($("hour-share"), state.labels);
    const legend = $("legend");
    legend.textContent = "";
    for (const label of state.labels) {
      const li = el("li");
      const chip = el("span", "chip", styleOf(label).code);
      paint(chip, label);
      li.append(chip, document.createTextNode(label));
      legend.appendChild(li);
    }
  }

  // -- results ------------------------------------------------------------------------------------
  function endTime(ev) {
    const t = Date.parse(ev.end || ev.start || "");
    return isNaN(t) ? now() : t;
  }
  function addResult(ev, render) {
    if (!ev || ev.emotion === undefined || ev.emotion === null) return;
    ev._end = endTime(ev);
    state.results.push(ev);
    const cutoff = now() - HOUR_MS;
    while (state.results.length && (state.results[0]._end < cutoff || state.results.length > 5000)) state.results.shift();
    if (render) renderResults();
  }
  function renderCurrent() {
    const last = state.results[state.results.length - 1];
    if (!last) return;
    const current = $("current");
    current.dataset.emotion = last.emotion;
    paint($("current-swatch"), last.emotion);
    $("current-emotion").textContent = last.emotion;
    $("current-confidence").textContent = "confidence " + pct(last.confidence);
    const bits = [ago(now() - last._end)];
    if (last.duration !== undefined) bits.push(Number(last.duration).toFixed(1) + " s long");
    if (last.level_db !== undefined && last.level_db !== null) bits.push(Number(last.level_db).toFixed(0) + " dBFS");
    $("current-time").textContent = bits.join(" · ");
    if (last.probabilities) setBars(probRows, last.probabilities);
    if (last.latency_ms !== undefined) $("i-latency").textContent = Number(last.latency_ms).toFixed(0) + " ms (last event)";
  }
  function drawStrip(box, spanMs) {
    const t1 = now(), t0 = t1 - spanMs;
    box.textContent = "";
    for (const ev of state.results) {
      if (ev._end < t0) continue;
      const dur = 1000 * (Number(ev.duration) || 1);
      const left = Math.max(0, (ev._end - dur - t0) / spanMs);
      const width = Math.max(0, dur / spanMs);
      const item = el("div", "tl-item");
      item.dataset.emotion = ev.emotion;
      item.style.left = (100 * left).toFixed(3) + "%";
      item.style.width = (100 * width).toFixed(3) + "%";
      item.title = clockTime(new Date(ev._end)) + " " + ev.emotion + " " + pct(ev.confidence);
      item.textContent = styleOf(ev.emotion).code;
      paint(item, ev.emotion);
      box.appendChild(item);
    }
  }
  function renderTimeline() {
    drawStrip($("timeline-recent"), 5 * 60 * 1000);
    drawStrip($("timeline"), HOUR_MS);
    const t0 = now() - HOUR_MS;
    const counts = {}, texts = {};
    let total = 0;
    for (const ev of state.results) if (ev._end >= t0) { counts[ev.emotion] = (counts[ev.emotion] || 0) + 1; total++; }
    const shares = {};
    for (const label of state.labels) {
      shares[label] = total ? (counts[label] || 0) / total : 0;
      texts[label] = (counts[label] || 0) + " · " + pct(shares[label]);
    }
    setBars(shareRows, shares, texts);
  }
  function renderRecent() {
    const list = $("recent");
    list.textContent = "";
    const recent = state.results.slice(-24).reverse();
    for (const ev of recent) {
      const li = el("li");
      li.dataset.emotion = ev.emotion;
      const tile = el("span", "tile", ev.emotion);
      paint(tile, ev.emotion);
      li.append(tile, el("span", "conf", pct(ev.confidence)), el("span", "when", clockTime(new Date(ev._end))));
      list.appendChild(li);
    }
    $("recent-empty").hidden = recent.length > 0;
  }
  function renderResults() { renderCurrent(); renderTimeline(); renderRecent(); }

  // -- status, counters, level ----------------------------------------------------------------------
  function setText(id, text) { $(id).textContent = text; }
  function renderCounters(counters, stateName) {
    if (stateName) {
      setText("c-state", stateName.replace(/_/g, " "));
      $("c-state").classList.toggle("bad", /lost|error|stopped/.test(stateName));
    }
    if (!counters) return;
    if (counters.utterances !== undefined || counters.windows !== undefined)
      setText("c-utterances", String(counters.utterances !== undefined ? counters.utterances : counters.windows));
    if (counters.overflows !== undefined) setText("c-overflows", String(counters.overflows));
    if (counters.dropped_seconds !== undefined) setText("c-dropped", Number(counters.dropped_seconds).toFixed(1) + " s");
    if (counters.uptime !== undefined) {
      state.uptime = Number(counters.uptime);
      state.statusAt = Date.now();
      setText("c-uptime", duration(state.uptime));
    }
  }
  function applyStatus(st) {
    if (st.time) { const t = Date.parse(st.time); if (!isNaN(t)) state.skewMs = t - Date.now(); }
    if (Array.isArray(st.labels) && st.labels.length && st.labels.join() !== state.labels.join()) {
      state.labels = st.labels.slice();
      buildStatic();
      renderResults();
    }
    renderCounters(st.counters, st.state);
    setText("i-device", st.device || (st.info && st.info.device) || "–");
    setText("i-model", st.model || (st.info && st.info.model) || "–");
    setText("i-version", "edge-ser " + (st.version || "?"));
    if (st.server) setText("c-clients", String(st.server.stream_clients));
  }
  function onStatusEvent(ev) {
    const names = { start: "started", stop: "stopped" };
    const name = ev.state || names[ev.event] || (ev.event === "periodic" ? null : ev.event);
    renderCounters(ev.counters, name || null);
    if (ev.device) setText("i-device", ev.device);
    if (ev.model) setText("i-model", ev.model);
  }
  function onLevel(ev) {
    const db = Math.max(LEVEL_MIN_DB, Math.min(0, Number(ev.level_db)));
    if (!isFinite(db)) return;
    const frac = (db - LEVEL_MIN_DB) / -LEVEL_MIN_DB;
    state.peakDb = Math.max(db, state.peakDb);
    state.levelAt = Date.now();
    $("meter-fill").style.width = (100 * frac).toFixed(1) + "%";
    $("meter").setAttribute("aria-valuenow", db.toFixed(0));
    $("meter").classList.remove("stale");
    setText("level-text", db.toFixed(0) + " dBFS");
    const speech = $("speech");
    speech.textContent = ev.speech ? "speech" : "quiet";
    speech.classList.toggle("on", !!ev.speech);
  }
  function tick() {
    state.peakDb = Math.max(LEVEL_MIN_DB, state.peakDb - 3); // peak marker falls 3 dB a second
    $("meter-peak").style.left = (100 * (state.peakDb - LEVEL_MIN_DB) / -LEVEL_MIN_DB).toFixed(1) + "%";
    if (state.levelAt && Date.now() - state.levelAt > 3000) {
      $("meter").classList.add("stale");
      setText("level-text", "no level data");
    }
    if (state.uptime !== null) setText("c-uptime", duration(state.uptime + (Date.now() - state.statusAt) / 1000));
    renderCurrent();
    if (Date.now() - state.stripsAt > 5000) { state.stripsAt = Date.now(); renderTimeline(); } // blocks drift left
  }

  // -- network ------------------------------------------------------------------------------------
  function setConn(text, cls) { const c = $("conn"); c.textContent = text; c.className = "pill " + cls; }
  async function getJson(url) {
    const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }
  async function refreshStatus() {
    try { applyStatus(await getJson("api/status")); } catch (e) { /* the stream shows the connection state */ }
  }
  function handle(raw) {
    let ev;
    try { ev = JSON.parse(raw.data); } catch (e) { return; }
    if (ev.id !== undefined) {
      if (ev.id <= state.lastId) return; // already have it (resume overlap)
      state.lastId = ev.id;
    }
    if (RESULT_TYPES.includes(ev.type)) {
      addResult(ev, true);
      const shown = Number($("c-utterances").textContent);
      if (isFinite(shown)) setText("c-utterances", String(shown + 1)); // the next status poll has the daemon's count
      if (/^(waiting|started|device recovered|–)$/.test($("c-state").textContent)) renderCounters(null, "listening");
    } else if (ev.type === "status") onStatusEvent(ev);
    else if (ev.type === "level") onLevel(ev);
  }
  function connect() {
    // The browser resends Last-Event-ID itself on reconnect; the query covers the first connect.
    const source = new EventSource("api/stream?last_event_id=" + state.lastId);
    state.source = source;
    source.onopen = () => { setConn("live", "pill-live"); refreshStatus(); };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setConn("offline – retrying", "pill-down");
        setTimeout(connect, 5000); // e.g. a 401/503 answer: EventSource gives up, we do not
      } else setConn("reconnecting…", "pill-wait");
    };
    for (const type of ["utterance", "window", "status", "level", "message"]) source.addEventListener(type, handle);
  }
  async function start() {
    buildStatic();
    try {
      applyStatus(await getJson("api/status"));
      const page = await getJson("api/events?limit=1000");
      for (const ev of page.events) {
        state.lastId = Math.max(state.lastId, ev.id || 0);
        if (RESULT_TYPES.includes(ev.type)) addResult(ev, false);
        else if (ev.type === "status") onStatusEvent(ev);
      }
      renderResults();
    } catch (e) {
      setConn("offline – retrying", "pill-down");
    }
    connect();
    setInterval(tick, 1000);
    setInterval(refreshStatus, 10000);
  }
  window.edgeSer = state; // for debugging in the browser console
  start();
})();
