// callrec console. Plain script, no dependencies. Every value from the API reaches the page
// through textContent or an attribute, never as markup (caller names are caller-controlled).
"use strict";

const TOKEN_KEY = "callrec.token";
const ACCOUNT_KEY = "callrec.account";
const SVG = "http://www.w3.org/2000/svg";

const state = { accounts: [], admin: false, account: null, pages: {} };

// --- small helpers ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

const token = () => sessionStorage.getItem(TOKEN_KEY);
const view = () => document.getElementById("view");

class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

async function api(method, path, body) {
  const headers = { "X-Auth-Token": token() || "", "Accept": "application/json" };
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  let res;
  try { res = await fetch(path, init); }
  catch (e) { throw new ApiError(0, "callrec did not answer: is it running, and is this the API's address?"); }
  let json = null;
  try { json = await res.json(); } catch (e) { json = null; }
  if (res.status === 401) { signOut("Your token was not accepted (expired or revoked?): sign in again."); throw new ApiError(401, "signed out"); }
  if (!res.ok) throw new ApiError(res.status, (json && json.message) || res.statusText, json);
  return json;
}

const acct = () => encodeURIComponent(state.account || "");

function fmtTime(us) {
  if (!us) return h("span", { class: "muted", text: "—" });
  const d = new Date(us / 1000);
  return h("time", { datetime: d.toISOString(), title: d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") },
    d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }));
}

function fmtDuration(ms) {
  if (ms === undefined || ms === null) return "—";
  const t = Math.round(ms / 1000), m = Math.floor(t / 60), sec = t % 60;
  return m + ":" + String(sec).padStart(2, "0");
}

const badge = (text, cls) => h("span", { class: "badge " + (cls || text), text });

function loading() { view().replaceChildren(h("p", { class: "muted", text: "Loading…" })); }

function errorBox(e, again) {
  const what = e.status === 403 ? "This token does not give access to that account." :
    e.status === 503 ? "The database is unreachable right now; callrec keeps recording. Try again in a moment." :
    e.message;
  return h("div", { class: "error-box", role: "alert" },
    h("p", { text: what }),
    again ? h("button", { type: "button", class: "secondary", on: { click: again } }, "Try again") : null);
}

function emptyBox(text) { return h("div", { class: "empty", role: "status", text }); }

// Local datetime input value → Unix seconds (the API's times), or undefined.
function toUnix(v) { if (!v) return undefined; const t = new Date(v).getTime(); return isNaN(t) ? undefined : Math.floor(t / 1000); }

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const t = q.toString();
  return t ? "?" + t : "";
}

function hashParams() {
  const i = location.hash.indexOf("?");
  return new URLSearchParams(i < 0 ? "" : location.hash.slice(i + 1));
}

function go(path, params) { location.hash = "#" + path + (params ? query(params) : ""); }

// --- sign in ---------------------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ACCOUNT_KEY);
  state.accounts = []; state.account = null;
  // The next person to sign in starts at the list, not on the last one's page.
  history.replaceState(null, "", "#/recordings");
  document.getElementById("bar").hidden = true;
  view().replaceChildren();
  const box = document.getElementById("signin");
  box.hidden = false;
  const err = document.getElementById("signin-error");
  err.hidden = !message; err.textContent = message || "";
  document.getElementById("token").focus();
}

async function start() {
  document.getElementById("signin").hidden = true;
  let r;
  try { r = await api("GET", "/v2/accounts"); }
  catch (e) { if (e.status !== 401) signOut("callrec could not be asked: " + e.message); return; }
  state.accounts = r.data.accounts; state.admin = r.data.admin;
  const sel = document.getElementById("account");
  sel.replaceChildren(...state.accounts.map(a => h("option", { value: a.id, text: a.name ? a.name + " (" + a.id + ")" : a.id })));
  const kept = sessionStorage.getItem(ACCOUNT_KEY);
  state.account = state.accounts.some(a => a.id === kept) ? kept : (state.accounts[0] && state.accounts[0].id);
  if (state.account) sel.value = state.account;
  document.getElementById("bar").hidden = false;
  if (!state.account) {
    view().replaceChildren(emptyBox("No account has a document yet. Create one with PUT /v2/accounts/{id}, then reload."));
    return;
  }
  route();
}

