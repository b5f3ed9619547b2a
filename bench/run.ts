/**
 * The benchmark suite (`npm run bench`): every scenario, every front door side by side in the
 * same run, the targets as ratios. See bench/RESULTS.md for what it measures and why.
 *
 *   npm run bench                     full run (~8 minutes): 1 s warm-up, 3 rounds of 5 s, medians
 *   npm run bench -- --quick          smoke: 1 round of 1 s
 *   npm run bench -- --soak           2 minutes at 256 connections, resident memory every 10 s
 *   npm run bench -- --profile get    node --cpu-prof of grpc-edge under that load (get|post|stream), ranked;
 *                                     with --routes 10000 for the large route table
 *   npm run bench -- --record         also write the result into bench/RESULTS.md (suite or soak)
 *   options: --only get-c32,routes  --rounds N  --seconds S
 *
 * Everything runs on 127.0.0.1: the Go backend(s) from ../shared/peers/grpc-gateway (built on
 * first use with its build.sh), the Go grpc-gateway, the minimal Node proxy, grpc-edge
 * (`node bin/grpc-edge.js`, so `npm run build` first), wrk and h2load (apt-get when missing).
 */
import { execFileSync, spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { median, runH2load, runWrk, type LoadResult } from "./load.ts";
import { cpuSeconds, freePort, memoryMiB, processTree, startProc, stopAll, type Proc } from "./procs.ts";
import { formatSummary, summarize } from "./profile-summary.ts";
import { requests, mirrorDescriptorsPath, type BenchRequest } from "./requests.ts";
import { routeTableService, writeRouteTable } from "./route-table.ts";

const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const out = join(root, "bench", "out");
const logs = join(out, "logs");
const sharedPeer = join(root, "..", "shared", "peers", "grpc-gateway");

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    soak: { type: "boolean", default: false },
    profile: { type: "string" },
    routes: { type: "string" },
    record: { type: "boolean", default: false },
    only: { type: "string" },
    rounds: { type: "string" },
    seconds: { type: "string" },
  },
});
const rounds = Number(flags.rounds ?? (flags.quick ? 1 : 3));
const seconds = Number(flags.seconds ?? (flags.quick ? 1 : 5));
const warmupSeconds = 1; // wrk and h2load take whole seconds
/** A front door's first scenario warms it longer: a fresh process JITs for seconds, and rows
 * that only appear late (10k routes, 4 backends, 2 workers) would otherwise be measured cold. */
const firstWarmupSeconds = flags.quick ? 2 : 5;
const warmed = new Set<string>();

// ---------------------------------------------------------------------------------------------
// Tools

