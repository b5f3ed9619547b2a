import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import type { Endpoint } from "../balancer.ts";
import { RoundRobin } from "./round-robin.ts";

interface FakeEndpoint extends Endpoint {
  healthy: boolean;
}

function endpoints(...keys: string[]): FakeEndpoint[] {
  return keys.map((key) => ({ key, inFlight: 0, latencyMs: 0, healthy: true }));
}

function picks(policy: RoundRobin<FakeEndpoint>, n: number, exclude?: Set<Endpoint>): string[] {
  return Array.from({ length: n }, () => policy.pick(exclude ? { exclude } : {})?.key ?? "-");
}

test("round_robin rotates strictly, starting where the injected random says", () => {
  const policy = new RoundRobin<FakeEndpoint>(() => 0.5);
  policy.update(endpoints("a", "b", "c", "d"));
  assert.deepEqual(picks(policy, 6), ["c", "d", "a", "b", "c", "d"]);
});

test("round_robin gives each of N healthy endpoints M/N ± 1 of M picks", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 9 }), fc.integer({ min: 0, max: 200 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (n, m, r) => {
      const policy = new RoundRobin<FakeEndpoint>(() => r);
      const list = endpoints(...Array.from({ length: n }, (_, i) => `e${i}`));
      policy.update(list);
      const counts = new Map<string, number>();
      for (const key of picks(policy, m)) counts.set(key, (counts.get(key) ?? 0) + 1);
      for (const e of list) {
        const got = counts.get(e.key) ?? 0;
        assert.ok(Math.abs(got - m / n) <= 1, `${e.key}: ${got} of ${m}`);
      }
    }),
  );
});

test("round_robin skips unhealthy and excluded endpoints, undefined when none is left", () => {
  const policy = new RoundRobin<FakeEndpoint>(() => 0);
  const list = endpoints("a", "b", "c");
  policy.update(list);
  list[1].healthy = false;
  assert.deepEqual(picks(policy, 4), ["a", "c", "a", "c"]);
  assert.deepEqual(picks(policy, 2, new Set([list[0]])), ["c", "c"]);
  list[0].healthy = false;
  list[2].healthy = false;
  assert.equal(policy.pick({}), undefined);
  list[1].healthy = true;
  assert.equal(policy.pick({ exclude: new Set([list[1]]) }), undefined);
  assert.equal(policy.pick({})?.key, "b");
});

test("round_robin continues the rotation across a set update", () => {
  const policy = new RoundRobin<FakeEndpoint>(() => 0);
  const [a, b, c, d] = endpoints("a", "b", "c", "d");
  policy.update([a, b, c]);
  assert.deepEqual(picks(policy, 2), ["a", "b"]);
  // c was next and is still there: it comes next, the newcomer takes its place in the order.
  policy.update([a, d, c, b]);
  assert.deepEqual(picks(policy, 3), ["c", "b", "a"]);
  // d is next but leaves: the nearest following endpoint of the old order still present goes next.
  policy.update([b, a, c]);
  assert.deepEqual(picks(policy, 3), ["c", "b", "a"]);
  policy.update([]);
  assert.equal(policy.pick({}), undefined);
  policy.update([d]);
  assert.deepEqual(picks(policy, 2), ["d", "d"]);
});
