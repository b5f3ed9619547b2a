/**
 * The pool under failure, over loopback: backends killed, failing, restarted, removed; the
 * retry budget and the ejection cap. Shares and counts only, with generous bounds.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { callInfoKey } from "./call-info.ts";
import { UpstreamPool, type EndpointSnapshot, type UpstreamOptions } from "./pool.ts";
import { startRawBackend, type RawBackend } from "./testing/raw-backend.ts";
import { delay, until } from "../../tests/support/wait.ts";
import { loopbackEndpoint, testPool } from "./testing/pool-fixtures.ts";
import { input, mirrorMethods, startMirrorBackend, type MirrorBackend } from "../../tests/backends/mirror-connect.ts";

const { whoAmI, stream, collect } = mirrorMethods;
const limit = { timeout: 30_000 };
const idempotent = createContextValues().set(callInfoKey, { idempotent: true, route: "GET /v1/whoami" });

const endpoint = (target: { port: number }) => loopbackEndpoint(target);
const pool = (options: Partial<UpstreamOptions> = {}) => testPool({ outlier: { consecutiveFailures: 3, baseEjectionMs: 300, maxEjectionMs: 1000 }, ...options });

async function whoAnswers(p: UpstreamPool, contextValues = idempotent): Promise<string> {
  const response = await p.unary(whoAmI, undefined, 5000, undefined, {} as never, contextValues);
  return (response.message as unknown as { backend: string }).backend;
}

function view(p: UpstreamPool, target: string): EndpointSnapshot {
  return p.snapshot().endpoints.find((e) => e.key === target)!;
}

/** `workers` loops calling until `stop` resolves; returns answers per backend and failures. */
async function load(p: UpstreamPool, workers: number, stop: Promise<unknown>) {
  const answers = new Map<string, number>();
  const failures: string[] = [];
  let running = true;
  void stop.then(() => (running = false));
  const worker = async () => {
    while (running) {
      try {
        const who = await whoAnswers(p);
        answers.set(who, (answers.get(who) ?? 0) + 1);
      } catch (e) {
        failures.push(String(e));
      }
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
  return { answers, failures };
}

test("a backend killed mid-load: no failed idempotent call, no call to it once it failed, traffic again once it is back", limit, async () => {
  // Answers take 20 ms, so the victim has calls in its handlers when it is killed.
  const list = await Promise.all([0, 1, 2].map(() => startMirrorBackend({ whoAmIDelayMs: 20 })));
  const victim = list[2];
  const p = pool();
  let revived: MirrorBackend | undefined;
  try {
    p.update(list.map((b) => endpoint(b)));
    const phases = (async () => {
      await until(() => (victim.started.get("WhoAmI") ?? 0) >= 20, "the victim to take calls");
      await victim.stop(false);
      await until(() => view(p, victim.target).state === "ejected", "the killed backend to be ejected");
      const callsAfterEjection = view(p, victim.target).calls;
      await delay(150);
      assert.equal(view(p, victim.target).calls, callsAfterEjection, "no call was sent to the ejected endpoint");
      revived = await startMirrorBackend({ port: victim.port, whoAmIDelayMs: 20 });
      const before = view(p, victim.target).calls;
      await until(() => view(p, victim.target).calls > before + 20, "the revived backend to get calls again", 8000);
    })();
    const { answers, failures } = await load(p, 12, phases);
    await phases;
    assert.deepEqual(failures, []);
    assert.ok((answers.get(victim.target) ?? 0) > 20, "the backend answered before it was killed and after it came back");
    assert.ok(view(p, victim.target).ejections >= 1);
    const cut = victim.aborted.get("WhoAmI") ?? 0;
    assert.ok(cut >= 1, "the kill cut calls in progress");
    assert.ok(p.snapshot().retries.policy >= cut, `the ${cut} cut calls were retried: ${JSON.stringify(p.snapshot().retries)}`);
  } finally {
    await p.close(false);
    await Promise.all([list[0].stop(), list[1].stop(), revived?.stop()]);
  }
});

test("a backend answering UNAVAILABLE for a while is ejected, then readmitted once it answers again", limit, async () => {
  const [good, flaky] = await Promise.all([startRawBackend(), startRawBackend()]);
  const p = pool({ retry: { attempts: 1 } });
  try {
    p.update([endpoint(good), endpoint(flaky)]);
    flaky.failing = true;
    let failed = 0;
    for (let i = 0; i < 20; i++) await whoAnswers(p).catch(() => failed++);
    assert.equal(failed, 3, "three consecutive UNAVAILABLE answers eject it (no retries in this pool)");
    assert.equal(view(p, flaky.target).state, "ejected");
    assert.ok(view(p, flaky.target).ejectedUntil !== undefined);
    assert.equal(flaky.calls, 3, "no call while ejected");
    flaky.failing = false;
    await until(() => view(p, flaky.target).state === "ready", "the ejection to end");
    const answers = await Promise.all(Array.from({ length: 10 }, () => whoAnswers(p)));
    assert.equal(answers.filter((who) => who === flaky.target).length, 5, "back in the rotation");
  } finally {
    await p.close(false);
    await Promise.all([good.stop(), flaky.stop()]);
  }
});

test("the ejection cap: with the whole fleet failing at most half is ejected, and calls still reach the rest", limit, async () => {
  const list = await Promise.all([startRawBackend(), startRawBackend(), startRawBackend(), startRawBackend()]);
  const p = pool({ retry: { attempts: 1 }, outlier: { consecutiveFailures: 2, baseEjectionMs: 5000, maxEjectionPercent: 50 } });
  try {
    p.update(list.map((b) => endpoint(b)));
    for (const b of list) b.failing = true;
    for (let i = 0; i < 40; i++) {
      await assert.rejects(whoAnswers(p), (e: ConnectError) => e.code === Code.Unavailable && /failing on purpose/.test(e.message));
    }
    const states = p.snapshot().endpoints.map((e) => e.state).sort();
    assert.deepEqual(states, ["ejected", "ejected", "ready", "ready"]);
    for (const b of list) b.failing = false;
    const answers = await Promise.all(Array.from({ length: 10 }, () => whoAnswers(p)));
    assert.equal(new Set(answers).size, 2, "the two endpoints left in answer");
  } finally {
    await p.close(false);
    await Promise.all(list.map((b) => b.stop()));
  }
});

test("retry budget: a fleet that always fails gets at most the budget's extra attempts", limit, async () => {
  const list = await Promise.all([startRawBackend(), startRawBackend(), startRawBackend()]);
  const p = pool({
    retry: { attempts: 5, backoffBaseMs: 1, backoffMaxMs: 2 },
    retryBudget: { percent: 20, minRetries: 5, windowMs: 60_000 },
    outlier: { consecutiveFailures: 1_000_000 },
  });
  try {
    p.update(list.map((b) => endpoint(b)));
    for (const b of list) b.failing = true;
    const requests = 200;
    for (let i = 0; i < requests; i++) await assert.rejects(whoAnswers(p));
    const attempts = list.reduce((n, b) => n + b.calls, 0);
    assert.ok(attempts <= requests * 1.2 + 5, `${attempts} attempts for ${requests} requests`);
    assert.ok(attempts >= requests * 1.2, `${attempts} attempts: the budget was used`);
    const retries = p.snapshot().retries;
    assert.equal(retries.policy, attempts - requests);
    assert.ok(retries.budgetExhausted > 0);
  } finally {
    await p.close(false);
    await Promise.all(list.map((b) => b.stop()));
  }
});

test("response retries go to another endpoint for idempotent calls only (by default)", limit, async () => {
  const [good, flaky] = await Promise.all([startRawBackend(), startRawBackend()]);
  const p = pool({ outlier: { consecutiveFailures: 1_000_000 } });
  try {
    p.update([endpoint(good), endpoint(flaky)]);
    flaky.failing = true;
    for (let i = 0; i < 10; i++) assert.equal(await whoAnswers(p), good.target);
    const notIdempotent = createContextValues().set(callInfoKey, { idempotent: false, route: "POST /v1/x" });
    let failed = 0;
    for (let i = 0; i < 10; i++) await whoAnswers(p, notIdempotent).catch(() => failed++);
    assert.equal(failed, 5, "every other POST lands on the failing backend and is not retried");
    const all = pool({ retry: { methods: "all" }, outlier: { consecutiveFailures: 1_000_000 } });
    all.update([endpoint(good), endpoint(flaky)]);
    for (let i = 0; i < 10; i++) assert.equal(await whoAnswers(all, notIdempotent), good.target);
    await all.close(false);
  } finally {
    await p.close(false);
    await Promise.all([good.stop(), flaky.stop()]);
  }
});

test("a stream whose response has not started is retried on an UNAVAILABLE answer, its input replayed", limit, async () => {
  const [flaky, good] = await Promise.all([startRawBackend(), startMirrorBackend()]);
  const p = pool({ random: () => 0, outlier: { consecutiveFailures: 1_000_000 } });
  try {
    p.update([endpoint(flaky), endpoint(good)]);
    flaky.failing = true;
    const served = await p.stream(stream, undefined, 5000, undefined, messagesOf(input(stream, { count: 3 })) as never, idempotent);
    const out: number[] = [];
    for await (const m of served.message) out.push((m as unknown as { i32: number }).i32);
    assert.deepEqual(out, [0, 1, 2]);
    assert.equal(served.header.get("x-backend"), good.target);
    const collected = await p.stream(
      collect,
      undefined,
      5000,
      undefined,
      messagesOf(...["a", "b", "c"].map((s) => input(collect, { s }))) as never,
      idempotent,
    );
    const answers: unknown[] = [];
    for await (const m of collected.message) answers.push(m);
    assert.deepEqual((answers[0] as { tags: string[] }).tags, ["a", "b", "c"]);
    assert.equal(flaky.calls, 2, "each call tried the failing backend first");
    assert.equal(p.snapshot().retries.policy, 2);
  } finally {
    await p.close(false);
    await Promise.all([flaky.stop(), good.stop()]);
  }
});

test("warm: every endpoint is connected at start, before any call", limit, async () => {
  const list = await Promise.all([startRawBackend(), startRawBackend()]);
  const p = pool({ warm: true });
  try {
    p.update(list.map((b) => endpoint(b)));
    await until(() => p.snapshot().endpoints.every((e) => e.connectivity === "open"), "both endpoints to connect");
    assert.deepEqual(list.map((b) => [b.connections, b.calls]), [[1, 0], [1, 0]]);
    const lazy = pool();
    lazy.update(list.map((b) => endpoint(b)));
    await delay(50);
    assert.deepEqual(lazy.snapshot().endpoints.map((e) => e.connectivity), ["idle", "idle"]);
    await lazy.close(false);
  } finally {
    await p.close(false);
    await Promise.all(list.map((b) => b.stop()));
  }
});

async function* messagesOf<T>(...items: T[]): AsyncGenerator<T> {
  yield* items;
}
