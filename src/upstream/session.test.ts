import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { EndpointTransport, isNeverSent } from "./endpoint-transport.ts";
import { backoffDelayMs, defaultSessionOptions, EndpointSessions, type EndpointConnectivity } from "./session.ts";
import { freePort, input, mirrorMethods, startMirrorBackend } from "../../tests/backends/mirror-connect.ts";

import { startFreezableProxy } from "./testing/freezable-proxy.ts";
import { startRawBackend } from "./testing/raw-backend.ts";
import { delay, until } from "../../tests/support/wait.ts";

const { echoPost, slow, whoAmI } = mirrorMethods;
const limit = { timeout: 10_000 };

test("backoffDelayMs grows by the multiplier up to the cap, within the jitter", () => {
  const options = { ...defaultSessionOptions, backoffInitialMs: 100, backoffMaxMs: 1000, backoffMultiplier: 2, backoffJitter: 0.2 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 10].map((n) => backoffDelayMs(n, options, 0.5)),
    [100, 200, 400, 800, 1000, 1000],
  );
  assert.equal(backoffDelayMs(1, options, 0), 80);
  assert.equal(backoffDelayMs(1, options, 0.999999), 120);
});

test("sessions connect lazily on the first call and are reused", limit, async () => {
  const backend = await startMirrorBackend();
  const states: EndpointConnectivity[] = [];
  const sessions = new EndpointSessions(backend, {}, (s) => states.push(s));
  try {
    assert.equal(sessions.state, "idle");
    assert.equal(sessions.snapshot().sessions.length, 0);
    const t = new EndpointTransport({ sessions });
    await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
    await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
    assert.equal(sessions.state, "open");
    assert.deepEqual(states, ["connecting", "open"]);
    await until(() => sessions.snapshot().sessions[0]?.activeStreams === 0, "the streams to close");
    assert.deepEqual(sessions.snapshot().sessions, [{ state: "open", activeStreams: 0, maxConcurrentStreams: 2 ** 32 - 1 }]);
  } finally {
    await sessions.close(false);
    await backend.stop();
  }
  assert.equal(sessions.state, "closed");
});

test("a failed connect backs off (calls fail fast), then reconnects once the backend is up", limit, async () => {
  const port = await freePort();
  const sessions = new EndpointSessions({ address: "127.0.0.1", port }, { backoffInitialMs: 150, backoffJitter: 0 });
  const t = new EndpointTransport({ sessions });
  const call = () => t.unary(echoPost, undefined, 2000, undefined, input(echoPost) as never);
  let backend: Awaited<ReturnType<typeof startMirrorBackend>> | undefined;
  try {
    await assert.rejects(call(), (e) => isNeverSent(e));
    assert.equal(sessions.state, "backoff");
    await assert.rejects(call(), (e: ConnectError) => isNeverSent(e) && /reconnecting in \d+ms/.test(e.message));
    assert.equal(sessions.snapshot().connectFailures, 1);
    assert.match(sessions.snapshot().lastError ?? "", /ECONNREFUSED/);
    backend = await startMirrorBackend({ port });
    await until(() => sessions.state === "idle", "the backoff to end");
    await call();
    assert.equal(sessions.state, "open");
    assert.equal(sessions.snapshot().connectFailures, 0);
  } finally {
    await sessions.close(false);
    await backend?.stop();
  }
});

test("a peer that never completes the HTTP/2 handshake fails calls at the connect timeout", limit, async () => {
  const silent = createTcpServer(() => {});
  await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
  const port = (silent.address() as AddressInfo).port;
  const sessions = new EndpointSessions({ address: "127.0.0.1", port }, { connectTimeoutMs: 200 });
  try {
    const t = new EndpointTransport({ sessions });
    const started = performance.now();
    const error = await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never).catch((e) => e);
    const took = performance.now() - started;
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.Unavailable);
    assert.ok(took >= 190 && took < 1000, `failed after ${took.toFixed(0)}ms`);
    await until(() => sessions.state === "backoff", "the endpoint to back off");
    assert.match(sessions.snapshot().lastError ?? "", /connect timeout after 200ms/);
  } finally {
    await sessions.close(false);
    silent.close();
  }
});

test("GOAWAY: the old session finishes its call, new calls go to a fresh session", limit, async () => {
  const backend = await startMirrorBackend();
  const sessions = new EndpointSessions(backend);
  try {
    const t = new EndpointTransport({ sessions });
    await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
    const first = sessions.acquire();
    const inFlight = t.unary(slow, undefined, 5000, undefined, input(slow, { millis: 300 }) as never);
    await until(() => (backend.started.get("Slow") ?? 0) === 1, "the slow call to start");
    backend.goaway();
    await until(() => first.state === "draining", "the session to drain");
    assert.equal(sessions.state, "idle");
    await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
    assert.notEqual(sessions.acquire(), first, "a fresh session took the new call");
    const response = await inFlight;
    assert.equal((response.message as unknown as { s: string }).s, "slept 300");
    await until(() => first.state === "closed", "the old session to close");
  } finally {
    await sessions.close(false);
    await backend.stop();
  }
});