// --- router ----------------------------------------------------------------------------------

function route() {
  if (!token()) { signOut(); return; }
  if (!state.account) return;
  const path = (location.hash.slice(1).split("?")[0] || "/recordings");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const section = parts[0] || "recordings";
  for (const a of document.querySelectorAll("[data-nav]")) {
    const on = a.dataset.nav === section || (a.dataset.nav === "recordings" && section === "recording") || (a.dataset.nav === "calls" && section === "call");
    if (on) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const views = { recordings: recordingsView, recording: () => recordingView(parts[1]), calls: callsView, call: () => callView(parts[1]), settings: settingsView, live: liveView };
  (views[section] || recordingsView)();
}

// --- recordings list -------------------------------------------------------------------------

function field(label, input) { return h("label", {}, label, input); }

function filterForm(fields, onApply) {
  const form = h("form", { class: "filters card", role: "search" }, fields,
    h("button", { type: "submit" }, "Apply"),
    h("button", { type: "button", class: "secondary", on: { click: () => onApply(null) } }, "Clear"));
  form.addEventListener("submit", ev => { ev.preventDefault(); onApply(new FormData(form)); });
  return form;
}

function localInput(name, unix) {
  let v = "";
  if (unix) { const d = new Date(unix * 1000); v = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }
  return h("input", { type: "datetime-local", name, value: v });
}

async function recordingsView() {
  const p = hashParams();
  const f = {
    state: p.get("state") || "", party: p.get("party") || "", call_id: p.get("call_id") || "",
    since: p.get("since") || "", until: p.get("until") || "", start_key: p.get("start_key") || "",
  };
  const stateSel = h("select", { name: "state" }, ["", "recording", "pending", "uploading", "delivered", "failed", "stored"]
    .map(v => h("option", { value: v, selected: v === f.state, text: v || "any" })));
  const form = filterForm([
    field("State", stateSel),
    field("From", localInput("since", f.since)),
    field("To", localInput("until", f.until)),
    field("Caller or callee", h("input", { name: "party", value: f.party, placeholder: "+15551234567", size: 16 })),
    field("Call id", h("input", { name: "call_id", value: f.call_id, size: 24 })),
  ], fd => {
    if (!fd) { go("/recordings"); return; }
    go("/recordings", { state: fd.get("state"), party: fd.get("party").trim(), call_id: fd.get("call_id").trim(), since: toUnix(fd.get("since")), until: toUnix(fd.get("until")) });
  });
  const out = h("div", {});
  view().replaceChildren(h("h1", { text: "Recordings" }), form, out);
  out.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  let r;
  try { r = await api("GET", "/v2/accounts/" + acct() + "/recordings" + query({ ...f, limit: 25 })); }
  catch (e) { out.replaceChildren(errorBox(e, recordingsView)); return; }
  if (!r.data.length) {
    out.replaceChildren(emptyBox(f.start_key ? "No older recordings." :
      (f.state || f.party || f.call_id || f.since || f.until) ? "No recordings match these filters. Widen the dates or clear a filter." :
      "No recordings yet in this account. Calls that a rule records appear here once they end; see Calls for why a call was not recorded."));
    return;
  }
  const rows = r.data.map(it => h("tr", {},
    h("td", {}, fmtTime(it.start_us || it.created_us)),
    h("td", {}, h("a", { href: "#/recording/" + encodeURIComponent(it.recording_id), text: it.caller_id_number || "—" }),
      it.caller_id_name ? h("div", { class: "muted", text: it.caller_id_name }) : null),
    h("td", { text: it.callee_number || "—" }),
    h("td", { text: fmtDuration(it.duration_ms) }),
    h("td", { class: "optional", text: (it.format || "") + (it.encryption ? " (encrypted)" : "") }),
    h("td", {}, badge(it.state)),
    h("td", { class: "optional", text: (it.deliveries || []).length ? (it.deliveries || []).map(d => d.state).join(", ") : "kept locally" })));
  const pager = h("div", { class: "pager" },
    f.start_key ? h("button", { type: "button", class: "secondary", on: { click: () => history.back() } }, "Newer") : null,
    r.next_start_key ? h("button", { type: "button", class: "secondary", on: { click: () => go("/recordings", { ...f, start_key: r.next_start_key }) } }, "Older") : null);
  out.replaceChildren(h("div", { class: "table-wrap" }, h("table", { id: "recordings" },
    h("caption", { class: "muted", text: "Newest first. Times in your browser's zone; hover for UTC." }),
    h("thead", {}, h("tr", {}, ["Started", "Caller", "Callee", "Length", "Format", "State", "Destinations"].map((t, i) => h("th", { scope: "col", class: i === 4 || i === 6 ? "optional" : null, text: t })))),
    h("tbody", {}, rows))), pager);
}

// --- one recording ---------------------------------------------------------------------------

function metaList(pairs) {
  return h("dl", { class: "meta" }, pairs.filter(p => p[1] !== undefined && p[1] !== null && p[1] !== "").flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v instanceof Node ? v : String(v))]));
}

