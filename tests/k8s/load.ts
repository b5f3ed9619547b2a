/**
 * Shared pieces of the freshness and rollout proofs (tests/k8s/*.test.ts, bench/freshness.ts):
 * an upstream wired as src/gateway.ts wires one (kubernetes discovery against the API stand-in
 * over loopback → `pool.update`), one EndpointSlice per mirror backend ("pod"), and a steady
 * load of a few concurrent callers through the pool.
 *
 * Each backend gets a slice of its own because the backends share 127.0.0.1 and differ by
 * port, and a slice has one port set (the EndpointSlice controller groups endpoints so too).
 */
import { delay, until as waitFor } from "../support/wait.ts";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DiscoveryConfig } from "../../src/config/index.ts";
import { discoveryFor } from "../../src/discovery/index.ts";
import { endpointKey, type DiscoveredEndpoint, type DiscoveryEvents } from "../../src/discovery/types.ts";
import { UpstreamPool } from "../../src/upstream/pool.ts";
import { input, mirrorMethods, type MirrorBackend } from "../backends/mirror-connect.ts";
import { endpointSlice, FakeApiServer, type KubeObject } from "./fake-apiserver.ts";

/** The Service (and upstream) name everything here uses. */
const service = "mirror";

// ---------------------------------------------------------------------------------------------
// Steady load

/** One call of a steady load; times are `performance.now()`. */
export interface CallRecord {
  /** Taken before the call enters the pool, so the pool's pick comes after it. */
  readonly startedAt: number;
  readonly endedAt: number;
  /** The backend that answered (its WhoAmI name or `x-backend` header). */
  readonly backend?: string;
  readonly error?: Error;
}

/** One call through the pool; resolves to the name of the backend that answered. */
export type Call = (signal: AbortSignal) => Promise<string>;

export interface LoadOptions {
  readonly concurrency: number;
  /** The load stops by itself after this long, whatever the test does. */
  readonly maxDurationMs: number;
  /** Each caller waits this long between its calls, so the load leaves CPU for the rest. */
  readonly pauseMs?: number;
}

export interface SteadyLoad {
  /** Every finished call, in the order they finished. */
  readonly records: readonly CallRecord[];
  /** Stops starting calls; resolves once every caller's last call has finished. */
  stop(): Promise<void>;
}

/** `concurrency` callers, each calling `call` in a loop until stopped or `maxDurationMs` is up. */
export function steadyLoad(call: Call, options: LoadOptions): SteadyLoad {
  const records: CallRecord[] = [];
  const stopAt = performance.now() + options.maxDurationMs;
  let stopped = false;
  // Aborts calls still running when the time limit is reached (a hung call is a failure).
  const limit = AbortSignal.timeout(options.maxDurationMs + 5_000);
  const caller = async () => {
    while (!stopped && performance.now() < stopAt) {
      const startedAt = performance.now();
      try {
        const backend = await call(limit);
        records.push({ startedAt, endedAt: performance.now(), backend });
      } catch (e) {
        records.push({ startedAt, endedAt: performance.now(), error: e as Error });
      }
      if (options.pauseMs) await sleep(options.pauseMs);
    }
  };
  const callers = Promise.all(Array.from({ length: options.concurrency }, caller));
  return {
    records,
    async stop() {
      stopped = true;
      await callers;
    },
  };
}

/** WhoAmI through `pool`: the answer names the backend. */
export function whoAmI(pool: UpstreamPool): Call {
  const request = input(mirrorMethods.whoAmI);
  return async (signal) => {
    const response = await pool.unary(mirrorMethods.whoAmI, signal, undefined, undefined, request);
    return (response.message as unknown as { backend: string }).backend;
  };
}

/** Slow (`millis` on the backend) through `pool`, so calls are in flight at any moment. */
export function slow(pool: UpstreamPool, millis: number): Call {
  const request = input(mirrorMethods.slow, { millis });
  return async (signal) => {
    const response = await pool.unary(mirrorMethods.slow, signal, undefined, undefined, request);
    return response.header.get("x-backend") ?? "";
  };
}

/** When the first call answered by `backend` finished (at or after `since`), if one did. */
export function firstServedBy(records: readonly CallRecord[], backend: string, since = 0): number | undefined {
  let first: number | undefined;
  for (const r of records) {
    if (r.backend === backend && r.endedAt >= since && (first === undefined || r.endedAt < first)) first = r.endedAt;
  }
  return first;
}

/** Calls answered per backend. */
export function tally(records: readonly CallRecord[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of records) if (r.backend !== undefined) counts.set(r.backend, (counts.get(r.backend) ?? 0) + 1);
  return counts;
}

// ---------------------------------------------------------------------------------------------
// An upstream discovered from the API stand-in

/** EndpointSlice conditions of a pod as the EndpointSlice controller writes them. */
export const podConditions = {
  ready: { ready: true, serving: true, terminating: false },
  /** Deleted pod, still running its in-flight calls (KEP-1672). */
  terminating: { ready: false, serving: true, terminating: true },
} as const;

export type PodCondition = keyof typeof podConditions;

