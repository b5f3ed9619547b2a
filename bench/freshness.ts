/**
 * Discovery freshness: how long after an endpoint is added it serves its first request, for
 * three ways of learning about it, each feeding a real UpstreamPool under steady load (4
 * callers of WhoAmI through the pool) with two mirror backends already in it:
 *
 * - watch: kubernetes discovery (as gateway.ts wires it) watching the API stand-in over
 *   loopback; the change is an EndpointSlice write, whose watch event goes out at once.
 * - dns: DNS discovery polling an SRV name in the fake DNS server every --dns-refresh-ms; the
 *   change is a record change.
 * - max-connection-age: a client that learns the endpoints only when the servers recycle its
 *   connections (MaxConnectionAge), the README's "DNS round-robin misses new pods until
 *   MaxConnectionAge forces a reconnect". Simulated with a short age (--age-ms): every age,
 *   each backend sends GOAWAY and the pool is given the current set (re-resolution at
 *   reconnect, taken as instant: the best case).
 * For the periodic two, the n changes are made at evenly spread moments of the period
 * ((i + ½) / n), so their median is the median for a change at a random moment.
 *
 * Time to first request: from the change to the first answer from the new endpoint arriving at
 * a caller (so an upper bound of when the request reached it). "change → set" is until
 * discovery handed the set to the pool; "set → first" is the pool connecting and calling.
 * The periodic sources are measured at a short period and also scaled to their production
 * period (--dns-production-ms, default the config's 5 s; --production-age-ms, 30 s): the
 * change → set part times (production / measured), the set → first part as measured.
 *
 *   node --experimental-transform-types bench/freshness.ts [--reps 9] [--dns-refresh-ms 1000]
 *     [--age-ms 1000] [--dns-production-ms 5000] [--production-age-ms 30000] [--results bench/RESULTS.md]
 *
 * --results FILE writes the table into FILE's "## Discovery freshness" section (replacing that
 * section only, or appending it).
 */
import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { dnsDiscovery } from "../src/discovery/dns.ts";
import { endpointKey, type DiscoveredEndpoint } from "../src/discovery/types.ts";
import type { UpstreamPool } from "../src/upstream/pool.ts";
import { startMirrorBackend, type MirrorBackend } from "../tests/backends/mirror-connect.ts";
import { startFakeDnsServer } from "../tests/dns/fake-dns-server.ts";
import {
  defaultPool,
  feed,
  firstServedBy,
  hasEndpoint,
  sleep,
  startKubernetesUpstream,
  steadyLoad,
  tally,
  waitFor,
  whoAmI,
  type PoolFeed,
} from "../tests/k8s/load.ts";

const { values } = parseArgs({
  options: {
    reps: { type: "string", default: "9" },
    "dns-refresh-ms": { type: "string", default: "1000" },
    "age-ms": { type: "string", default: "1000" },
    "dns-production-ms": { type: "string", default: "5000" },
    "production-age-ms": { type: "string", default: "30000" },
    results: { type: "string" },
  },
});
const reps = Number(values.reps);
const dnsRefreshMs = Number(values["dns-refresh-ms"]);
const ageMs = Number(values["age-ms"]);
const dnsProductionMs = Number(values["dns-production-ms"]);
const productionAgeMs = Number(values["production-age-ms"]);
const load = { concurrency: 4, pauseMs: 1, maxDurationMs: 20_000 };

/** A way for the pool to learn of endpoints, with two base backends in it. */
interface Source {
  readonly label: string;
  /** How the periodic part was run, for the table. */
  readonly measuredAt: string;
  readonly productionAt: string;
  readonly pool: UpstreamPool;
  readonly feed: PoolFeed;
  /** Changes are made at a uniformly random moment of this period (0: not periodic). */
  readonly periodMs: number;
  /** change → set at the production period, per ms measured. */
  readonly productionScale: number;
  /** Publishes the backend; returns when. */
  add(backend: MirrorBackend): number;
  remove(backend: MirrorBackend): number;
  stop(): Promise<void>;
}

interface Sample {
  readonly toSetMs: number;
  readonly toFirstMs: number;
  readonly totalMs: number;
  readonly productionMs: number;
  readonly failedCalls: number;
}

function readyEndpoint(backend: MirrorBackend): DiscoveredEndpoint {
  return { address: backend.address, port: backend.port, ready: true, serving: true, terminating: false };
}

async function watchSource(base: readonly MirrorBackend[]): Promise<Source> {
  const upstream = await startKubernetesUpstream(base);
  return {
    label: "watch (kubernetes EndpointSlices)",
    measuredAt: "event-driven",
    productionAt: "event-driven",
    pool: upstream.pool,
    feed: upstream.feed,
    periodMs: 0,
    productionScale: 1,
    add: (backend) => upstream.publish(backend, "ready"),
    remove: (backend) => upstream.unpublish(backend),
    stop: () => upstream.stop(),
  };
}

