// replog dashboard: polls GET /cluster on the master and draws it. Plain JS, no library.
"use strict";

const POLL_MS = 500;          // one GET /cluster per half second while the page is open
const $ = (sel, root = document) => root.querySelector(sel);
const cards = new Map();      // node name -> its <article>
let lastEvent = 0;            // id of the newest event shown
let lastUpdate = 0;

// Access token (a node with --tokens): asked for on a 401/403, kept in this tab only, sent
// on every fetch. The page itself needs none: it is static; its data needs the role read.
const TOKEN_KEY = "replog.token";
let token = sessionStorage.getItem(TOKEN_KEY) || "";
let waitingForToken = false;

function authed(init = {}) {
  const headers = { ...(init.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  return { ...init, headers };
}

function askToken(status, role) {
  const why = status === 401 ? (token ? "The token was not accepted (revoked or mistyped)."
                                      : "This master needs an access token.")
                             : `This token lacks the role ${role}.`;
  text($("#token-note"), `${why} Enter a token with the role ${role}.`);
  $("#token-form").hidden = false;
  $("#token").focus();
}

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#token").value = "";
  $("#token-form").hidden = true;
  if (waitingForToken) {
    waitingForToken = false;
    poll();
  }
});

function text(el, value) {
  const s = String(value);
  if (el.textContent !== s) el.textContent = s;
}

function card(name) {
  let el = cards.get(name);
  if (!el) {
    el = $("#node-card").content.firstElementChild.cloneNode(true);
    el.dataset.name = name;
    text($(".name", el), name);
    $(".faults", el).addEventListener("submit", (ev) => setFaults(ev, name, el));
    cards.set(name, el);
  }
  return el;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return seconds < 10 ? `${seconds.toFixed(1)} s ago` : `${Math.round(seconds)} s ago`;
}

function drawTail(el, entries, held) {
  const list = $(".tail", el);
  const seen = Number(el.dataset.maxSeq || 0);
  const items = entries.slice().reverse().map(([seq, message]) => {
    const li = document.createElement("li");
    li.dataset.seq = seq;
    if (seen && seq > seen) li.className = "new";
    li.innerHTML = `<span class="seq">${seq}</span><span class="msg"></span>`;
    $(".msg", li).textContent = message;
    return li;
  });
  for (const seq of held.slice().reverse()) {
    const li = document.createElement("li");
    li.className = "held";
    li.dataset.held = seq;
    li.innerHTML = `<span class="seq">${seq}</span><span>held back (gap before it)</span>`;
    items.unshift(li);
  }
  const key = entries.map((e) => e[0]).join(",") + "|" + held.join(",");
  if (list.dataset.key !== key) {
    list.replaceChildren(...items);
    list.dataset.key = key;
  }
  const top = entries.length ? entries[entries.length - 1][0] : 0;
  if (top > seen || !entries.length) el.dataset.maxSeq = top;
}

function drawNode(el, node, maxLag, allowFaults) {
  el.className = `node ${node.status}`;
  el.dataset.status = node.status;
  text($(".role", el), node.role);
  const status = $(".status", el);
  status.className = `status ${node.status}`;
  text(status, node.statusText || node.status);
  text($(".acked", el), node.acked);
  text($(".lag-num", el), node.lag);
  $(".lag-bar", el).style.width = `${Math.min(100, (100 * node.lag) / maxLag)}%`;
  text($(".age", el), node.age);
  const t = node.tail;
  const faulty = t && (t.delay > 0 || t.error_rate > 0);
  $(".faulty", el).hidden = !faulty;
  if (faulty) text($(".faulty", el), `faults: ${t.delay > 0 ? "delay " + t.delay + " s " : ""}` +
                                      `${t.error_rate > 0 ? "errors " + t.error_rate : ""}`.trim());
  const form = $(".faults", el);
  form.hidden = !(allowFaults && t && t.allow_faults);
  if (t && !form.contains(document.activeElement)) {
    $(".delay", form).value = t.delay;
    $(".error-rate", form).value = t.error_rate;
  }
  const note = $(".tail-note", el);
  if (node.role === "master") {
    text(note, "");
  } else if (!t || t.loading) {                     // the master has not read it yet
    text(note, "tail: not read yet");
  } else {
    const stale = t.error ? `no answer to the tail call (${age(t.age)})` : "";
    note.classList.toggle("stale", Boolean(stale));
    text(note, stale || (t.held_back ? `${t.held_back} held back past a gap` : ""));
  }
  // a secondary's entry may lack a tail (an older master sent null before the first read)
  const entries = node.role === "master" ? node.entries : (t && t.tail) || [];
  drawTail(el, entries, (t && t.held) || []);
}

