// The tmuxish web page: lists sessions and attaches to one in xterm.js.
// Frames (client/web/wire.py): one binary WebSocket message each, a type byte first.
"use strict";

const OUTPUT = 1, INPUT = 2, RESIZE = 3, ACK = 4, EXIT = 5, ERROR = 6;
const MAX_INPUT = 32768;     // bytes of input per frame (the server refuses frames over 64 KiB)
const ACK_EVERY = 65536;     // acknowledge at least this often while output flows

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// The tab's state, on window for the tests to read.
const state = window.tmuxish = {
  received: 0, written: 0, acked: 0,
  attached: null, exitCode: null, ended: null, term: null, ws: null,
};

function status(text) { $("status").textContent = text; }

async function login() {
  const token = location.hash.slice(1);
  if (!token) return;
  // The fragment never reaches a server or a log; drop it from the address bar and history too.
  history.replaceState(null, "", location.pathname);
  const r = await fetch("/login", { headers: { "X-Tmuxish-Token": token } });
  if (!r.ok) $("message").textContent = "That link's token is wrong: open the URL `tmuxish web` printed.";
}

async function listSessions() {
  const r = await fetch("/api/sessions");
  if (r.status === 401) {
    $("message").textContent = "Not logged in: open the URL that `tmuxish web` printed.";
    return;
  }
  if (!r.ok) { $("message").textContent = await r.text(); return; }
  const info = await r.json();
  $("badge").hidden = !info.readonly;
  $("new").hidden = !info.allow_new;
  const body = $("sessions").querySelector("tbody");
  body.replaceChildren();
  for (const s of info.sessions) {
    const row = document.createElement("tr");
    row.className = s.running ? "running" : "exited";
    row.dataset.session = s.id;
    for (const v of [s.id, s.name || "-", s.command, s.status, s.clients, s.size, s.age]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      row.append(td);
    }
    const td = document.createElement("td");
    if (s.running) {
      const b = document.createElement("button");
      b.textContent = "Attach";
      b.className = "attach";
      b.onclick = () => attach("session=" + encodeURIComponent(s.id), s.name || String(s.id));
      td.append(b);
    }
    row.append(td);
    body.append(row);
  }
  $("sessions").hidden = info.sessions.length === 0;
  $("message").textContent = info.sessions.length ? "" : "No sessions. Start one with `tmuxish new`.";
}

function send(ws, type, payload) {
  if (ws.readyState !== WebSocket.OPEN) return;
  const frame = new Uint8Array(1 + payload.length);
  frame[0] = type;
  frame.set(payload, 1);
  ws.send(frame);
}

function sendInput(ws, bytes) {
  for (let i = 0; i < bytes.length; i += MAX_INPUT) send(ws, INPUT, bytes.subarray(i, i + MAX_INPUT));
}

function sendResize(ws, cols, rows) {
  const p = new Uint8Array(4);
  new DataView(p.buffer).setUint16(0, cols);
  new DataView(p.buffer).setUint16(2, rows);
  send(ws, RESIZE, p);
}

function maybeAck(ws) {
  if (state.written - state.acked < ACK_EVERY && state.written !== state.received) return;
  if (state.written === state.acked) return;
  const p = new Uint8Array(8);
  new DataView(p.buffer).setBigUint64(0, BigInt(state.written));
  state.acked = state.written;
  send(ws, ACK, p);
}

function showList() {
  $("terminal").hidden = true;
  $("list").hidden = false;
  $("detach").hidden = true;
  $("back").hidden = true;
  $("title").textContent = "";
  status("");
  listSessions();
}

function attach(query, title) {
  $("list").hidden = true;
  $("terminal").hidden = false;
  $("detach").hidden = false;
  $("back").hidden = true;
  $("title").textContent = title;
  status("attaching…");
  const el = $("terminal");
  el.replaceChildren();
  const term = new Terminal({ scrollback: 5000, allowProposedApi: false, fontSize: 14 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  Object.assign(state, { received: 0, written: 0, acked: 0, attached: null, exitCode: null, ended: null, term });

  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws?${query}&cols=${term.cols}&rows=${term.rows}`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = () => { state.attached = title; status("attached"); term.focus(); };
  ws.onmessage = (ev) => {
    const frame = new Uint8Array(ev.data);
    const type = frame[0];
    if (type === OUTPUT) {
      const data = frame.subarray(1);
      state.received += data.length;
      term.write(data, () => { state.written += data.length; maybeAck(ws); });
    } else if (type === EXIT) {
      const code = new DataView(frame.buffer, 1, 4).getInt32(0);
      state.exitCode = code;
      finish(`session exited with code ${code}`);
    } else if (type === ERROR) {
      finish(decoder.decode(frame.subarray(1)));
    }
  };
  ws.onclose = () => { if (state.ended === null) finish("disconnected"); };
  term.onData((text) => sendInput(ws, encoder.encode(text)));
  term.onBinary((text) => sendInput(ws, Uint8Array.from(text, (c) => c.charCodeAt(0) & 255)));
  term.onResize(({ cols, rows }) => sendResize(ws, cols, rows));
  const refit = () => { if (!$("terminal").hidden) fit.fit(); };
  window.onresize = refit;

  function finish(why) {
    if (state.ended !== null) return;
    state.ended = why;
    status(why);
    term.write(`\r\n\x1b[7m[${why}]\x1b[0m\r\n`);
    $("detach").hidden = true;
    $("back").hidden = false;
    window.onresize = null;
  }
  $("detach").onclick = () => {
    ws.close(1000, "detach");
    state.ended = "detached";
    window.onresize = null;
    showList();
  };
}

$("back").onclick = showList;
$("new").onsubmit = (ev) => {
  ev.preventDefault();
  const cmd = $("new-cmd").value.trim();
  attach("new=1&cmd=" + encodeURIComponent(cmd), cmd || "new session");
};

login().then(listSessions);
// Keep the list current while it is shown (sessions come, go and exit).
setInterval(() => { if (!$("list").hidden && !document.hidden) listSessions(); }, 3000);