async function dnsSource(base: readonly MirrorBackend[]): Promise<Source> {
  const dns = await startFakeDnsServer();
  const srv = "_grpc._tcp.mirror.test";
  const members = [...base];
  const publish = () => {
    const target = (b: MirrorBackend) => `pod-${b.port}.mirror.test`;
    for (const b of members) dns.setRecords(target(b), { a: [b.address] });
    dns.setRecords(srv, { srv: members.map((b) => ({ priority: 0, weight: 1, port: b.port, target: target(b) })) });
    return performance.now();
  };
  publish();
  const pool = defaultPool();
  const poolFeed = feed(pool);
  const stop = new AbortController();
  dnsDiscovery({ host: "", port: 0, srv, refreshMs: dnsRefreshMs, servers: [dns.address] }).start(poolFeed.events, stop.signal);
  await poolFeed.waitForSet((set) => set.length === base.length);
  return {
    label: "dns polling (SRV)",
    measuredAt: `refresh ${dnsRefreshMs} ms`,
    productionAt: `refresh ${dnsProductionMs} ms`,
    pool,
    feed: poolFeed,
    periodMs: dnsRefreshMs,
    productionScale: dnsProductionMs / dnsRefreshMs,
    add(backend) {
      members.push(backend);
      return publish();
    },
    remove(backend) {
      members.splice(members.indexOf(backend), 1);
      return publish();
    },
    async stop() {
      stop.abort();
      await pool.close(false);
      await dns.stop();
    },
  };
}

async function connectionAgeSource(base: readonly MirrorBackend[]): Promise<Source> {
  const members = [...base];
  const pool = defaultPool();
  const poolFeed = feed(pool);
  poolFeed.events.onEndpoints(members.map(readyEndpoint));
  const recycle = setInterval(() => {
    for (const b of members) b.goaway();
    poolFeed.events.onEndpoints(members.map(readyEndpoint));
  }, ageMs);
  return {
    label: "MaxConnectionAge (simulated)",
    measuredAt: `age ${ageMs} ms`,
    productionAt: `age ${productionAgeMs} ms`,
    pool,
    feed: poolFeed,
    periodMs: ageMs,
    productionScale: productionAgeMs / ageMs,
    add(backend) {
      members.push(backend);
      return performance.now();
    },
    remove(backend) {
      members.splice(members.indexOf(backend), 1);
      return performance.now();
    },
    async stop() {
      clearInterval(recycle);
      await pool.close(false);
    },
  };
}

/**
 * Waits for the moment `phase` (0-1) of a periodic source's period. Its last set came at a
 * tick (a lookup or a recycle: the source emitted it then), and ticks follow every period.
 */
async function untilPhase(source: Source, phase: number): Promise<void> {
  if (source.periodMs === 0) return;
  const lastTick = source.feed.sets.at(-1)!.at;
  const inPeriod = (performance.now() - lastTick) % source.periodMs;
  await sleep((phase * source.periodMs - inPeriod + source.periodMs) % source.periodMs);
}