function has(command: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function ensureLoadTools(): void {
  const missing = [["wrk", "wrk"], ["h2load", "nghttp2-client"]].filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  console.log(`installing ${missing.join(", ")} (apt-get)`);
  execFileSync("sh", ["-c", `apt-get update -qq && apt-get install -y -qq ${missing.join(" ")} >/dev/null`], { stdio: "inherit" });
}

/** The folder with mirror-backend and mirror-gateway; builds them into bench/out/peer if needed. */
function peerBin(): string {
  for (const dir of [join(sharedPeer, "bin"), join(out, "peer", "bin")]) {
    if (existsSync(join(dir, "mirror-backend")) && existsSync(join(dir, "mirror-gateway"))) return dir;
  }
  // The shared peer folder is read-only: build a copy (bench/out is git-ignored; never commit bin/).
  console.log("building the Go peer (grpc-gateway + backend) with its build.sh (needs root, ~30 s)");
  rmSync(join(out, "peer"), { recursive: true, force: true });
  cpSync(sharedPeer, join(out, "peer"), { recursive: true });
  execFileSync("chmod", ["-R", "u+w", join(out, "peer")]);
  const t0 = Date.now();
  execFileSync("bash", [join(out, "peer", "build.sh")], {
    stdio: "inherit",
    env: { ...process.env, WORK: join(out, "peer-work") },
  });
  console.log(`peer built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return join(out, "peer", "bin");
}

// ---------------------------------------------------------------------------------------------
// Front doors

interface Target {
  readonly name: string;
  /** http: an HTTP front door (wrk); direct: a gRPC backend (h2load). */
  readonly kind: "http" | "direct";
  /** http://host:port for http, host:port for direct. */
  readonly address: string;
  /** The gateway's processes, for CPU and memory; empty for direct. */
  pids(): number[];
  /** Bytes its V8 heaps have allocated so far (Node front doors only, see nodeGcTrace). */
  allocatedBytes?(): number;
}

/**
 * Node front doors print one line per GC, which says what was allocated since the last one:
 * allocation per request is the one figure this shared machine does not blur (CPU time per
 * request moves by ±25% from one minute to the next; bytes allocated per request do not).
 */
const nodeGcTrace = "--trace-gc-nvp";

type TargetName =
  | "grpc-edge"
  | "grpc-edge, 2 workers"
  | "grpc-edge, 10k routes"
  | "grpc-edge, 4 backends"
  | "grpc-gateway"
  | "grpc-gateway, 4 backends"
  | "minimal proxy"
  | "direct (h2load)";

interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly request: BenchRequest;
  readonly connections: number;
  readonly targets: readonly TargetName[];
  /** Ratios are against this target's requests/s. */
  readonly baseline: TargetName;
}

const allScenarios: Scenario[] = [
  {
    id: "get-c1",
    title: "unary GET, path + query, 1 connection",
    request: requests.get,
    connections: 1,
    targets: ["grpc-edge", "grpc-gateway", "minimal proxy", "direct (h2load)"],
    baseline: "grpc-gateway",
  },
  {
    id: "get-c32",
    title: "unary GET, path + query, 32 connections",
    request: requests.get,
    connections: 32,
    targets: ["grpc-edge", "grpc-edge, 2 workers", "grpc-gateway", "minimal proxy", "direct (h2load)"],
    baseline: "grpc-gateway",
  },
  {
    id: "get-c256",
    title: "unary GET, path + query, 256 connections",
    request: requests.get,
    connections: 256,
    targets: ["grpc-edge", "grpc-edge, 2 workers", "grpc-gateway", "minimal proxy", "direct (h2load)"],
    baseline: "grpc-gateway",
  },
  {
    id: "post-c32",
    title: "unary POST, 1 KiB JSON body, 32 connections",
    request: requests.post,
    connections: 32,
    targets: ["grpc-edge", "grpc-gateway", "minimal proxy", "direct (h2load)"],
    baseline: "grpc-gateway",
  },
  {
    id: "stream-c32",
    title: "server stream of 100 messages, 32 connections",
    request: requests.stream,
    connections: 32,
    targets: ["grpc-edge", "grpc-gateway", "minimal proxy", "direct (h2load)"],
    baseline: "grpc-gateway",
  },
  {
    id: "backends4-c32",
    title: "unary GET, 4 backends (round_robin), 32 connections",
    request: requests.get,
    connections: 32,
    targets: ["grpc-edge, 4 backends", "grpc-gateway, 4 backends"],
    baseline: "grpc-gateway, 4 backends",
  },
  {
    id: "routes-c32",
    title: "unary GET, 10 vs 10,000 extra routes, 32 connections",
    request: requests.get,
    connections: 32,
    targets: ["grpc-edge", "grpc-edge, 10k routes", "minimal proxy"],
    baseline: "minimal proxy",
  },
];

interface Env {
  readonly bin: string;
  readonly backends: string[];
}

async function startBackends(bin: string, count: number): Promise<string[]> {
  const addresses: string[] = [];
  for (let i = 1; i <= count; i++) {
    const address = `127.0.0.1:${await freePort()}`;
    const p = startProc(`backend-b${i}`, join(bin, "mirror-backend"), ["--listen", address, "--id", `b${i}`], logs);
    await p.waitFor(/listening/, 10_000);
    addresses.push(address);
  }
  return addresses;
}

const treeOf = (p: Proc) => () => processTree(p.pid);

async function startGoGateway(name: string, env: Env, backends: readonly string[]): Promise<Target> {
  const address = `127.0.0.1:${await freePort()}`;
  // -camel: lowerCamelCase names and unpopulated fields emitted, as grpc-edge's defaults.
  const p = startProc(name, join(env.bin, "mirror-gateway"), ["--listen", address, "--upstream", backends.join(","), "-camel"], logs);
  await p.waitFor(/listening/, 10_000);
  return { name, kind: "http", address: `http://${address}`, pids: treeOf(p) };
}

async function startMinimalProxy(env: Env): Promise<Target> {
  const address = `127.0.0.1:${await freePort()}`;
  const script = join(root, "bench", "minimal-proxy.ts");
  const p = startProc("minimal proxy", process.execPath, [nodeGcTrace, script, "--listen", address, "--upstream", env.backends[0]], logs);
  await p.waitFor(/listening/, 10_000);
  return { name: "minimal proxy", kind: "http", address: `http://${address}`, pids: treeOf(p), allocatedBytes: () => p.allocatedBytes() };
}

interface EdgeOptions {
  readonly backends: readonly string[];
  readonly extraRoutes: number;
  readonly workers: number;
  readonly nodeFlags?: readonly string[];
}

const listeningLine = /listening on (http:\/\/\S+) \(admin (http:\/\/\S+)\)/;

async function startEdge(name: string, o: EdgeOptions): Promise<Target & { proc: Proc }> {
  const routeSet = join(out, `routes-${o.extraRoutes}.binpb`);
  if (!existsSync(routeSet)) writeRouteTable(o.extraRoutes, routeSet);
  const config = {
    listen: "127.0.0.1:0",
    admin: "127.0.0.1:0",
    workers: o.workers,
    descriptors: [mirrorDescriptorsPath, routeSet],
    upstreams: [
      { name: "mirror", services: ["mirror.v1.Mirror", routeTableService], discovery: { static: o.backends } },
    ],
  };
  const file = join(out, `${name.replace(/[^A-Za-z0-9]+/g, "-")}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  // Workers inherit the flag (node:cluster passes the primary's execArgv) and its output.
  const args = [...(o.nodeFlags ?? []), nodeGcTrace, join(root, "bin", "grpc-edge.js"), "--config", file];
  const p = startProc(name, process.execPath, args, logs);
  const m = await p.waitFor(listeningLine, 60_000);
  await waitForOk(`${m[2]}/readyz`);
  return { name, kind: "http", address: m[1], pids: treeOf(p), proc: p, allocatedBytes: () => p.allocatedBytes() };
}

async function waitForOk(url: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const status = await fetch(url).then((r) => r.status, () => 0);
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 (last ${status})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every HTTP front door must answer every request with 200 before it is measured. */
async function checkAnswers(target: Target): Promise<void> {
  for (const r of Object.values(requests)) {
    const res = await fetch(target.address + r.path, { method: r.method, body: r.body, headers: { "content-type": "application/json" } });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${target.name}: ${r.method} ${r.path} answered ${res.status}: ${text.slice(0, 300)}`);
  }
}

async function startTargets(names: ReadonlySet<TargetName>, env: Env): Promise<Map<TargetName, Target>> {
  const targets = new Map<TargetName, Target>();
  const add = (t: Target) => targets.set(t.name as TargetName, t);
  const one = [env.backends[0]];
  if (names.has("direct (h2load)")) add({ name: "direct (h2load)", kind: "direct", address: env.backends[0], pids: () => [] });
  if (names.has("grpc-gateway")) add(await startGoGateway("grpc-gateway", env, one));
  if (names.has("grpc-gateway, 4 backends")) add(await startGoGateway("grpc-gateway, 4 backends", env, env.backends));
  if (names.has("minimal proxy")) add(await startMinimalProxy(env));
  if (names.has("grpc-edge")) add(await startEdge("grpc-edge", { backends: one, extraRoutes: 10, workers: 1 }));
  if (names.has("grpc-edge, 2 workers")) add(await startEdge("grpc-edge, 2 workers", { backends: one, extraRoutes: 10, workers: 2 }));
  if (names.has("grpc-edge, 10k routes")) add(await startEdge("grpc-edge, 10k routes", { backends: one, extraRoutes: 10_000, workers: 1 }));
  if (names.has("grpc-edge, 4 backends")) add(await startEdge("grpc-edge, 4 backends", { backends: env.backends, extraRoutes: 10, workers: 1 }));
  for (const t of targets.values()) if (t.kind === "http") await checkAnswers(t);
  return targets;
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface Sample extends LoadResult {
  /** Gateway CPU seconds per 10,000 requests (all its processes); NaN for direct. */
  readonly cpuPer10k: number;
  /** Bytes the gateway allocated during the sample; NaN where unknown (Go, direct). */
  readonly allocated: number;
}

async function measure(target: Target, scenario: Scenario, secs: number): Promise<Sample> {
  const spec = { request: scenario.request, connections: scenario.connections, seconds: secs, workDir: out };
  const pids = target.pids();
  const before = cpuSeconds(pids);
  const allocatedBefore = target.allocatedBytes?.() ?? Number.NaN;
  const r = target.kind === "http" ? await runWrk(target.address, spec) : await runH2load(target.address, spec);
  const cpu = cpuSeconds(pids) - before;
  const allocated = (target.allocatedBytes?.() ?? Number.NaN) - allocatedBefore;
  return { ...r, cpuPer10k: pids.length === 0 ? Number.NaN : (cpu / r.requests) * 10_000, allocated };
}

interface Row {
  readonly scenario: Scenario;
  readonly target: TargetName;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly cpuPer10k: number;
  /**
   * KiB allocated per request over all rounds together: a GC reports what was allocated since
   * the one before, so a single round is off by up to one young generation; the sum is not.
   */
  readonly kibPerRequest: number;
  readonly failures: number;
}

/** Warm-up, then rounds in a rotating order (each front door goes first once), medians. */
async function runScenario(scenario: Scenario, targets: Map<TargetName, Target>): Promise<Row[]> {
  const list = scenario.targets.map((n) => targets.get(n)!);
  for (const t of list) {
    await measure(t, scenario, warmed.has(t.name) ? warmupSeconds : firstWarmupSeconds);
    warmed.add(t.name);
  }
  const samples = new Map<string, Sample[]>(list.map((t) => [t.name, []]));
  for (let round = 0; round < rounds; round++) {
    const order = list.map((_, i) => list[(i + round) % list.length]);
    for (const t of order) samples.get(t.name)!.push(await measure(t, scenario, seconds));
  }
  return list.map((t) => {
    const s = samples.get(t.name)!;
    const of = (k: keyof Sample) => median(s.map((x) => x[k]));
    return {
      scenario,
      target: t.name as TargetName,
      rps: of("rps"),
      p50Ms: of("p50Ms"),
      p99Ms: of("p99Ms"),
      cpuPer10k: of("cpuPer10k"),
      kibPerRequest: s.reduce((a, x) => a + x.allocated, 0) / s.reduce((a, x) => a + x.requests, 0) / 1024,
      failures: s.reduce((a, x) => a + x.failures, 0),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Report

const fmt = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "—";
const ratio = (n: number) => (Number.isFinite(n) ? `${n.toFixed(2)}×` : "—");

function resultTable(rows: readonly Row[]): string {
  const lines = [
    "| scenario | front door | req/s | × baseline | × minimal proxy | p50 ms | p99 ms | CPU s / 10k req | KiB allocated / req | failures |",
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    const same = rows.filter((x) => x.scenario === r.scenario);
    const base = same.find((x) => x.target === r.scenario.baseline)!;
    const minimal = same.find((x) => x.target === "minimal proxy");
    lines.push(
      `| ${r.scenario.id} | ${r.target} | ${fmt(r.rps)} | ${ratio(r.rps / base.rps)} | ${ratio(minimal ? r.rps / minimal.rps : NaN)} | ` +
        `${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${fmt(r.cpuPer10k, 2)} | ${fmt(r.kibPerRequest, 1)} | ${r.failures} |`,
    );
  }
  return lines.join("\n");
}

interface Memory {
  readonly target: string;
  readonly processes: number;
  /** Sum over the processes of VmHWM (each process's own peak). */
  readonly peakMiB: number;
  readonly largestPeakMiB: number;
  readonly rssMiB: number;
}

function memoryOf(target: Target): Memory {
  const m = memoryMiB(target.pids());
  return {
    target: target.name,
    processes: m.length,
    peakMiB: m.reduce((a, x) => a + x.peak, 0),
    largestPeakMiB: Math.max(...m.map((x) => x.peak)),
    rssMiB: m.reduce((a, x) => a + x.rss, 0),
  };
}

function memoryTable(title: string, rows: readonly Memory[]): string {
  return [
    `| ${title} | processes | peak RSS MiB (largest process) | peak RSS MiB (sum) | RSS now MiB (sum) |`,
    "| --- | ---: | ---: | ---: | ---: |",
    ...rows.map((m) => `| ${m.target} | ${m.processes} | ${fmt(m.largestPeakMiB)} | ${fmt(m.peakMiB)} | ${fmt(m.rssMiB)} |`),
  ].join("\n");
}

function verdicts(rows: readonly Row[], memAt256: readonly Memory[]): string[] {
  const get = (scenario: string, target: TargetName) => rows.find((r) => r.scenario.id === scenario && r.target === target);
  const out: string[] = [];
  const mark = (ok: boolean) => (ok ? "met" : "MISSED");
  const check = (label: string, value: number | undefined, limit: number, atLeast: boolean, show: (n: number) => string) => {
    if (value === undefined || !Number.isFinite(value)) return;
    const ok = atLeast ? value >= limit : value <= limit;
    out.push(`- ${label}: ${show(value)} (target ${atLeast ? "≥" : "≤"} ${show(limit)}) — ${mark(ok)}`);
  };
  for (const edge of ["grpc-edge", "grpc-edge, 2 workers"] as const) {
    const e = get("get-c32", edge);
    const g = get("get-c32", "grpc-gateway");
    const m = get("get-c32", "minimal proxy");
    if (e && g) check(`GET c32, ${edge} / grpc-gateway req/s`, e.rps / g.rps, 1.0, true, ratio);
    if (e && m) check(`GET c32, ${edge} / minimal proxy req/s`, e.rps / m.rps, 0.7, true, ratio);
    if (e && g) out.push(`  (context: CPU per request ${edge} / grpc-gateway ${ratio(e.cpuPer10k / g.cpuPer10k)})`);
    if (e && m && Number.isFinite(e.kibPerRequest)) {
      out.push(`  (context: allocation per request ${edge} / minimal proxy ${ratio(e.kibPerRequest / m.kibPerRequest)}, ${e.kibPerRequest.toFixed(1)} vs ${m.kibPerRequest.toFixed(1)} KiB)`);
    }
  }
  const e1 = get("get-c1", "grpc-edge");
  const d1 = get("get-c1", "direct (h2load)");
  if (e1 && d1) check("GET c1, gateway-added p50 (grpc-edge − direct)", e1.p50Ms - d1.p50Ms, 0.3, false, (n) => `${n.toFixed(2)} ms`);
  const mem = memAt256.find((m) => m.target === "grpc-edge");
  if (mem) check("peak RSS of grpc-edge (1 process) after 256 connections", mem.largestPeakMiB, 120, false, (n) => `${n.toFixed(0)} MiB`);
  const r10 = get("routes-c32", "grpc-edge");
  const r10k = get("routes-c32", "grpc-edge, 10k routes");
  const rm = get("routes-c32", "minimal proxy");
  if (r10 && r10k && rm) {
    const loss = (r: Row) => 1 - r.rps / rm.rps;
    out.push(
      `- route table: throughput loss vs the minimal proxy ${(loss(r10) * 100).toFixed(1)}% with 10 extra routes, ` +
        `${(loss(r10k) * 100).toFixed(1)}% with 10,000 (req/s ratio 10k/10 = ${ratio(r10k.rps / r10.rps)})`,
    );
    check("route table, loss(10k) / loss(10)", loss(r10k) / loss(r10), 1.1, false, ratio);
    // CPU per request is steadier than req/s on a shared machine: the same question asked of it.
    const cpuLoss = (r: Row) => r.cpuPer10k - rm.cpuPer10k;
    check("route table, added CPU per request vs the minimal proxy, 10k / 10", cpuLoss(r10k) / cpuLoss(r10), 1.1, false, ratio);
  }
  return out;
}

function versions(): string {
  const first = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0].trim();
    } catch (e) {
      return String((e as { stdout?: string }).stdout ?? "").split("\n")[0].trim() || "?";
    }
  };
  return `Node ${process.version}, ${first("wrk", ["-v"]).replace(/ \[.*$/, "")}, ${first("h2load", ["--version"])}, ${availableParallelism()} CPUs`;
}

/** Replaces the block between this mode's markers in bench/RESULTS.md (appends it the first time). */
function record(section: string, mode: "suite" | "soak"): void {
  const file = join(root, "bench", "RESULTS.md");
  const tag = mode === "suite" ? "bench/run.ts" : "bench/run.ts --soak";
  const begin = `<!-- ${tag}: begin -->`;
  const end = `<!-- ${tag}: end -->`;
  const block = `${begin}\n${section}\n${end}`;
  const text = existsSync(file) ? readFileSync(file, "utf8") : "# Benchmark results\n";
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  const next = i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : `${text.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, next);
  console.log(`recorded in ${file}`);
}

// ---------------------------------------------------------------------------------------------
// Modes

async function suite(env: Env): Promise<void> {
  const only = flags.only?.split(",");
  const scenarios = allScenarios.filter((s) => only === undefined || only.includes(s.id));
  const targets = await startTargets(new Set(scenarios.flatMap((s) => s.targets)), env);
  const started = new Date();
  const load0 = loadavg()[0];
  const rows: Row[] = [];
  let memAt256: Memory[] = [];
  for (const s of scenarios) {
    process.stdout.write(`${s.id}: ${s.title} ... `);
    const t0 = Date.now();
    rows.push(...(await runScenario(s, targets)));
    console.log(`${((Date.now() - t0) / 1000).toFixed(0)} s`);
    if (s.id === "get-c256") memAt256 = [...targets.values()].filter((t) => t.kind === "http").map(memoryOf);
  }
  const memEnd = [...targets.values()].filter((t) => t.kind === "http").map(memoryOf);
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  const section = [
    `### Suite: \`${command}\`, ${started.toISOString().replace(/\.\d+Z$/, "Z")}`,
    "",
    `${versions()}; load average ${load0.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at end. ` +
      `${warmupSeconds} s warm-up (${firstWarmupSeconds} s in a front door's first scenario), then ${rounds} round(s) of ${seconds} s per front door in rotating order; medians. ` +
      `grpc-edge runs with \`workers: 1\` unless the row says otherwise.`,
    "",
    resultTable(rows),
    "",
    ...(memAt256.length > 0 ? [memoryTable("memory after get-c256", memAt256), ""] : []),
    memoryTable("memory at the end of the run", memEnd),
    "",
    "Targets:",
    ...verdicts(rows, memAt256),
  ].join("\n");
  console.log(`\n${section}\n`);
  writeFileSync(join(out, "last-run.md"), `${section}\n`);
  if (flags.record) record(section, "suite");
}

/** 2 minutes (20 s with --quick) of unary GETs at 256 connections; resident memory every 10 s. */
async function soak(env: Env): Promise<void> {
  const edge = await startEdge("grpc-edge soak", { backends: [env.backends[0]], extraRoutes: 10, workers: 1 });
  const total = flags.quick ? 20 : 120;
  const load = spawn("wrk", ["-t1", "-c256", `-d${total}s`, "--timeout", "10s", `${edge.address}${requests.get.path}`], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let wrkOut = "";
  load.stdout.on("data", (c: Buffer) => (wrkOut += c.toString()));
  const done = new Promise<void>((resolve) => load.once("exit", () => resolve()));
  const series: Array<{ t: number; rss: number }> = [];
  const t0 = Date.now();
  while (Date.now() - t0 < total * 1000) {
    await new Promise((r) => setTimeout(r, 10_000));
    const m = memoryOf(edge);
    series.push({ t: Math.round((Date.now() - t0) / 1000), rss: m.rssMiB });
    console.log(`  ${series.at(-1)!.t} s: RSS ${m.rssMiB.toFixed(1)} MiB (peak ${m.largestPeakMiB.toFixed(1)})`);
  }
  await done;
  const rps = wrkOut.match(/Requests\/sec:\s+([\d.]+)/)?.[1];
  const settled = series.find((s) => s.t >= 20) ?? series[0];
  const last = series.at(-1)!;
  const section = [
    `### Soak: \`npm run bench -- --soak\`, ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`,
    "",
    `grpc-edge (1 worker), unary GET at 256 connections for ${total} s, ${rps ?? "?"} req/s. ` +
      `RSS every 10 s (MiB): ${series.map((s) => s.rss.toFixed(0)).join(", ")}. ` +
      `From ${settled.t} s to ${last.t} s: ${(last.rss - settled.rss >= 0 ? "+" : "")}${(last.rss - settled.rss).toFixed(1)} MiB; ` +
      `peak ${memoryOf(edge).largestPeakMiB.toFixed(0)} MiB.`,
  ].join("\n");
  console.log(`\n${section}\n`);
  if (flags.record) record(section, "soak");
}

/** grpc-edge under `node --cpu-prof` for 10 s of one scenario's load; the profile ranked. */
async function profile(env: Env, which: string): Promise<void> {
  const request = requests[which as keyof typeof requests];
  if (request === undefined) throw new Error(`--profile takes one of ${Object.keys(requests).join(", ")}`);
  const dir = join(out, "profiles");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const edge = await startEdge("grpc-edge profiled", {
    backends: [env.backends[0]],
    extraRoutes: Number(flags.routes ?? 10),
    workers: 1,
    nodeFlags: ["--cpu-prof", "--cpu-prof-dir", dir],
  });
  const spec = { request, connections: 32, seconds: flags.quick ? 3 : 10, workDir: out };
  await runWrk(edge.address, { ...spec, seconds: 2 }); // warm-up (JIT) inside the profile; small share
  const r = await runWrk(edge.address, spec);
  // The profile is written at exit. A drain can take the whole drainTimeout (30 s) when a stream
  // cut by the client is left open upstream (seen after --profile stream): wait for it.
  await edge.proc.stop(40_000);
  const files = readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).map((f) => join(dir, f));
  const newest = files.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (newest === undefined) throw new Error(`no .cpuprofile in ${dir}`);
  const text = `${which} at 32 connections: ${fmt(r.rps)} req/s under the profiler; ${newest}\n${formatSummary(summarize(JSON.parse(readFileSync(newest, "utf8"))), 30)}`;
  writeFileSync(join(out, `profile-${which}.txt`), `${text}\n`);
  console.log(text);
}

async function main(): Promise<void> {
  mkdirSync(logs, { recursive: true });
  if (!existsSync(join(root, "dist", "src", "node.js"))) throw new Error("dist/ is missing: run `npm run build` first");
  ensureLoadTools();
  const bin = peerBin();
  const backends = await startBackends(bin, flags.soak || flags.profile !== undefined ? 1 : 4);
  const env: Env = { bin, backends };
  if (flags.soak) await soak(env);
  else if (flags.profile !== undefined) await profile(env, flags.profile || "get");
  else await suite(env);
}

const onSignal = () => void stopAll().then(() => process.exit(130));
process.once("SIGINT", onSignal);
process.once("SIGTERM", onSignal);
try {
  await main();
} finally {
  await stopAll();
}
