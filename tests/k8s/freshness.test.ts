/**
 * Freshness: under steady load, a Service scaled from 2 to 3 endpoints sends traffic to the new
 * one as soon as its EndpointSlice is watched; the time from the change to its first answer is
 * reported (bench/freshness.ts measures it properly) and only loosely bounded here.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startMirrorBackend } from "../backends/mirror-connect.ts";
import { endpointKey } from "../../src/discovery/types.ts";
import { firstServedBy, hasEndpoint, startKubernetesUpstream, steadyLoad, tally, waitFor, whoAmI } from "./load.ts";

test("scaling 2 → 3 under steady load: the new endpoint gets traffic soon after the watch event", { timeout: 30_000 }, async (t) => {
  const [a, b, c] = await Promise.all(["a", "b", "c"].map((name) => startMirrorBackend({ name })));
  const upstream = await startKubernetesUpstream([a, b]);
  const load = steadyLoad(whoAmI(upstream.pool), { concurrency: 4, maxDurationMs: 10_000, pauseMs: 1 });
  try {
    await waitFor(() => tally(load.records).size === 2, "both endpoints to answer");

    // The new pod is up before it is published, as a ready pod is.
    const changedAt = upstream.publish(c, "ready");
    const delivered = await upstream.feed.waitForSet((set) => hasEndpoint(set, c, "ready"), changedAt);
    await waitFor(() => firstServedBy(load.records, "c") !== undefined, "the new endpoint to answer", 5_000);
    const firstAt = firstServedBy(load.records, "c")!;
    // Enough calls for round robin to show its share.
    await waitFor(() => load.records.filter((r) => r.endedAt > firstAt).length >= 90, "90 more calls");
    await load.stop();

    const ms = (x: number) => `${x.toFixed(1)} ms`;
    t.diagnostic(
      `change → set in the pool ${ms(delivered.at - changedAt)}, → first answer from the new endpoint ${ms(firstAt - delivered.at)}, total ${ms(firstAt - changedAt)}`,
    );
    assert.ok(firstAt - changedAt < 2_000, `first answer ${ms(firstAt - changedAt)} after the change`);
    assert.deepEqual(
      delivered.endpoints.map(endpointKey).sort(),
      [a, b, c].map((x) => x.target).sort(),
      "one set with all three",
    );

    const failures = load.records.filter((r) => r.error !== undefined);
    assert.deepEqual(failures.map((r) => r.error!.message), [], "no call failed");
    // After its first answer, round robin gives the new endpoint about a third of the calls.
    const after = tally(load.records.filter((r) => r.endedAt > firstAt));
    const total = [...after.values()].reduce((x, y) => x + y, 0);
    const share = (after.get("c") ?? 0) / total;
    t.diagnostic(`after that: ${total} calls, ${JSON.stringify(Object.fromEntries(after))}`);
    assert.ok(share > 0.2 && share < 0.5, `the new endpoint's share ${share.toFixed(2)}`);
    assert.deepEqual(upstream.feed.errors, []);
  } finally {
    await load.stop();
    await upstream.stop();
    await Promise.all([a, b, c].map((x) => x.stop()));
  }
});