async function recordingView(id) {
  loading();
  let it;
  try { it = (await api("GET", "/v2/accounts/" + acct() + "/recordings/" + encodeURIComponent(id))).data; }
  catch (e) { view().replaceChildren(h("h1", { text: "Recording" }), errorBox(e, () => recordingView(id))); return; }
  const player = h("div", { class: "card", id: "player" });
  const dests = h("div", {});
  const decision = h("div", { id: "decision" });
  view().replaceChildren(
    h("h1", {}, "Recording ", h("span", { class: "mono", text: it.recording_id })),
    player,
    h("div", { class: "cols" },
      h("section", { class: "card", "aria-labelledby": "meta-h" }, h("h2", { id: "meta-h", text: "Details" }), metaList([
        ["Started", fmtTime(it.start_us)], ["Length", fmtDuration(it.duration_ms)],
        ["Caller", (it.caller_id_number || "") + (it.caller_id_name ? " (" + it.caller_id_name + ")" : "")],
        ["Callee", it.callee_number], ["FreeSWITCH leg", it.direction], ["Format", it.format + (it.stereo ? ", stereo" : "") + (it.sample_rate ? ", " + it.sample_rate + " Hz" : "")],
        ["Size", it.size ? it.size.toLocaleString() + " bytes" : ""], ["State", badge(it.state)],
        ["Made by rule", it.origin], ["Ended because", it.completion_cause], ["Node", it.node],
        ["Call", h("a", { href: "#/call/" + encodeURIComponent(it.call_id), text: it.call_id })],
        ["Encrypted", it.encryption ? "yes (age, to the account's recording_public_key)" : ""],
      ])),
      h("section", { class: "card", "aria-labelledby": "dest-h" }, h("h2", { id: "dest-h", text: "Destinations" }), dests)),
    decision);
  renderDestinations(dests, it);
  renderPlayer(player, it);
  loadDecision(decision, it.call_id, it.recording_id);
}

function renderDestinations(box, it) {
  const ds = it.deliveries || [];
  if (!ds.length) { box.replaceChildren(h("p", { class: "muted", text: "No destination: kept in callrec's local storage." })); return; }
  box.replaceChildren(h("div", { class: "table-wrap" }, h("table", { id: "destinations" },
    h("thead", {}, h("tr", {}, ["Where", "State", "Attempts", "Last error", ""].map(t => h("th", { scope: "col", text: t })))),
    h("tbody", {}, ds.map(d => h("tr", {},
      h("td", { class: "mono" }, (d.method || "put").toUpperCase() + " " + d.url),
      h("td", {}, badge(d.state)),
      h("td", { text: d.attempts }),
      h("td", { text: d.last_error || (d.last_status ? "HTTP " + d.last_status : "—") }),
      h("td", {}, d.state === "failed" ? h("button", { type: "button", "data-retry": it.recording_id, on: { click: ev => retry(ev.target, box, it) } }, "Retry") : null)))))));
}

