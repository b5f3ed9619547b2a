/**
 * DNS discovery against the fake DNS server over UDP loopback: what each kind of answer does
 * to the endpoint set, when lookups happen, and that stopping leaves nothing running.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { startFakeDnsServer, type FakeDnsServer } from "../../tests/dns/fake-dns-server.ts";
import { dnsDiscovery, type DnsDiscoveryOptions } from "./dns.ts";
import { endpointKey, type DiscoveredEndpoint } from "./types.ts";

let server: FakeDnsServer;
before(async () => {
  server = await startFakeDnsServer();
});
after(() => server.stop());

/** Polls `condition` every 10 ms; fails naming `what` after `timeoutMs`. */
async function eventually(what: string, condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** `promise`, or a failure naming `what` after `timeoutMs`; the timer never outlives the call. */
async function within<T>(what: string, promise: Promise<T>, timeoutMs: number): Promise<T> {
  const timer = new AbortController();
  const timeout = sleep(timeoutMs, undefined, { signal: timer.signal }).then(() =>
    assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`),
  );
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    timer.abort();
  }
}

interface Started {
  readonly sets: (readonly DiscoveredEndpoint[])[];
  readonly errors: Error[];
  /** Keys of the last set emitted. */
  last(): string[];
  refresh(): void;
  abort(): void;
}

/** Starts DNS discovery asking the fake server; stopped when the test ends. */
function start(t: TestContext, options: Omit<DnsDiscoveryOptions, "servers">): Started {
  const discovery = dnsDiscovery({ ...options, servers: [server.address] });
  const controller = new AbortController();
  t.after(() => controller.abort());
  const sets: (readonly DiscoveredEndpoint[])[] = [];
  const errors: Error[] = [];
  discovery.start({ onEndpoints: (set) => sets.push(set), onError: (e) => errors.push(e) }, controller.signal);
  return {
    sets,
    errors,
    last: () => (sets.at(-1) ?? []).map(endpointKey),
    refresh: () => discovery.refresh?.(),
    abort: () => controller.abort(),
  };
}

function sameKeys(expected: string[]): (started: Started) => () => boolean {
  return (started) => () => JSON.stringify(started.last()) === JSON.stringify(expected);
}

describe("A and AAAA", () => {
  test("the first set comes from the A records, every endpoint ready and named after the host", async (t) => {
    server.setRecords("first.test", { a: ["10.0.0.2", "10.0.0.1"] });
    const d = start(t, { host: "first.test", port: 50051, refreshMs: 60_000 });
    await eventually("the first set", () => d.sets.length === 1);
    const common = { port: 50051, ready: true, serving: true, terminating: false, name: "first.test" };
    assert.deepEqual(d.sets[0], [
      { address: "10.0.0.1", ...common },
      { address: "10.0.0.2", ...common },
    ]);
    assert.deepEqual(d.errors, []);
  });

  test("A and AAAA answers are merged, IPv4 first", async (t) => {
    server.setRecords("dual.test", { a: ["10.0.0.1"], aaaa: ["fd00::2", "fd00::1"] });
    const d = start(t, { host: "dual.test", port: 50051, refreshMs: 60_000 });
    await eventually("the first set", () => d.sets.length === 1);
    assert.deepEqual(d.last(), ["10.0.0.1:50051", "[fd00::1]:50051", "[fd00::2]:50051"]);
  });

  test("each refresh period looks again: scale-up and scale-down show, an unchanged answer emits nothing", async (t) => {
    server.setRecords("scale.test", { a: ["10.0.1.1", "10.0.1.2"] });
    const d = start(t, { host: "scale.test", port: 8080, refreshMs: 100 });
    await eventually("two endpoints", sameKeys(["10.0.1.1:8080", "10.0.1.2:8080"])(d));

    server.setRecords("scale.test", { a: ["10.0.1.1", "10.0.1.2", "10.0.1.3"] });
    await eventually("a third endpoint", sameKeys(["10.0.1.1:8080", "10.0.1.2:8080", "10.0.1.3:8080"])(d));
    server.setRecords("scale.test", { a: ["10.0.1.2", "10.0.1.3"] });
    await eventually("the first one gone", sameKeys(["10.0.1.2:8080", "10.0.1.3:8080"])(d));

    const emitted = d.sets.length;
    const asked = server.queries("scale.test", "A");
    await eventually("three more lookups", () => server.queries("scale.test", "A") >= asked + 3);
    assert.equal(d.sets.length, emitted, "no set is emitted when the answer did not change");
    assert.deepEqual(d.errors, []);
  });

  test("an IP literal host is its own endpoint and is never looked up", async (t) => {
    for (const host of ["127.0.0.9", "::1"]) {
      const d = start(t, { host, port: 50051, refreshMs: 100 });
      assert.deepEqual(d.sets, [[{ address: host, port: 50051, ready: true, serving: true, terminating: false, name: host }]]);
      await sleep(150);
      assert.equal(d.sets.length, 1);
      assert.equal(server.queries(host), 0);
    }
  });
});

describe("refresh()", () => {
  test("looks up at once, and at most once per minRefreshIntervalMs however often it is called", async (t) => {
    server.setRecords("pool.test", { a: ["10.0.2.1"] });
    const d = start(t, { host: "pool.test", port: 1, refreshMs: 60_000, minRefreshIntervalMs: 400 });
    await eventually("the first set", () => d.sets.length === 1);
    await sleep(450);

    server.setRecords("pool.test", { a: ["10.0.2.2"] });
    const asked = server.queries("pool.test", "A");
    d.refresh();
    await eventually("an immediate lookup", () => server.queries("pool.test", "A") === asked + 1, 150);
    await eventually("the new set", sameKeys(["10.0.2.2:1"])(d), 150);

    for (let i = 0; i < 20; i++) d.refresh();
    await sleep(150);
    assert.equal(server.queries("pool.test", "A"), asked + 1, "refresh() within the interval waits");
    await eventually("the deferred lookup", () => server.queries("pool.test", "A") === asked + 2, 600);
    await sleep(500);
    assert.equal(server.queries("pool.test", "A"), asked + 2, "twenty calls made one lookup");
  });

  test("adds nothing while a lookup is in flight", async (t) => {
    server.setRecords("inflight.test", { a: ["10.0.2.3"] });
    t.after(() => server.setMode("normal"));
    const d = start(t, { host: "inflight.test", port: 1, refreshMs: 60_000, lookupTimeoutMs: 400, minRefreshIntervalMs: 10 });
    await eventually("the first set", () => d.sets.length === 1);
    await sleep(20);
    server.setMode("drop");
    const asked = server.queries("inflight.test", "A");
    d.refresh();
    for (let i = 0; i < 25; i++) {
      await sleep(10);
      d.refresh();
    }
    assert.equal(server.queries("inflight.test", "A"), asked + 1);
  });
});

describe("failed lookups keep the last good set", () => {
  test("SERVFAIL reports onError, emits nothing, and the next good answer is used", async (t) => {
    server.setRecords("servfail.test", { a: ["10.0.3.1"] });
    t.after(() => server.setMode("normal"));
    const d = start(t, { host: "servfail.test", port: 1, refreshMs: 100, minRefreshIntervalMs: 50 });
    await eventually("the first set", () => d.sets.length === 1);

    server.setMode("servfail");
    await eventually("two reported failures", () => d.errors.length >= 2);
    assert.equal(d.sets.length, 1);
    const error = d.errors[0];
    assert.ok(error instanceof ConnectError);
    assert.equal(error.code, Code.Unavailable);
    assert.match(error.message, /servfail\.test.*ESERVFAIL/);

    server.setRecords("servfail.test", { a: ["10.0.3.2"] });
    server.setMode("normal");
    await eventually("recovery", sameKeys(["10.0.3.2:1"])(d));
  });

  test("a timed-out lookup reports onError and keeps the set, then recovers", async (t) => {
    server.setRecords("timeout.test", { a: ["10.0.4.1"], aaaa: ["fd00::4"] });
    t.after(() => server.setMode("normal"));
    const d = start(t, { host: "timeout.test", port: 1, refreshMs: 100, lookupTimeoutMs: 150, minRefreshIntervalMs: 50 });
    await eventually("the first set", () => d.sets.length === 1);

    server.setMode("drop");
    await eventually("a reported timeout", () => d.errors.length >= 1);
    assert.match(d.errors[0].message, /ETIMEOUT/);
    assert.equal(d.sets.length, 1);

    server.setRecords("timeout.test", { a: ["10.0.4.1"] });
    server.setMode("normal");
    await eventually("recovery", sameKeys(["10.0.4.1:1"])(d));
  });

  test("after a failure the lookup is retried sooner than the refresh period", async (t) => {
    server.setRecords("retry.test", { a: ["10.0.4.2"] });
    t.after(() => server.setMode("normal"));
    server.setMode("servfail");
    const d = start(t, { host: "retry.test", port: 1, refreshMs: 60_000, minRefreshIntervalMs: 100 });
    await eventually("a reported failure", () => d.errors.length === 1);
    assert.equal(d.sets.length, 0, "no set before the first good answer");
    server.setMode("normal");
    await eventually("the first set, well before the refresh period", () => d.sets.length === 1, 1_000);
  });
});

describe("no records is an answer: the set empties", () => {
  test("NXDOMAIN and NODATA empty the set; records fill it again", async (t) => {
    server.setRecords("zero.test", { a: ["10.0.5.1"] });
    const d = start(t, { host: "zero.test", port: 1, refreshMs: 100 });
    await eventually("the first set", sameKeys(["10.0.5.1:1"])(d));

    server.remove("zero.test");
    await eventually("the empty set after NXDOMAIN", () => d.sets.length === 2);
    assert.deepEqual(d.sets[1], []);

    server.setRecords("zero.test", { a: ["10.0.5.2"] });
    await eventually("a pod again", sameKeys(["10.0.5.2:1"])(d));

    server.setRecords("zero.test", {});
    await eventually("the empty set after NODATA", () => d.sets.length === 4);
    assert.deepEqual(d.sets[3], []);
    assert.deepEqual(d.errors, []);
  });

  test("a name that does not exist yet gives an empty first set", async (t) => {
    const d = start(t, { host: "not-yet.test", port: 1, refreshMs: 60_000 });
    await eventually("the first set", () => d.sets.length === 1);
    assert.deepEqual(d.sets[0], []);
  });
});

describe("SRV", () => {
  test("each record's port and target, in priority then weight order; a target without addresses adds none", async (t) => {
    server.setRecords("_grpc._tcp.srv.test", {
      srv: [
        { priority: 20, weight: 0, port: 50062, target: "b.srv.test" },
        { priority: 10, weight: 1, port: 50061, target: "a.srv.test" },
        { priority: 10, weight: 5, port: 50060, target: "c.srv.test" },
        { priority: 5, weight: 0, port: 50063, target: "gone.srv.test" },
      ],
    });
    server.setRecords("a.srv.test", { a: ["10.0.6.1"], aaaa: ["fd00::6"] });
    server.setRecords("b.srv.test", { a: ["10.0.6.2"] });
    server.setRecords("c.srv.test", { a: ["10.0.6.3"] });
    const d = start(t, { host: "unused.test", port: 1, srv: "_grpc._tcp.srv.test", refreshMs: 100 });
    await eventually("the first set", () => d.sets.length === 1);
    assert.deepEqual(
      d.sets[0].map((e) => [endpointKey(e), e.name]),
      [
        ["10.0.6.3:50060", "c.srv.test"],
        ["10.0.6.1:50061", "a.srv.test"],
        ["[fd00::6]:50061", "a.srv.test"],
        ["10.0.6.2:50062", "b.srv.test"],
      ],
    );
    assert.equal(server.queries("unused.test"), 0);

    server.setRecords("_grpc._tcp.srv.test", { srv: [{ priority: 1, weight: 1, port: 50070, target: "b.srv.test" }] });
    await eventually("the new SRV answer", sameKeys(["10.0.6.2:50070"])(d));
    server.setRecords("b.srv.test", { a: ["10.0.6.2", "10.0.6.4"] });
    await eventually("a target's new address", sameKeys(["10.0.6.2:50070", "10.0.6.4:50070"])(d));
    server.remove("_grpc._tcp.srv.test");
    await eventually("the empty set", sameKeys([])(d));
  });
});

describe("stopping", () => {
  test("abort clears the timer, or ends the lookup in flight; nothing runs or is emitted after", async (t) => {
    server.setRecords("stop.test", { a: ["10.0.7.1"] });
    t.after(() => server.setMode("normal"));
    const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === "Timeout").length;
    const before = timers();
    const options = { host: "stop.test", port: 1, refreshMs: 60_000, lookupTimeoutMs: 5_000, minRefreshIntervalMs: 10 };

    const waiting = start(t, options);
    await eventually("the first set", () => waiting.sets.length === 1);
    assert.equal(timers(), before + 1, "one timer while waiting");
    waiting.abort();
    assert.equal(timers(), before, "abort cleared it");

    const resolving = start(t, options);
    await eventually("the first set", () => resolving.sets.length === 1);
    await sleep(20);
    server.setMode("drop");
    const asked = server.queries("stop.test", "A");
    resolving.refresh();
    await eventually("a lookup in flight", () => server.queries("stop.test", "A") > asked);
    assert.equal(timers(), before, "no timer while a lookup is in flight");
    resolving.abort();
    await sleep(200);
    assert.equal(timers(), before);
    assert.equal(server.queries("stop.test", "A"), asked + 1, "no lookup after abort");
    assert.deepEqual([resolving.sets.length, resolving.errors.length], [1, 0], "no event after abort, not even the cancelled lookup's");
  });

  test("an aborted signal starts nothing", async () => {
    server.setRecords("pre-aborted.test", { a: ["10.0.7.2"] });
    const events: unknown[] = [];
    dnsDiscovery({ host: "pre-aborted.test", port: 1, refreshMs: 50, servers: [server.address] }).start(
      { onEndpoints: (s) => events.push(s), onError: (e) => events.push(e) },
      AbortSignal.abort(),
    );
    await sleep(100);
    assert.deepEqual(events, []);
    assert.equal(server.queries("pre-aborted.test"), 0);
  });
});

test("options are checked once, when the discovery is made", () => {
  const base = { host: "x.test", port: 1, refreshMs: 1_000 };
  for (const [options, why] of [
    [{ ...base, refreshMs: 0 }, /refreshMs/],
    [{ ...base, port: 70_000 }, /port/],
    [{ ...base, host: "" }, /host/],
    [{ ...base, lookupTimeoutMs: Number.NaN }, /lookupTimeoutMs/],
  ] as const) {
    assert.throws(() => dnsDiscovery(options), (e) => e instanceof ConnectError && e.code === Code.InvalidArgument && why.test(e.message));
  }
  assert.throws(() => dnsDiscovery({ ...base, servers: ["not an address"] }));
});

/** The child script runs DNS discovery in its own Node or Deno process. */
const childScript = fileURLToPath(new URL("../../tests/dns/discovery-child.ts", import.meta.url));
const denoBinary = fileURLToPath(new URL("../../node_modules/.bin/deno", import.meta.url));

interface ChildRun {
  readonly lines: Record<string, unknown>[];
  send(command: "refresh" | "abort"): void;
  /** Resolves with the exit code; the process is killed if the test ends first. */
  readonly exited: Promise<number | null>;
}

function runChild(t: TestContext, runtime: "node" | "deno", options: DnsDiscoveryOptions): ChildRun {
  const json = JSON.stringify(options);
  const [command, args] = runtime === "node"
    ? [process.execPath, [childScript, json]]
    : [denoBinary, ["run", "--allow-net", "--allow-read", "--allow-env", "--allow-sys", childScript, json]];
  const child = spawn(command, args, { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  });
  const lines: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on("line", (line) => lines.push(JSON.parse(line)));
  return { lines, send: (c) => child.stdin.write(`${c}\n`), exited };
}

test("once aborted, even mid-lookup, the process has nothing left to wait for and exits", async (t) => {
  server.setRecords("exit.test", { a: ["10.0.8.1"] });
  t.after(() => server.setMode("normal"));
  const options = { host: "exit.test", port: 1, servers: [server.address], refreshMs: 60_000, lookupTimeoutMs: 30_000 };
  // Waiting on a 60 s timer, then with a 30 s lookup in flight.
  for (const inFlight of [false, true]) {
    server.setMode("normal");
    const child = runChild(t, "node", options);
    await eventually("the first set", () => child.lines.some((l) => "endpoints" in l), 10_000);
    if (inFlight) {
      server.setMode("drop");
      const asked = server.queries("exit.test", "A");
      child.send("refresh");
      await eventually("a lookup in flight", () => server.queries("exit.test", "A") > asked);
    }
    child.send("abort");
    const abortedAt = performance.now();
    assert.equal(await within("the child's exit", child.exited, 5_000), 0, `in flight: ${inFlight}`);
    assert.ok(performance.now() - abortedAt < 2_000, "exits promptly, not after a timer or a lookup timeout");
  }
});

test("under Deno, which reports SERVFAIL as not found, an answer without addresses does not empty a set", async (t) => {
  server.setRecords("deno.test", { a: ["10.0.9.1"], aaaa: ["fd00::9"] });
  t.after(() => server.setMode("normal"));
  const child = runChild(t, "deno", {
    host: "deno.test",
    port: 1,
    servers: [server.address],
    refreshMs: 100,
    lookupTimeoutMs: 200,
    minRefreshIntervalMs: 50,
  });
  const sets = () => child.lines.filter((l) => "endpoints" in l).map((l) => l.endpoints);
  const errors = () => child.lines.filter((l) => "error" in l).map((l) => String(l.error));
  await eventually("the first set", () => sets().length === 1, 15_000);
  assert.deepEqual(sets()[0], ["10.0.9.1:1", "[fd00::9]:1"]);

  server.setRecords("deno.test", { a: ["10.0.9.2"] });
  await eventually("an update", () => sets().length === 2);
  assert.deepEqual(sets()[1], ["10.0.9.2:1"]);

  server.setMode("servfail");
  await eventually("a reported failure", () => errors().length >= 1);
  assert.match(errors()[0], /cannot tell from a failed lookup; keeping 1 endpoints/);
  server.setMode("drop");
  await eventually("a reported timeout", () => errors().some((e) => /ETIMEOUT/.test(e)));
  assert.equal(sets().length, 2);

  server.setMode("normal");
  server.setRecords("deno.test", { a: ["10.0.9.3"] });
  await eventually("recovery", () => sets().length === 3);
  assert.deepEqual(sets()[2], ["10.0.9.3:1"]);
  child.send("abort");
  assert.equal(await within("the child's exit", child.exited, 5_000), 0);
});
