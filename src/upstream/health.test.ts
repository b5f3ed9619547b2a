import { test } from "node:test";
import assert from "node:assert/strict";
import type { DiscoveredEndpoint } from "../discovery/types.ts";
import { HealthVerdict } from "./health.ts";
import { UpstreamPool } from "./pool.ts";
import { startRawBackend } from "./testing/raw-backend.ts";
import { until } from "../../tests/support/wait.ts";
import { mirrorMethods } from "../../tests/backends/mirror-connect.ts";

const limit = { timeout: 20_000 };
const NOT_SERVING = 2;
const SERVING = 1;

test("HealthVerdict: the first result decides, then thresholds of results in a row", () => {
  const v = new HealthVerdict({ healthyThreshold: 2, unhealthyThreshold: 3 });
  assert.deepEqual([v.status, v.healthy], ["unknown", true]);
  assert.equal(v.record(true), true);
  assert.equal(v.status, "serving");
  assert.deepEqual([false, false].map((r) => v.record(r)), [false, false]);
  assert.equal(v.healthy, true, "two failures are under the threshold of three");
  assert.equal(v.record(true), false, "a success resets the count");
  assert.deepEqual([false, false, false].map((r) => v.record(r)), [false, false, true]);
  assert.deepEqual([v.status, v.healthy], ["not_serving", false]);
  assert.deepEqual([true, false, true, true].map((r) => v.record(r)), [false, false, false, true]);
  assert.equal(v.status, "serving");
  const first = new HealthVerdict({ healthyThreshold: 2, unhealthyThreshold: 3 });
  assert.equal(first.record(false), true, "unknown → not_serving on the first failure");
  assert.equal(first.healthy, false);
});

test("active health: an endpoint reported NOT_SERVING is taken out, and comes back when SERVING again", limit, async () => {
  const [a, b] = await Promise.all([startRawBackend(), startRawBackend()]);
  const p = new UpstreamPool({
    name: "mirror",
    balancer: "round_robin",
    timeoutMs: 5000,
    health: { service: "mirror.v1.Mirror", intervalMs: 30, timeoutMs: 500, healthyThreshold: 2, unhealthyThreshold: 2 },
  });
  const who = async () => {
    const r = await p.unary(mirrorMethods.whoAmI, undefined, 5000, undefined, {} as never);
    return (r.message as unknown as { backend: string }).backend;
  };
  const state = (target: string) => p.snapshot().endpoints.find((e) => e.key === target)!;
  try {
    p.update([{ address: "127.0.0.1", port: a.port, ready: true, serving: true, terminating: false }, { address: "127.0.0.1", port: b.port, ready: true, serving: true, terminating: false }]);
    await until(() => state(a.target).health === "serving" && state(b.target).health === "serving", "the first checks");
    b.healthStatus = NOT_SERVING;
    await until(() => state(b.target).state === "unhealthy", "b to be marked out");
    assert.equal(state(b.target).healthError, "NOT_SERVING");
    const callsBefore = b.calls;
    for (let i = 0; i < 10; i++) assert.equal(await who(), a.target);
    assert.equal(b.calls, callsBefore, "no call reached the NOT_SERVING endpoint");
    b.healthStatus = SERVING;
    await until(() => state(b.target).state === "ready", "b to come back");
    const answers = await Promise.all(Array.from({ length: 10 }, who));
    assert.equal(answers.filter((t) => t === b.target).length, 5);
    assert.ok(b.healthChecks >= 5);
    assert.equal(state(b.target).calls, 5, "health checks are not counted as calls");
  } finally {
    await p.close(false);
    await Promise.all([a.stop(), b.stop()]);
  }
  const checks = a.healthChecks;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(a.healthChecks, checks, "checks stop when the pool closes");
});