function render(data) {
  const h = data.health;
  const q = h.quorum;
  text($("#log-size"), h.last_seq);
  text($("#cluster-size"), q.size);
  text($("#quorum"), `${q.available} of ${q.size} (${q.needed} needed)`);
  text($("#waiting"), h.waiting);
  const f = h.failover;             // with --failover: who is master, of which epoch
  $("#epoch-line").hidden = !f;
  if (f) { text($("#epoch"), f.epoch); text($("#master-name"), f.master || "being elected"); }
  const mode = $("#mode");
  mode.className = `mode ${h.read_only ? "ro" : "ok"}`;
  text(mode, h.read_only ? "read-only" : "writable");
  const banner = $("#banner");
  banner.hidden = !h.read_only;
  if (h.read_only) text(banner, `Read-only: ${h.reason || "no quorum"}. Appends are refused; reads go on.`);

  const w = $("#w");
  if (w.options.length !== q.size) {
    const chosen = w.value ? Number(w.value) : q.size;
    w.replaceChildren(...Array.from({ length: q.size }, (_, i) => new Option(`${i + 1}`, i + 1)));
    w.value = Math.min(chosen, q.size);
  }

  const names = Object.keys(h.secondaries).sort();
  const maxLag = Math.max(5, ...names.map((n) => h.secondaries[n].lag));
  const nodes = [{ name: h.name || "master", role: "master", status: h.read_only ? "Unhealthy" : "Healthy",
                   statusText: h.read_only ? "read-only" : "writable", acked: h.last_seq, lag: 0,
                   age: "—", tail: null, entries: data.tails.master }];
  for (const name of names) {
    const s = h.secondaries[name];
    nodes.push({ name, role: "secondary", status: s.status, acked: s.acked_seq, lag: s.lag,
                 age: age(s.last_answer_age), tail: data.tails.secondaries[name] });
  }
  const box = $("#nodes");
  const wanted = nodes.map((n) => card(n.name));
  nodes.forEach((n, i) => drawNode(wanted[i], n, maxLag, data.allow_faults));
  for (const [name, el] of cards) {                 // a node that left disappears
    if (!wanted.includes(el)) { el.remove(); cards.delete(name); }
  }
  wanted.forEach((el, i) => { if (box.children[i] !== el) box.insertBefore(el, box.children[i] || null); });

  const list = $("#events");
  for (const e of data.events) {
    if (e.id <= lastEvent) continue;
    const li = document.createElement("li");
    li.dataset.kind = e.kind;
    const when = new Date(e.time * 1000).toLocaleTimeString([], { hour12: false });
    li.innerHTML = `<time></time><span class="kind"></span><span class="text"></span>`;
    text($("time", li), when);
    $(".kind", li).className = `kind ${e.kind}`;
    text($(".kind", li), e.kind);
    text($(".text", li), e.text);
    list.prepend(li);
    lastEvent = e.id;
  }
  while (list.children.length > 200) list.lastElementChild.remove();
}

function showConn(cls, message) {
  $("#conn").className = `conn ${cls}`.trim();
  text($("#conn"), message);
}

// Three different failures, told apart: the master did not answer at all, it answered with
// an error, or it answered and this script failed to draw it (a bug here, not the master's).
async function poll() {
  let data = null;
  try {
    const r = await fetch(`/cluster?after=${lastEvent}`, authed({ cache: "no-store" }));
    if (r.status === 401 || r.status === 403) {    // poll again once a token is given
      showConn("lost", `master answered HTTP ${r.status}: a token with the role read is needed`);
      askToken(r.status, "read");
      waitingForToken = true;
      return;
    }
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      showConn("lost", `master answered HTTP ${r.status}${body.error ? ": " + body.error : ""}`);
    } else {
      data = await r.json();
    }
  } catch (err) {                                   // network error or a cut-off body
    showConn("lost", `master not answering (${err.message})`);
  }
  if (data) {
    try {
      render(data);
      lastUpdate = Date.now();
      showConn("", `updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
    } catch (err) {
      console.error(err);
      showConn("lost", `dashboard script error: ${err.message}`);
    }
  }
  setTimeout(poll, POLL_MS);
}

async function append(ev) {
  ev.preventDefault();
  const answer = $("#answer");
  const button = $("#send");
  const body = { message: $("#msg").value, w: Number($("#w").value) };
  const timeout = $("#timeout").value;
  if (timeout !== "") body.timeout = Number(timeout);
  const started = performance.now();
  button.disabled = true;
  answer.className = "answer wait";
  const tick = setInterval(() => text(answer, `waiting for w=${body.w}… ` +
                                             `${((performance.now() - started) / 1000).toFixed(1)} s`), 100);
  try {
    const r = await fetch("/messages", authed({ method: "POST", headers: { "Content-Type": "application/json" },
                                                body: JSON.stringify(body) }));
    const data = await r.json();
    if (r.status === 401 || r.status === 403) askToken(r.status, "append");
    const ms = Math.round(performance.now() - started);
    answer.className = `answer ${r.ok ? "ok" : "err"}`;
    answer.dataset.status = r.status;
    answer.dataset.seq = data.seq ?? "";
    text(answer, r.ok ? `${r.status}: seq ${data.seq}, acks ${data.acks} of w=${data.w} in ${ms} ms`
                      : `${r.status}: ${data.error} (${ms} ms)`);
  } catch (err) {
    answer.className = "answer err";
    text(answer, `no answer: ${err.message}`);
  } finally {
    clearInterval(tick);
    button.disabled = false;
  }
}

async function setFaults(ev, name, el) {
  ev.preventDefault();
  const body = { secondary: name, delay: Number($(".delay", el).value || 0),
                 error_rate: Number($(".error-rate", el).value || 0) };
  const r = await fetch("/cluster/faults", authed({ method: "POST", headers: { "Content-Type": "application/json" },
                                                    body: JSON.stringify(body) }));
  if (r.status === 401 || r.status === 403) askToken(r.status, "admin");
  else if (!r.ok) alert(`faults of ${name}: ${(await r.json()).error}`);
  document.activeElement.blur();
}

$("#append").addEventListener("submit", append);
poll();
