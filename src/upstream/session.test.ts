import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { EndpointTransport, isNeverSent } from "./endpoint-transport.ts";
import { backoffDelayMs, defaultSessionOptions, EndpointSessions, type EndpointConnectivity } from "./session.ts";
import { freePort, input, mirrorMethods, startMirrorBackend } from "../../tests/backends/mirror-connect.ts";

const { echoPost, slow } = mirrorMethods;
const limit = { timeout: 10_000 };

function until(condition: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = performance.now() + ms;
  return new Promise((resolve, reject) => {
    const check = () => {
      if (condition()) resolve();
      else if (performance.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(check, 5);
    };
    check();
  });
}

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
    assert.deepEqual(sessions.snapshot().sessions, [{ state: "open", activeStreams: 0 }]);
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