/** One scale-up of `source` by a fresh backend at `phase` of its period, measured, then undone. */
async function scaleUpOnce(source: Source, name: string, phase: number): Promise<Sample> {
  const fresh = await startMirrorBackend({ name });
  const calls = steadyLoad(whoAmI(source.pool), load);
  try {
    await waitFor(() => tally(calls.records).size >= 2, "the base endpoints to answer");
    await untilPhase(source, phase);
    const changedAt = source.add(fresh);
    const set = await source.feed.waitForSet((s) => hasEndpoint(s, fresh), changedAt, source.periodMs + 5_000);
    await waitFor(() => firstServedBy(calls.records, name) !== undefined, `${name} to answer`);
    const firstAt = firstServedBy(calls.records, name)!;
    await calls.stop();
    const toSetMs = set.at - changedAt;
    const toFirstMs = firstAt - set.at;
    return {
      toSetMs,
      toFirstMs,
      totalMs: firstAt - changedAt,
      productionMs: toSetMs * source.productionScale + toFirstMs,
      failedCalls: calls.records.filter((r) => r.error !== undefined).length,
    };
  } finally {
    await calls.stop();
    const removedAt = source.remove(fresh);
    await source.feed.waitForSet((s) => !hasEndpoint(s, fresh), removedAt, source.periodMs + 5_000);
    await waitFor(() => source.pool.snapshot().endpoints.every((e) => e.key !== endpointKey(fresh)), "the endpoint to drain");
    await fresh.stop();
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

interface Row {
  readonly source: Source;
  readonly samples: readonly Sample[];
}

const ms = (x: number) => (x >= 1_000 ? `${(x / 1000).toFixed(2)} s` : `${x.toFixed(x < 100 ? 1 : 0)} ms`);
const ratio = (x: number, base: number) => `${(x / base).toFixed(x / base < 10 ? 1 : 0)}×`;

function table(rows: readonly Row[]): string {
  const watch = rows[0].samples;
  const watchTotal = median(watch.map((s) => s.totalMs));
  const lines = [
    "| source | measured at | change → set | set → first request | change → first request (min–max) | vs watch | production period | change → first request there | vs watch |",
    "|---|---|---:|---:|---:|---:|---|---:|---:|",
  ];
  for (const { source, samples } of rows) {
    const total = samples.map((s) => s.totalMs);
    const production = median(samples.map((s) => s.productionMs));
    lines.push(
      `| ${source.label} | ${source.measuredAt} | ${ms(median(samples.map((s) => s.toSetMs)))} | ${ms(median(samples.map((s) => s.toFirstMs)))} | ` +
        `${ms(median(total))} (${ms(Math.min(...total))}–${ms(Math.max(...total))}) | ${ratio(median(total), watchTotal)} | ` +
        `${source.productionAt} | ${ms(production)} | ${ratio(production, watchTotal)} |`,
    );
  }
  return lines.join("\n");
}

/** Replaces `heading`'s section of the markdown file (up to the next `## `), or appends it. */
async function writeSection(file: string, heading: string, body: string): Promise<void> {
  let text = "";
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    text = "# Benchmark results\n";
  }
  const section = `${heading}\n\n${body.trim()}\n`;
  const start = text.indexOf(`${heading}\n`);
  if (start === -1) {
    await writeFile(file, `${text.trimEnd()}\n\n${section}`);
    return;
  }
  const next = text.indexOf("\n## ", start + heading.length);
  const rest = next === -1 ? "" : `\n${text.slice(next + 1)}`;
  await writeFile(file, `${text.slice(0, start)}${section}${rest}`);
}

const base = await Promise.all(["base-a", "base-b"].map((name) => startMirrorBackend({ name })));
const rows: Row[] = [];
try {
  for (const makeSource of [watchSource, dnsSource, connectionAgeSource]) {
    const source = await makeSource(base);
    try {
      const samples: Sample[] = [];
      // Phases spread evenly over the period, so the median is that of a change at a random moment.
      for (let rep = 0; rep < reps; rep++) samples.push(await scaleUpOnce(source, `new-${rows.length}-${rep}`, (rep + 0.5) / reps));
      rows.push({ source, samples });
      console.error(`${source.label}: ${samples.map((s) => ms(s.totalMs)).join(", ")}`);
    } finally {
      await source.stop();
    }
  }
} finally {
  await Promise.all(base.map((b) => b.stop()));
}

const failed = rows.reduce((n, r) => n + r.samples.reduce((m, s) => m + s.failedCalls, 0), 0);
const watchTotal = median(rows[0].samples.map((s) => s.totalMs));
const command = `node --experimental-transform-types bench/freshness.ts ${process.argv.slice(2).join(" ")}`.trim();
const report = `${table(rows)}

Medians of ${reps} scale-ups (2 → 3 endpoints) each, under steady load (${load.concurrency} callers of WhoAmI
through the UpstreamPool, ${load.pauseMs} ms between calls); failed calls: ${failed}.
Watch target (first request under 100 ms after the watch event): ${watchTotal < 100 ? "met" : "NOT met"}, median ${ms(watchTotal)}.

- watch: measured end to end (EndpointSlice write in the API stand-in → watch event → client-node →
  discovery's default 10 ms debounce → pool.update → new HTTP/2 connection → first answer).
- dns polling: measured at the refresh shown, the changes at evenly spread moments of the
  period; the production column scales change → set to the config's default refresh
  (analytically: median refresh/2, worst a whole refresh, plus any DNS cache TTL, left out here).
- MaxConnectionAge: simulated (GOAWAY from every backend every age, the pool given the current set
  at each recycle: instant re-resolution, the best case), measured at the short age shown, the
  changes at evenly spread moments of it; the production column scales change → set to the age
  shown (analytically: median age/2 = ${ms(productionAgeMs / 2)}, worst a whole age plus its jitter).
- "change → first request" is when the first answer from the new endpoint reached a caller.

Command: \`${command}\`
Date: ${new Date().toISOString()}; Node ${process.version}, ${process.platform}/${process.arch}, shared 2-core machine.`;

console.log(report);
if (values.results !== undefined) await writeSection(values.results, "## Discovery freshness", report);