async function retry(button, box, it) {
  button.disabled = true; button.textContent = "Retrying…";
  try {
    const r = await api("POST", "/v2/accounts/" + acct() + "/recordings/" + encodeURIComponent(it.recording_id) + "/retry");
    renderDestinations(box, r.data.recording);
    box.prepend(h("p", { role: "status", class: "muted", id: "dest-note", text: r.data.retried + " delivery put back in the queue; it is tried again at once." }));
  } catch (e) { box.prepend(errorBox(e)); button.disabled = false; button.textContent = "Retry"; }
}

async function renderPlayer(box, it) {
  box.replaceChildren(h("h2", { text: "Listen" }));
  if (it.encryption) {
    box.append(h("p", { class: "muted", text: "This recording is encrypted to the account's public key. callrec never holds the private key, so it cannot play it here: download it and decrypt with age -d -i key.txt." }));
    return;
  }
  let link, wave;
  try {
    [link, wave] = await Promise.all([
      api("POST", "/v2/accounts/" + acct() + "/recordings/" + encodeURIComponent(it.recording_id) + "/link"),
      api("GET", "/v2/accounts/" + acct() + "/recordings/" + encodeURIComponent(it.recording_id) + "/waveform?points=600"),
    ]);
  } catch (e) { box.append(errorBox(e)); return; }
  const audio = h("audio", { controls: true, preload: "metadata", src: link.data.url, id: "audio", "aria-label": "Recording audio" });
  const svg = waveform(wave.data, audio);
  const download = h("button", { type: "button", class: "secondary", id: "download", on: { click: () => downloadFile(it) } }, "Download");
  box.append(svg, audio, h("p", {}, download, " ", h("span", { class: "muted", text: fmtDuration(wave.data.duration_ms) + " · " + wave.data.sample_rate + " Hz · " + wave.data.channels + " channel(s)" })));
}

// Peaks from the server drawn as SVG bars; clicking seeks; the played part turns red.
function waveform(w, audio) {
  const n = w.peaks.length || 1, H = 100;
  const svg = s("svg", { class: "wave", viewBox: "0 0 " + n + " " + H, preserveAspectRatio: "none", role: "img", "aria-label": "Waveform of the recording; click to seek", id: "waveform" });
  const bars = [];
  w.peaks.forEach(([lo, hi], i) => {
    const y1 = (1 - hi) * H / 2, y2 = (1 - lo) * H / 2;
    const r = s("rect", { x: i, y: y1, width: 0.8, height: Math.max(0.6, y2 - y1), class: "peak" });
    bars.push(r); svg.append(r);
  });
  const cursor = s("line", { x1: 0, x2: 0, y1: 0, y2: H, class: "cursor" });
  svg.append(cursor);
  svg.addEventListener("click", ev => {
    const box = svg.getBoundingClientRect();
    const f = (ev.clientX - box.left) / box.width;
    if (isFinite(audio.duration)) audio.currentTime = f * audio.duration;
  });
  let lastPlayed = -1;
  audio.addEventListener("timeupdate", () => {
    if (!isFinite(audio.duration) || !audio.duration) return;
    const at = Math.floor(audio.currentTime / audio.duration * n);
    cursor.setAttribute("x1", at); cursor.setAttribute("x2", at);
    if (at === lastPlayed) return;
    bars.forEach((b, i) => b.setAttribute("class", i < at ? "peak played" : "peak"));
    lastPlayed = at;
  });
  return svg;
}

async function downloadFile(it) {
  try {
    const link = await api("POST", "/v2/accounts/" + acct() + "/recordings/" + encodeURIComponent(it.recording_id) + "/link");
    const a = h("a", { href: link.data.url, download: it.recording_id + "." + (it.format || "wav") + (it.encryption ? ".age" : "") });
    document.body.append(a); a.click(); a.remove();
  } catch (e) { view().prepend(errorBox(e)); }
}

