import { test } from "node:test";
import assert from "node:assert/strict";
import type { Endpoint } from "../balancer.ts";
import { PickFirst } from "./pick-first.ts";

interface FakeEndpoint extends Endpoint {
  healthy: boolean;
}

function endpoints(...keys: string[]): FakeEndpoint[] {
  return keys.map((key) => ({ key, inFlight: 0, latencyMs: 0, healthy: true }));
}

function pick(policy: PickFirst<FakeEndpoint>, exclude?: Endpoint[]): string {
  return policy.pick(exclude ? { exclude: new Set(exclude) } : {})?.key ?? "-";
}

test("pick_first sends every call to the first endpoint while it is healthy", () => {
  const policy = new PickFirst<FakeEndpoint>();
  policy.update(endpoints("a", "b", "c"));
  assert.deepEqual([pick(policy), pick(policy), pick(policy)], ["a", "a", "a"]);
});

test("pick_first fails over in list order and stays on the new endpoint after the first recovers", () => {
  const policy = new PickFirst<FakeEndpoint>();
  const [a, b, c] = endpoints("a", "b", "c");
  policy.update([a, b, c]);
  a.healthy = false;
  assert.equal(pick(policy), "b");
  a.healthy = true;
  assert.equal(pick(policy), "b");
  b.healthy = false;
  assert.equal(pick(policy), "c");
  c.healthy = false;
  assert.equal(pick(policy), "a", "wraps around to the start of the list");
  a.healthy = false;
  assert.equal(pick(policy), "-");
});

test("pick_first: an endpoint excluded for one call does not move the sticky choice", () => {
  const policy = new PickFirst<FakeEndpoint>();
  const [a, b, c] = endpoints("a", "b", "c");
  policy.update([a, b, c]);
  assert.equal(pick(policy, [a]), "b");
  assert.equal(pick(policy), "a");
  a.healthy = false;
  assert.equal(pick(policy, [b]), "c", "b is the new sticky endpoint, excluded for this call");
  assert.equal(pick(policy), "b");
  assert.equal(pick(policy, [a, b, c]), "-");
});

test("pick_first keeps its endpoint across a set update if it is still there, else restarts at the top", () => {
  const policy = new PickFirst<FakeEndpoint>();
  const [a, b, c, d] = endpoints("a", "b", "c", "d");
  policy.update([a, b, c]);
  a.healthy = false;
  assert.equal(pick(policy), "b");
  a.healthy = true;
  policy.update([d, c, b, a]);
  assert.equal(pick(policy), "b");
  policy.update([d, c, a]);
  assert.equal(pick(policy), "d");
  policy.update([]);
  assert.equal(pick(policy), "-");
});
