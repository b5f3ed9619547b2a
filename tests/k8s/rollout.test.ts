/**
 * Zero-loss rollout: under steady load, every endpoint is replaced one by one as a Deployment's
 * rolling update does (maxSurge 1, maxUnavailable 0): a new pod is published ready; the old one
 * is marked terminating; once the gateway has seen that (a preStop hook's job in a cluster) the
 * old pod shuts down gracefully, finishing its in-flight calls; then its endpoint is removed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { UpstreamPool } from "../../src/upstream/pool.ts";
import { input, mirrorMethods, startMirrorBackend, type MirrorBackend } from "../backends/mirror-connect.ts";
import { firstServedBy, hasEndpoint, keyOf, slow, sleep, startKubernetesUpstream, steadyLoad, tally, waitFor, type DeliveredSet } from "./load.ts";

/** A server stream through the pool; `backend` is known once its headers are in. */
async function openStream(pool: UpstreamPool, count: number, intervalMs: number) {
  async function* request() {
    yield input(mirrorMethods.stream, { count, intervalMs });
  }
  const response = await pool.stream(mirrorMethods.stream, undefined, 10_000, undefined, request());
  const received: number[] = [];
  const done = (async () => {
    for await (const m of response.message) received.push((m as unknown as { i32: number }).i32);
    return performance.now();
  })();
  return { backend: response.header.get("x-backend") ?? "", received, done };
}

interface Replacement {
  readonly old: string;
  /** When the set marking the old endpoint terminating reached the pool. */
  readonly terminatingAt: number;
  /** Calls on the old endpoint that were running at that moment. */
  readonly inFlightThen: number;
}

/** A backend and the name it answers with (WhoAmI, `x-backend`). */
interface Pod {
  readonly name: string;
  readonly backend: MirrorBackend;
}

function withinMs<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

async function startPod(name: string): Promise<Pod> {
  return { name, backend: await startMirrorBackend({ name }) };
}

test("a rolling update of every endpoint under steady load loses no call", { timeout: 60_000 }, async (t) => {
  const olds = await Promise.all(["old-0", "old-1", "old-2"].map(startPod));
  const news: Pod[] = [];
  const upstream = await startKubernetesUpstream(olds.map((p) => p.backend));
  const { pool } = upstream;
  // Calls of 10 ms on the backend from 8 callers: about two in flight on each endpoint at any time.
  const load = steadyLoad(slow(pool, 10), { concurrency: 8, maxDurationMs: 30_000 });
  try {
    await waitFor(() => tally(load.records).size === olds.length, "every old endpoint to answer");
    // A long server stream (about 1.5 s) on one old endpoint, which is replaced first so that its
    // drain has to wait for the stream.
    const stream = await openStream(pool, 30, 50);
    const streamPod = olds.find((p) => p.name === stream.backend);
    assert.ok(streamPod, `the stream runs on an old endpoint, not ${stream.backend}`);
    const order = [streamPod, ...olds.filter((p) => p !== streamPod)];
    let streamEndedAt: number | undefined;
    void stream.done.then((at) => (streamEndedAt = at), () => {}); // its failure is awaited below

    const replacements: Replacement[] = [];
    for (const [i, old] of order.entries()) {
      const next = await startPod(`new-${i}`);
      news.push(next);
      upstream.publish(next.backend, "ready");
      await waitFor(() => firstServedBy(load.records, next.name) !== undefined, `${next.name} to answer`);

      const markedAt = upstream.publish(old.backend, "terminating");
      const terminating: DeliveredSet = await upstream.feed.waitForSet((set) => hasEndpoint(set, old.backend, "terminating"), markedAt);
      if (old === streamPod) assert.equal(streamEndedAt, undefined, "the stream is still running when its endpoint terminates");
      // SIGTERM: the pod stops taking connections, finishes what it has, then exits; its server
      // closes once every connection has (so nothing is left in flight on it).
      await withinMs(old.backend.stop(true), 10_000, `${old.name} to finish its calls and close`);
      const removedAt = upstream.unpublish(old.backend);
      await upstream.feed.waitForSet((set) => !hasEndpoint(set, old.backend), removedAt);
      replacements.push({
        old: old.name,
        terminatingAt: terminating.at,
        inFlightThen: load.records.filter((r) => r.backend === old.name && r.startedAt < terminating.at && r.endedAt > terminating.at).length,
      });
    }
    await stream.done;
    // The new endpoints carry the load on their own for a while.
    await sleep(200);
    await load.stop();

    const served = tally(load.records);
    t.diagnostic(`calls: ${load.records.length}, per backend ${JSON.stringify(Object.fromEntries(served))}`);
    t.diagnostic(`in flight on each old endpoint when it was marked terminating: ${replacements.map((r) => `${r.old} ${r.inFlightThen}`).join(", ")}`);

    const failures = load.records.filter((r) => r.error !== undefined);
    assert.deepEqual(failures.map((r) => r.error!.message), [], "no call failed");
    assert.ok(load.records.length > 100, `${load.records.length} calls`);
    assert.ok(
      replacements.reduce((n, r) => n + r.inFlightThen, 0) > 0,
      "calls were in flight on old endpoints when they were marked terminating",
    );

    assert.deepEqual(stream.received, Array.from({ length: 30 }, (_, i) => i), "the long stream got every message, in order");
    assert.ok(streamEndedAt! > replacements[0].terminatingAt, "the stream ended after its endpoint was marked terminating");

    for (const old of olds) {
      assert.deepEqual(Object.fromEntries(old.backend.aborted), {}, `${old.name}: no call was cut`);
      const { terminatingAt } = replacements.find((r) => r.old === old.name)!;
      const late = load.records.filter((r) => r.backend === old.name && r.startedAt > terminatingAt);
      assert.equal(late.length, 0, `${old.name}: no call started after the pool saw it terminating went to it`);
    }
    for (const next of news) assert.ok((served.get(next.name) ?? 0) > 0, `${next.name} served calls`);

    const endpoints = pool.snapshot().endpoints;
    assert.deepEqual(endpoints.map((e) => e.key).sort(), news.map((p) => keyOf(p.backend)).sort(), "only the new endpoints are left");
    assert.ok(endpoints.every((e) => e.membership === "eligible" && e.inFlight === 0 && e.errors === 0), JSON.stringify(endpoints));
    assert.deepEqual(upstream.feed.errors, []);
  } finally {
    await load.stop();
    await upstream.stop();
    await Promise.all([...olds, ...news].map((p) => p.backend.stop()));
  }
});