// --- decisions -------------------------------------------------------------------------------

async function loadDecision(box, callId, highlight) {
  box.replaceChildren(h("p", { class: "muted", text: "Loading the decision…" }));
  try {
    const r = await api("GET", "/v2/accounts/" + acct() + "/calls/" + encodeURIComponent(callId) + "/decision");
    box.replaceChildren(renderDecision(r.data, highlight));
  } catch (e) {
    box.replaceChildren(e.status === 404 ? emptyBox("No decision record for this call (kept for decision_retention_days).") : errorBox(e));
  }
}

function renderDecision(d, highlight) {
  const dec = d.decision || {};
  const party = p => p ? h("span", {}, (p.number || "—") + (p.name ? " (" + p.name + ")" : ""),
    p.device_id ? h("span", { class: "muted", text: " device " + p.device_id }) : null,
    p.user_id ? h("span", { class: "muted", text: " user " + p.user_id }) : null,
    h("div", { class: "muted", text: "found by: " + (p.how || "—") })) : "—";
  const rules = (dec.rules || []).map(r => h("tr", {},
    h("td", { text: r.rule }),
    h("td", { class: r.matched ? "matched" : "unmatched" }, r.matched ? "✓ matched" : "✗ no"),
    h("td", { text: r.why })));
  const planned = (dec.planned || []).map(p => h("li", {}, p.reason + " → " + p.format + (p.stereo ? " stereo" : "") +
    (p.destinations.length ? " to " + p.destinations.join(", ") : " kept locally")));
  const outcomes = (d.outcomes || []).map(o => h("li", {}, fmtTime(o.at_us), " " + o.event.replace("recording.", "") + " ",
    o.recording_id ? h("a", { href: "#/recording/" + encodeURIComponent(o.recording_id), class: "mono", text: o.recording_id }) : null,
    o.reason ? h("span", { class: "muted", text: " (" + o.reason + ")" }) : null));
  const recs = (d.recordings || []).map(r => h("li", {}, h("a", { href: "#/recording/" + encodeURIComponent(r.recording_id), class: "mono", text: r.recording_id }),
    " ", badge(r.state), " ", r.origin || "", r.recording_id === highlight ? h("strong", { text: " (this one)" }) : null));
  return h("section", { class: "card", "aria-labelledby": "why-h", id: "why" },
    h("h2", { id: "why-h", text: (d.recordings || []).length ? "Why it was recorded" : "Why it was not recorded" }),
    metaList([
      ["Decided", fmtTime(d.at_us)], ["Call", h("span", { class: "mono", text: d.call_id })],
      ["Account", (dec.account_id || "—") + " — found by: " + (dec.account_how || "—")],
      ["Caller", party(dec.caller)], ["Callee", party(dec.callee)],
      ["FreeSWITCH leg / network", (dec.direction || "—") + " / " + (dec.network || "—")],
      ["Callflow", dec.callflow ? dec.callflow.id + ": " + dec.callflow.steps.join(" → ") : "none matched the destination"],
    ]),
    h("h2", { text: "Rules considered" }),
    h("div", { class: "table-wrap" }, h("table", { class: "rules", id: "rules" },
      h("thead", {}, h("tr", {}, ["Rule", "Result", "Why"].map(t => h("th", { scope: "col", text: t })))), h("tbody", {}, rules))),
    h("h2", { text: "Planned" }), planned.length ? h("ul", {}, planned) : h("p", { class: "muted", text: "Nothing: no rule asked for a recording." }),
    h("h2", { text: "What happened" }), outcomes.length ? h("ul", { id: "outcomes" }, outcomes) : h("p", { class: "muted", text: "No recording started." }),
    h("h2", { text: "Recordings kept" }), recs.length ? h("ul", { id: "kept" }, recs) : h("p", { class: "muted", text: "None." }));
}

