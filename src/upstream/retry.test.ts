import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeFromName, defaultRetryPolicy, responseRetryable, retryBackoffMs, sleep } from "./retry.ts";

const unavailable = new ConnectError("down", Code.Unavailable);

test("responseRetryable: by code, attempts left and idempotency", () => {
  const policy = { ...defaultRetryPolicy, attempts: 3 };
  assert.equal(responseRetryable(policy, unavailable, 0, true), true);
  assert.equal(responseRetryable(policy, unavailable, 1, true), true);
  assert.equal(responseRetryable(policy, unavailable, 2, true), false, "three tries used");
  assert.equal(responseRetryable(policy, unavailable, 0, false), false, "not idempotent");
  assert.equal(responseRetryable({ ...policy, methods: "all" }, unavailable, 0, false), true);
  assert.equal(responseRetryable(policy, new ConnectError("x", Code.NotFound), 0, true), false);
  assert.equal(responseRetryable(policy, new Error("not a ConnectError"), 0, true), false);
  assert.equal(responseRetryable({ ...policy, attempts: 1 }, unavailable, 0, true), false);
});

test("retryBackoffMs: full jitter under base × 2^(n-1), capped", () => {
  const policy = { ...defaultRetryPolicy, backoffBaseMs: 10, backoffMaxMs: 50 };
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => retryBackoffMs(policy, n, 0.999999)), [9, 19, 39, 49, 49]);
  assert.equal(retryBackoffMs(policy, 3, 0), 0);
  assert.equal(retryBackoffMs(policy, 2, 0.5), 10);
});

test("codeFromName maps the config's lower_snake names (cancelled included)", () => {
  assert.equal(codeFromName("unavailable"), Code.Unavailable);
  assert.equal(codeFromName("resource_exhausted"), Code.ResourceExhausted);
  assert.equal(codeFromName("deadline_exceeded"), Code.DeadlineExceeded);
  assert.equal(codeFromName("cancelled"), Code.Canceled);
  assert.equal(codeFromName("unauthenticated"), Code.Unauthenticated);
  assert.throws(() => codeFromName("bogus"), /unknown gRPC code name bogus/);
});

test("sleep resolves after its time and rejects at once on abort", async () => {
  const started = performance.now();
  await sleep(20, undefined);
  assert.ok(performance.now() - started >= 15);
  const controller = new AbortController();
  const pending = sleep(10_000, controller.signal);
  controller.abort(new Error("stop"));
  await assert.rejects(pending, /stop/);
  await assert.rejects(sleep(10, controller.signal), /stop/);
});