test("close(graceful) waits for in-flight calls; close(false) cuts them", limit, async () => {
  const backend = await startMirrorBackend();
  try {
    const graceful = new EndpointSessions(backend);
    const t1 = new EndpointTransport({ sessions: graceful });
    const finishing = t1.unary(slow, undefined, 5000, undefined, input(slow, { millis: 200 }) as never);
    await until(() => (backend.started.get("Slow") ?? 0) === 1, "the call to start");
    const closed = graceful.close(true);
    assert.equal(graceful.state, "draining");
    await assert.rejects(
      t1.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never),
      (e) => isNeverSent(e),
    );
    await finishing;
    await closed;
    assert.equal(graceful.state, "closed");

    const abrupt = new EndpointSessions(backend);
    const t2 = new EndpointTransport({ sessions: abrupt });
    const cut = t2.unary(slow, undefined, 5000, undefined, input(slow, { millis: 2000 }) as never);
    await until(() => (backend.started.get("Slow") ?? 0) === 2, "the call to start");
    const failed = assert.rejects(cut, (e: ConnectError) => e.code === Code.Unavailable);
    await abrupt.close(false);
    await failed;
  } finally {
    await backend.stop();
  }
});

test("a second session opens when the first is at the peer's MAX_CONCURRENT_STREAMS", limit, async () => {
  const backend = await startRawBackend({ settings: { maxConcurrentStreams: 2 }, delayMs: 150 });
  const sessions = new EndpointSessions(backend);
  try {
    const t = new EndpointTransport({ sessions });
    await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
    assert.equal(sessions.snapshot().sessions[0].maxConcurrentStreams, 2);
    await until(() => sessions.snapshot().sessions[0].activeStreams === 0, "the first stream to close");
    const calls = Array.from({ length: 6 }, () => t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never));
    const during = sessions.snapshot().sessions;
    await Promise.all(calls);
    assert.deepEqual(during.map((s) => s.activeStreams), [2, 2, 2], "six calls over three sessions, two each");
    assert.equal(backend.connections, 3);
    assert.equal(backend.maxConcurrentPerConnection, 2);
    assert.equal(sessions.state, "open");
  } finally {
    await sessions.close(false);
    await backend.stop();
  }
});

test("at maxSessions the least busy session takes the call (node:http2 queues it), none fails", limit, async () => {
  const backend = await startRawBackend({ settings: { maxConcurrentStreams: 1 }, delayMs: 50 });
  const sessions = new EndpointSessions(backend, { maxSessions: 2 });
  try {
    const t = new EndpointTransport({ sessions });
    await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
    await until(() => sessions.snapshot().sessions[0].activeStreams === 0, "the first stream to close");
    await Promise.all(Array.from({ length: 6 }, () => t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never)));
    assert.equal(backend.connections, 2);
    assert.equal(backend.maxConcurrentPerConnection, 1);
  } finally {
    await sessions.close(false);
    await backend.stop();
  }
});

test("a session with no streams for idleTimeout closes; the next call opens a fresh one", limit, async () => {
  const backend = await startRawBackend();
  const states: EndpointConnectivity[] = [];
  const sessions = new EndpointSessions(backend, { idleTimeoutMs: 250 }, (s) => states.push(s));
  try {
    const t = new EndpointTransport({ sessions });
    for (let i = 0; i < 6; i++) {
      await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
      await delay(50);
    }
    assert.equal(backend.connections, 1, "calls 50 ms apart keep a 250 ms idle timeout from firing");
    await until(() => sessions.state === "idle", "the idle close");
    await until(() => sessions.snapshot().sessions.length === 0, "the idle session to be gone");
    assert.deepEqual(states, ["connecting", "open", "idle"]);
    await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
    assert.equal(backend.connections, 2);
  } finally {
    await sessions.close(false);
    await backend.stop();
  }
});

test("a busy session is not closed for idleness and sends keepalive PINGs; an idle one sends none", limit, async () => {
  const backend = await startRawBackend({ delayMs: 400 });
  const sessions = new EndpointSessions(backend, { idleTimeoutMs: 150, keepaliveIntervalMs: 50 });
  try {
    const t = new EndpointTransport({ sessions });
    await t.unary(whoAmI, undefined, 5000, undefined, input(whoAmI) as never);
    assert.ok(backend.pings >= 3, `${backend.pings} PINGs during a 400 ms call`);
    assert.equal(backend.connections, 1, "the session stayed open through the call");
    await until(() => sessions.snapshot().sessions[0]?.activeStreams === 0, "the stream to close");
    await delay(10);
    const pingsWhenIdle = backend.pings;
    await delay(120);
    assert.equal(backend.pings, pingsWhenIdle, "no PING without streams");
  } finally {
    await sessions.close(false);
    await backend.stop();
  }
});

test("an unanswered keepalive PING closes the connection: the call fails Unavailable long before its deadline", limit, async () => {
  const backend = await startRawBackend({ delayMs: 10_000 });
  const proxy = await startFreezableProxy(backend.port);
  const sessions = new EndpointSessions({ address: "127.0.0.1", port: proxy.port }, { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 100 });
  try {
    const t = new EndpointTransport({ sessions });
    const call = t.unary(echoPost, undefined, 8000, undefined, input(echoPost) as never);
    await until(() => backend.calls === 1, "the call to arrive");
    proxy.freeze();
    const started = performance.now();
    const error = await call.catch((e) => e);
    assert.ok(error instanceof ConnectError, String(error));
    assert.equal(error.code, Code.Unavailable);
    assert.ok(performance.now() - started < 3000);
    assert.match(error.message, /connection lost: keepalive PING unanswered after 100ms/);
    await until(() => sessions.state === "idle", "the dead session to be dropped");
  } finally {
    await sessions.close(false);
    await proxy.stop();
    await backend.stop();
  }
});