async function callsView() {
  const p = hashParams();
  const f = { party: p.get("party") || "", call_id: p.get("call_id") || "", since: p.get("since") || "", until: p.get("until") || "", recorded: p.get("recorded") || "", start_key: p.get("start_key") || "" };
  const form = filterForm([
    field("From", localInput("since", f.since)), field("To", localInput("until", f.until)),
    field("Caller or callee", h("input", { name: "party", value: f.party, size: 16 })),
    field("Call id", h("input", { name: "call_id", value: f.call_id, size: 24 })),
    field("Recorded", h("select", { name: "recorded" }, [["", "any"], ["true", "recorded"], ["false", "not recorded"]].map(([v, t]) => h("option", { value: v, selected: v === f.recorded, text: t })))),
  ], fd => {
    if (!fd) { go("/calls"); return; }
    go("/calls", { party: fd.get("party").trim(), call_id: fd.get("call_id").trim(), since: toUnix(fd.get("since")), until: toUnix(fd.get("until")), recorded: fd.get("recorded") });
  });
  const out = h("div", {});
  view().replaceChildren(h("h1", { text: "Calls" }), h("p", { class: "muted", text: "Every call callrec saw, with why it was or was not recorded." }), form, out);
  out.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
  let r;
  try { r = await api("GET", "/v2/accounts/" + acct() + "/calls" + query({ ...f, limit: 25 })); }
  catch (e) { out.replaceChildren(errorBox(e, callsView)); return; }
  if (!r.data.length) { out.replaceChildren(emptyBox(f.start_key ? "No older calls." : "No calls match. Calls appear here as callrec decides on them; records are kept for decision_retention_days.")); return; }
  out.replaceChildren(h("div", { class: "table-wrap" }, h("table", { id: "calls" },
    h("thead", {}, h("tr", {}, ["Time", "Caller", "Callee", "Recorded", "Why"].map(t => h("th", { scope: "col", text: t })))),
    h("tbody", {}, r.data.map(c => {
      const matched = ((c.decision || {}).rules || []).filter(x => x.matched).map(x => x.why);
      return h("tr", {},
        h("td", {}, fmtTime(c.at_us)),
        h("td", {}, h("a", { href: "#/call/" + encodeURIComponent(c.call_id), text: c.caller || "—" })),
        h("td", { text: c.callee || "—" }),
        h("td", {}, c.planned ? badge(c.planned + " planned", "yes") : badge("no", "no")),
        h("td", { class: "muted", text: matched.length ? matched.join("; ") : "no rule matched" }));
    })))),
    h("div", { class: "pager" },
      f.start_key ? h("button", { type: "button", class: "secondary", on: { click: () => history.back() } }, "Newer") : null,
      r.next_start_key ? h("button", { type: "button", class: "secondary", on: { click: () => go("/calls", { ...f, start_key: r.next_start_key }) } }, "Older") : null));
}

async function callView(callId) {
  loading();
  const box = h("div", {});
  view().replaceChildren(h("h1", {}, "Call ", h("span", { class: "mono", text: callId })), box);
  loadDecision(box, callId, null);
}

// --- effective settings ----------------------------------------------------------------------