/** A set the discovery handed to the pool, and when. */
export interface DeliveredSet {
  readonly at: number;
  readonly endpoints: readonly DiscoveredEndpoint[];
}

/** Discovery events that feed a pool (as gateway.ts does) and keep what came, with times. */
export interface PoolFeed {
  readonly events: DiscoveryEvents;
  /** Every set emitted, in order. */
  readonly sets: readonly DeliveredSet[];
  readonly errors: readonly Error[];
  /** The first set emitted at or after `since` that satisfies `accept`. */
  waitForSet(accept: (endpoints: readonly DiscoveredEndpoint[]) => boolean, since?: number, timeoutMs?: number): Promise<DeliveredSet>;
}

export function feed(pool: UpstreamPool): PoolFeed {
  const sets: DeliveredSet[] = [];
  const errors: Error[] = [];
  return {
    events: {
      onEndpoints(endpoints) {
        sets.push({ at: performance.now(), endpoints });
        pool.update(endpoints);
      },
      onError: (error) => errors.push(error),
    },
    sets,
    errors,
    async waitForSet(accept, since = 0, timeoutMs = 5_000) {
      let found: DeliveredSet | undefined;
      await waitFor(() => (found = sets.find((s) => s.at >= since && accept(s.endpoints))) !== undefined, "an endpoint set", timeoutMs);
      return found!;
    },
  };
}

/** Whether `endpoints` holds `backend` (with these conditions, if given). */
export function hasEndpoint(endpoints: readonly DiscoveredEndpoint[], backend: MirrorBackend, condition?: PodCondition): boolean {
  const wanted = condition === undefined ? undefined : podConditions[condition];
  return endpoints.some(
    (e) =>
      endpointKey(e) === keyOf(backend) &&
      (wanted === undefined || (e.ready === wanted.ready && e.serving === wanted.serving && e.terminating === wanted.terminating)),
  );
}

/** The pool that the upstream gets, as gateway.ts's poolOptions makes it for an upstream with the config defaults. */
export function defaultPool(): UpstreamPool {
  return new UpstreamPool({ name: service, balancer: "round_robin", timeoutMs: 5_000 });
}

export interface KubernetesUpstream {
  readonly apiserver: FakeApiServer;
  readonly pool: UpstreamPool;
  /** What the discovery emitted. */
  readonly feed: PoolFeed;
  /** Writes the backend's slice with these conditions; returns when (the watch event is sent synchronously). */
  publish(backend: MirrorBackend, condition: PodCondition): number;
  /** Deletes the backend's slice; returns when. */
  unpublish(backend: MirrorBackend): number;
  /** Stops discovery, closes the pool (cutting what is left) and the stand-in. */
  stop(): Promise<void>;
}

/**
 * An upstream whose endpoints are `backends` (published ready), once the pool has them all.
 * Wired as the gateway wires one: `discoveryFor(config)` and `pool.update` on every set.
 */
export async function startKubernetesUpstream(backends: readonly MirrorBackend[]): Promise<KubernetesUpstream> {
  // The stand-in, not a cluster these tests may run in (in-cluster config comes first).
  delete process.env.KUBERNETES_SERVICE_HOST;
  const dir = await mkdtemp(join(tmpdir(), "grpc-edge-k8s-load-"));
  const apiserver = await FakeApiServer.start();
  const config: DiscoveryConfig = {
    kind: "kubernetes",
    namespace: "default",
    service,
    port: "grpc",
    kubeconfig: await apiserver.writeKubeconfig(dir),
    api: "endpointslices",
    zone: undefined,
  };
  const pool = defaultPool();
  const poolFeed = feed(pool);
  const stopDiscovery = new AbortController();

  const upstream: KubernetesUpstream = {
    apiserver,
    pool,
    feed: poolFeed,
    publish(backend, condition) {
      apiserver.applySlice(podSlice(backend, condition));
      return performance.now();
    },
    unpublish(backend) {
      apiserver.deleteSlice("default", sliceName(backend));
      return performance.now();
    },
    async stop() {
      stopDiscovery.abort();
      await pool.close(false);
      await apiserver.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    for (const backend of backends) upstream.publish(backend, "ready");
    const discovery = await discoveryFor(config);
    discovery.start(poolFeed.events, stopDiscovery.signal);
    const wanted = backends.map(keyOf).sort().join();
    await poolFeed.waitForSet((endpoints) => endpoints.map(endpointKey).sort().join() === wanted);
  } catch (e) {
    await upstream.stop();
    throw e;
  }
  return upstream;
}

/** The endpoint key of a backend. */
export function keyOf(backend: MirrorBackend): string {
  return endpointKey(backend);
}

function sliceName(backend: MirrorBackend): string {
  return `${service}-${backend.port}`;
}

function podSlice(backend: MirrorBackend, condition: PodCondition): KubeObject {
  return endpointSlice({
    service,
    name: sliceName(backend),
    ports: [{ name: "grpc", port: backend.port }],
    endpoints: [{ ip: backend.address, pod: `${service}-${backend.port}`, ...podConditions[condition] }],
  });
}

// ---------------------------------------------------------------------------------------------

export const sleep = delay;

export { waitFor };
