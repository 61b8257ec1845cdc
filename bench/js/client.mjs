// The @fal-ai/client side of the benchmark. Speaks the harness's one command
// line (see bench/src/lib.rs) and prints one JSON line.
//
// @fal-ai/client builds `wss://fal.run/{app}/realtime?fal_jwt_token=...` and
// opens it with the global `WebSocket`; Node 20 has none, so we install the
// `ws` package's WebSocket under that name, wrapped to redirect `wss://fal.run/`
// to the local server (`ws://` or `wss://` host given here). TLS is verified
// against the test CA, trusted through NODE_EXTRA_CA_CERTS. Its default token
// provider POSTs to `https://rest.fal.ai/tokens/`; the client's `fetch` config
// option redirects that to the local emulator's token endpoint. On the raw echo
// server (no token endpoint, no auth) a constant token provider is used.
//
// The JS client is callback-only: the next input is sent from the result callback.

import { fal } from "@fal-ai/client";
import { WebSocket as WsWebSocket } from "ws";
import { readFileSync } from "node:fs";

function parseArgs(argv) {
  const a = {
    host: "127.0.0.1:8080", scheme: "ws", app: "me/echo", key: "test-key", auth: "header",
    payload: "small", n: 2000, warmup: 3000, workload: "seq", window: 32, label: "",
  };
  for (let i = 0; i < argv.length; i++) {
    let flag = argv[i];
    if (!flag.startsWith("--")) throw new Error(`unexpected argument ${flag}`);
    flag = flag.slice(2);
    let value;
    const eq = flag.indexOf("=");
    if (eq >= 0) { value = flag.slice(eq + 1); flag = flag.slice(0, eq); } else { value = argv[++i]; }
    if (value === undefined) throw new Error(`--${flag} needs a value`);
    if (["n", "warmup", "window"].includes(flag)) a[flag] = parseInt(value, 10);
    else a[flag] = value;
  }
  return a;
}

const a = parseArgs(process.argv.slice(2));
const localBase = `${a.scheme}://${a.host}/`;
const restBase = `${a.scheme === "wss" ? "https" : "http"}://${a.host}`;

class RedirectingWebSocket extends WsWebSocket {
  constructor(url, protocols) {
    const u = String(url).replace(/^wss:\/\/fal\.run\//, localBase);
    super(u, protocols, { perMessageDeflate: false });
  }
}
globalThis.WebSocket = RedirectingWebSocket;

fal.config({
  credentials: a.key,
  fetch: (url, init) => globalThis.fetch(String(url).replace(/^https:\/\/rest\.fal\.ai/, restBase), init),
});

const SMALL = Array.from({ length: 64 }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
function largeBytes() {
  const b = new Uint8Array(256 * 1024);
  for (let i = 0; i < b.length; i++) b[i] = i & 255;
  return b;
}
const data = a.payload === "small" ? SMALL : largeBytes();
const input = (id) => ({ request_id: id, data });

function readStatus(field) {
  try {
    const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith(field + ":"));
    return line ? parseInt(line.split(/\s+/)[1], 10) : 0;
  } catch {
    return 0;
  }
}
const cpuSeconds = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const now = () => process.hrtime.bigint();

function summary(ns) {
  if (ns.length === 0) return { n: 0, p50: 0, p90: 0, p99: 0, p999: 0, mean: 0, min: 0, max: 0 };
  const v = Float64Array.from(ns).sort();
  const n = v.length;
  const pct = (p) => v[Math.min(Math.max(Math.ceil((p / 100) * n), 1), n) - 1] / 1000;
  let sum = 0;
  for (const x of v) sum += x;
  return { n, p50: pct(50), p90: pct(90), p99: pct(99), p999: pct(99.9), mean: sum / n / 1000, min: v[0] / 1000, max: v[n - 1] / 1000 };
}

function report(samples, wall, cpu, firstUs) {
  const out = {
    client: "js", label: a.label, workload: a.workload, payload: a.payload, scheme: a.scheme,
    latency_us: summary(samples),
    throughput_msgs_s: wall > 0 ? samples.length / wall : 0,
    wall_s: wall, cpu_s: cpu, cpu_us_per_msg: (cpu * 1e6) / Math.max(samples.length, 1),
    peak_rss_kib: readStatus("VmHWM"),
  };
  if (firstUs !== undefined) out.first_us = firstUs;
  process.stdout.write(JSON.stringify(out) + "\n");
}

function fail(e) {
  process.stdout.write(JSON.stringify({ client: "js", error: String(e && e.message ? e.message : e) }) + "\n");
  process.stderr.write(`js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}

function connect(onResult, onError) {
  const opts = { throttleInterval: 0, onResult, onError };
  if (a.auth !== "jwt") opts.tokenProvider = async () => "bench-no-auth";
  return fal.realtime.connect(a.app, opts);
}

function check(res, expect) {
  if (!res || res.request_id !== expect) throw new Error(`expected ${expect}, got ${res && res.request_id}`);
}

function runLoop() {
  return new Promise((resolve, reject) => {
    const window = a.workload === "pipe" ? a.window : 1;
    const total = a.warmup + a.n;
    const sentAt = [];
    const samples = [];
    let opened = false, next = 0, received = 0, phase = null;
    let conn;
    const startPhase = () => ({ wall: performance.now(), cpu: cpuSeconds() });
    const sendNext = () => { sentAt.push(now()); conn.send(input(`r${next}`)); next++; };
    const onResult = (res) => {
      const t = now();
      try {
        if (!opened) {
          check(res, "open");
          opened = true;
          if (a.warmup === 0) phase = startPhase();
          while (next < total && next < window) sendNext();
          return;
        }
        check(res, `r${received}`);
        const s = sentAt.shift();
        if (received >= a.warmup) samples.push(Number(t - s));
        received++;
        if (received === a.warmup) phase = startPhase();
        if (received === total) {
          const wall = (performance.now() - phase.wall) / 1000;
          const cpu = cpuSeconds() - phase.cpu;
          conn.close();
          resolve({ samples, wall, cpu });
          return;
        }
        if (next < total) sendNext();
      } catch (e) {
        reject(e);
      }
    };
    conn = connect(onResult, (e) => reject(e));
    conn.send(input("open"));
  });
}

async function cold() {
  const samples = [];
  const p0 = { wall: performance.now(), cpu: cpuSeconds() };
  for (let i = 0; i < a.n; i++) {
    const id = `cold${i}`;
    const t = now();
    const d = await new Promise((resolve, reject) => {
      const conn = connect((res) => {
        const e = now();
        try { check(res, id); } catch (err) { reject(err); return; }
        conn.close();
        resolve(Number(e - t));
      }, reject);
      conn.send(input(id));
    });
    samples.push(d);
  }
  const wall = (performance.now() - p0.wall) / 1000;
  return { samples, wall, cpu: cpuSeconds() - p0.cpu, firstUs: samples[0] / 1000 };
}

try {
  // The default token provider logs a deprecation warning on every connect; keep stdout clean.
  console.warn = () => {};
  const r = a.workload === "cold" ? await cold() : await runLoop();
  report(r.samples, r.wall, r.cpu, r.firstUs);
  setTimeout(() => process.exit(0), 50);
} catch (e) {
  fail(e);
}