async function settingsView() {
  const out = h("div", {});
  const kind = h("select", { name: "kind", id: "eff-kind" }, [["devices", "device"], ["users", "user"]].map(([v, t]) => h("option", { value: v, text: t })));
  const who = h("select", { name: "id", id: "eff-id" });
  const dir = h("select", { name: "direction", id: "eff-dir" }, ["outbound", "inbound"].map(v => h("option", { value: v, text: v })));
  const net = h("select", { name: "network", id: "eff-net" }, ["offnet", "onnet"].map(v => h("option", { value: v, text: v })));
  async function fill() {
    who.replaceChildren();
    try {
      const r = await api("GET", "/v2/accounts/" + acct() + "/" + kind.value);
      const items = r.data || [];
      who.replaceChildren(...items.map(d => h("option", { value: d.id, text: (d.name || (d.sip && d.sip.username) || d.id) + " (" + d.id + ")" })));
      if (!items.length) out.replaceChildren(emptyBox("This account has no " + kind.value + " yet."));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  }
  kind.addEventListener("change", fill);
  const form = h("form", { class: "filters card" }, field("Kind", kind), field("Which", who), field("Direction", dir), field("Network", net), h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    if (!who.value) return;
    out.replaceChildren(h("p", { class: "muted", text: "Loading…" }));
    try {
      const r = await api("GET", "/v2/accounts/" + acct() + "/" + kind.value + "/" + encodeURIComponent(who.value) + "/effective_record_call" + query({ direction: dir.value, network: net.value }));
      const e = r.data.effective[0];
      out.replaceChildren(h("section", { class: "card", id: "effective" },
        h("p", {}, e.records ? badge("records", "yes") : badge("does not record", "no"), " ", e.direction + " " + e.network + " calls",
          e.why_not ? h("span", { class: "muted", text: " — " + e.why_not }) : null),
        h("div", { class: "table-wrap" }, h("table", {},
          h("thead", {}, h("tr", {}, ["Field", "Value", "From"].map(t => h("th", { scope: "col", text: t })))),
          h("tbody", {}, e.fields.map(f => h("tr", {}, h("td", { class: "mono", text: f.field }), h("td", { class: "mono", text: JSON.stringify(f.value) }), h("td", { class: f.source === "default" ? "muted" : "", text: f.source })))))),
        h("p", { class: "muted", text: r.data.note })));
    } catch (e) { out.replaceChildren(errorBox(e)); }
  });
  view().replaceChildren(h("h1", { text: "Effective settings" }), h("p", { class: "muted", text: "The record_call a user's or device's calls get, each field with the document it came from: the planner's own merge." }), form, out);
  fill();
}

// --- live calls ------------------------------------------------------------------------------

async function liveView() {
  const out = h("div", {});
  view().replaceChildren(h("h1", { text: "Live calls" }), h("p", {}, h("button", { type: "button", class: "secondary", on: { click: liveView } }, "Refresh")), out);
  let r;
  try { r = await api("GET", "/v2/accounts/" + acct() + "/channels"); }
  catch (e) { out.replaceChildren(errorBox(e, liveView)); return; }
  const calls = r.data || [];
  if (!calls.length) { out.replaceChildren(emptyBox("No live call on this node for this account.")); return; }
  out.replaceChildren(h("div", { class: "table-wrap" }, h("table", { id: "live" },
    h("thead", {}, h("tr", {}, ["Started", "Caller", "Destination", "Recordings"].map(t => h("th", { scope: "col", text: t })))),
    h("tbody", {}, calls.map(c => h("tr", {},
      h("td", {}, fmtTime(c.started_us)), h("td", { text: c.caller_id_number }), h("td", { text: c.destination }),
      h("td", {}, c.recordings.map(rec => h("div", {}, h("span", { class: "mono", text: rec.id }), " ", badge(rec.status),
        rec.status === "in-progress" ? h("button", { type: "button", class: "secondary", on: { click: () => control(rec.id, "paused") } }, "Pause") : null,
        rec.status === "paused" ? h("button", { type: "button", class: "secondary", on: { click: () => control(rec.id, "in-progress") } }, "Resume") : null)))))))));
}

async function control(id, status) {
  try { await api("PATCH", "/v2/accounts/" + acct() + "/recordings/" + encodeURIComponent(id), { data: { status } }); liveView(); }
  catch (e) { view().prepend(errorBox(e)); }
}

// --- wiring ----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("signin-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const t = document.getElementById("token").value.trim();
    if (!t) return;
    sessionStorage.setItem(TOKEN_KEY, t);
    document.getElementById("token").value = "";
    start();
  });
  document.getElementById("signout").addEventListener("click", () => signOut());
  document.getElementById("account").addEventListener("change", ev => {
    state.account = ev.target.value;
    sessionStorage.setItem(ACCOUNT_KEY, state.account);
    go("/recordings");
    route();
  });
  window.addEventListener("hashchange", route);
  if (token()) start(); else signOut();
});
