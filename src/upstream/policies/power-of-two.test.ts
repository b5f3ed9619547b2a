import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { Endpoint } from "../balancer.ts";
import { defaultLatencyMs, leastRequestCost, peakEwmaCost, PowerOfTwoChoices } from "./power-of-two.ts";

interface FakeEndpoint extends Endpoint {
  inFlight: number;
  latencyMs: number;
  healthy: boolean;
}

function endpoints(...specs: Array<[string, number, number?]>): FakeEndpoint[] {
  return specs.map(([key, inFlight, latencyMs = 0]) => ({ key, inFlight, latencyMs, healthy: true }));
}

/** A random source that replays `values` in a loop. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length];
}

test("least_request takes the candidate with fewer calls in flight", () => {
  const list = endpoints(["a", 3], ["b", 1], ["c", 2]);
  // Draws: i = floor(0.1 × 3) = 0 (a); j = floor(0.6 × 2) = 1, shifted past i → 2 (c).
  const policy = new PowerOfTwoChoices<FakeEndpoint>(leastRequestCost, sequence(0.1, 0.6));
  policy.update(list);
  assert.equal(policy.pick({})?.key, "c");
});

test("least_request never picks the busiest endpoint while two or more are usable", () => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 8 }), fc.integer(), (n, seed) => {
      let state = seed;
      const random = () => ((state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
      const list = endpoints(...Array.from({ length: n }, (_, i): [string, number] => [`e${i}`, i === 0 ? 9 : i % 3]));
      const policy = new PowerOfTwoChoices<FakeEndpoint>(leastRequestCost, random);
      policy.update(list);
      for (let k = 0; k < 50; k++) assert.notEqual(policy.pick({})?.key, "e0");
    }),
  );
});

test("two candidates are always distinct: with two endpoints the cheaper one always wins", () => {
  const list = endpoints(["a", 1], ["b", 0]);
  const policy = new PowerOfTwoChoices<FakeEndpoint>(leastRequestCost, sequence(0, 0.3, 0.99, 0.5, 0.7, 0.01));
  policy.update(list);
  for (let i = 0; i < 6; i++) assert.equal(policy.pick({})?.key, "b");
});

test("unhealthy and excluded endpoints are never candidates", () => {
  const list = endpoints(["a", 0], ["b", 5], ["c", 9]);
  const policy = new PowerOfTwoChoices<FakeEndpoint>(leastRequestCost, sequence(0.2, 0.9, 0.5));
  policy.update(list);
  list[0].healthy = false;
  for (let i = 0; i < 5; i++) assert.equal(policy.pick({})?.key, "b");
  assert.equal(policy.pick({ exclude: new Set([list[1]]) })?.key, "c");
  assert.equal(policy.pick({ exclude: new Set([list[1], list[2]]) }), undefined);
  policy.update([]);
  assert.equal(policy.pick({}), undefined);
});

test("peak_ewma cost is latency × (in flight + 1), with a default latency before any measurement", () => {
  const [fresh, slow, busyFast] = endpoints(["fresh", 0], ["slow", 0, 100], ["busyFast", 5, 10]);
  assert.equal(peakEwmaCost(fresh), defaultLatencyMs);
  assert.equal(peakEwmaCost(slow), 100);
  assert.equal(peakEwmaCost(busyFast), 60);
  const policy = new PowerOfTwoChoices<FakeEndpoint>(peakEwmaCost, sequence(0, 0));
  policy.update([slow, busyFast]);
  assert.equal(policy.pick({})?.key, "busyFast");
  busyFast.inFlight = 20;
  assert.equal(policy.pick({})?.key, "slow");
});

test("with most endpoints out, picks come only from the usable ones, the cheaper of two", () => {
  const list = endpoints(...Array.from({ length: 100 }, (_, i): [string, number] => [`e${i}`, i]));
  for (const e of list) e.healthy = false;
  list[10].healthy = true;
  list[70].healthy = true;
  list[90].healthy = true;
  let state = 7;
  const random = () => ((state = (state * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
  const policy = new PowerOfTwoChoices<FakeEndpoint>(leastRequestCost, random);
  policy.update(list);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) seen.add(policy.pick({})!.key);
  assert.deepEqual([...seen].sort(), ["e10", "e70"], "e90 is never the cheaper of a pair");
  assert.equal(policy.pick({ exclude: new Set([list[10], list[70]]) })?.key, "e90");
});
