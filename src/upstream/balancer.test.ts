import { test } from "node:test";
import assert from "node:assert/strict";
import { createPolicy, latencyDecayMs, peakEwma, type Endpoint } from "./balancer.ts";

test("createPolicy knows every config name and each picks from the set it was given", () => {
  const set: Endpoint[] = [
    { key: "a", inFlight: 0, latencyMs: 0, healthy: true },
    { key: "b", inFlight: 0, latencyMs: 0, healthy: true },
  ];
  for (const name of ["pick_first", "round_robin", "least_request", "peak_ewma"] as const) {
    const policy = createPolicy(name, () => 0);
    assert.equal(policy.pick({}), undefined, `${name} with no endpoints`);
    policy.update(set);
    assert.ok(set.includes(policy.pick({})!), name);
  }
});

test("peakEwma jumps to a slower sample and decays toward faster ones with time", () => {
  assert.equal(peakEwma(0, 12, 0), 12);
  assert.equal(peakEwma(10, 50, 5), 50);
  assert.equal(peakEwma(100, 10, 0), 100, "no time passed: a faster sample has no weight yet");
  const after = peakEwma(100, 10, latencyDecayMs);
  assert.ok(Math.abs(after - (10 + 90 / Math.E)) < 1e-9);
  assert.ok(peakEwma(100, 10, 100 * latencyDecayMs) < 10.001);
});
