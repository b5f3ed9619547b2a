/**
 * Discovery through the real gateway: `node bin/grpc-edge.js --config FILE` with `kubernetes`
 * discovery against the API stand-in (tests/k8s/fake-apiserver.ts, the real list/watch
 * protocol over loopback), serving HTTP/JSON while the Service's EndpointSlices change. These
 * are the process-level counterparts of tests/k8s/{freshness,rollout}.test.ts, which drive an
 * UpstreamPool in process: here only the config file, HTTP and the admin port are used.
 *
 * DNS discovery through the CLI asks tests/dns's fake server (`dns.servers`); lookups in all
 * their forms are covered in process by src/discovery/dns.test.ts.
 */
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMirrorBackend, type MirrorBackend } from "../backends/mirror-connect.ts";
import { startFakeDnsServer } from "../dns/fake-dns-server.ts";
import { endpointSlice, FakeApiServer } from "../k8s/fake-apiserver.ts";
import { firstServedBy, podConditions, sleep, steadyLoad, tally, waitFor, type Call, type PodCondition } from "../k8s/load.ts";
import { mirrorConfig, startGatewayWithConfig, waitForStatus, type RunningGateway } from "./harness.ts";

// The gateway child inherits this environment: it must reach the stand-in, not a cluster the
// tests may run in (in-cluster config comes before a kubeconfig).
delete process.env.KUBERNETES_SERVICE_HOST;

const service = "mirror";

// ---------------------------------------------------------------------------------------------
// Fixtures

/** Registers a resource's cleanup; returns the resource. */
type Own = <T>(resource: T, stop: (resource: T) => unknown) => T;

/** Cleanups of one test, run in reverse order after it (pass or fail), each even if one throws. */
function teardown(t: TestContext): Own {
  const steps: Array<() => unknown> = [];
  t.after(async () => {
    const failures: unknown[] = [];
    for (const step of steps.reverse()) {
      try {
        await step();
      } catch (e) {
        failures.push(e);
      }
    }
    if (failures.length > 0) throw new AggregateError(failures, "cleanup failed");
  });
  return (resource, stop) => {
    steps.push(() => stop(resource));
    return resource;
  };
}

/** A backend ("pod") and the name it answers with (WhoAmI `backend`, `x-backend` header). */
interface Pod {
  readonly name: string;
  readonly backend: MirrorBackend;
}

/** The API stand-in holding the Service's slices, and a kubeconfig for it. */
interface Cluster {
  readonly apiserver: FakeApiServer;
  readonly kubeconfig: string;
  /** Writes the pod's own slice (backends differ by port, and a slice has one port set). */
  publish(pod: Pod, condition: PodCondition): number;
  unpublish(pod: Pod): number;
}

async function startCluster(own: Own): Promise<Cluster> {
  const dir = own(await mkdtemp(join(tmpdir(), "grpc-edge-discovery-")), (d) => rm(d, { recursive: true, force: true }));
  const apiserver = own(await FakeApiServer.start(), (s) => s.stop());
  const sliceName = (pod: Pod) => `${service}-${pod.backend.port}`;
  return {
    apiserver,
    kubeconfig: await apiserver.writeKubeconfig(dir),
    publish(pod, condition) {
      apiserver.applySlice(
        endpointSlice({
          service,
          name: sliceName(pod),
          ports: [{ name: "grpc", port: pod.backend.port }],
          endpoints: [{ ip: pod.backend.address, pod: pod.name, ...podConditions[condition] }],
        }),
      );
      return performance.now();
    },
    unpublish(pod) {
      apiserver.deleteSlice("default", sliceName(pod));
      return performance.now();
    },
  };
}

async function startPods(own: Own, names: readonly string[]): Promise<Pod[]> {
  return Promise.all(names.map(async (name) => ({ name, backend: own(await startMirrorBackend({ name }), (b) => b.stop()) })));
}

/** The gateway process on `discovery`; one worker, so round robin is one sequence and the admin port sees the only pool. */
async function startGateway(own: Own, discovery: object): Promise<RunningGateway> {
  return own(await startGatewayWithConfig(mirrorConfig({ static: [], discovery }, { workers: 1 })), (gw) => gw.stop());
}

function kubernetesDiscovery(cluster: Cluster) {
  return { kubernetes: { namespace: "default", service, port: "grpc", kubeconfig: cluster.kubeconfig } };
}

/** A gateway whose Service has `pods` published ready, once readyz says so. */
async function startKubernetesGateway(own: Own, pods: readonly Pod[]) {
  const cluster = await startCluster(own);
  for (const pod of pods) cluster.publish(pod, "ready");
  const gateway = await startGateway(own, kubernetesDiscovery(cluster));
  await waitForStatus(`${gateway.admin}/readyz`, 200);
  return { cluster, gateway };
}

// ---------------------------------------------------------------------------------------------
// HTTP through the gateway

/** GET `path`; the backend that answered (from `x-backend`), or an error naming the status and body. */
async function get(gateway: RunningGateway, path: string, signal?: AbortSignal): Promise<{ backend: string; body: string }> {
  const response = await fetch(`${gateway.url}${path}`, { signal });
  const body = await response.text();
  if (response.status !== 200) throw new Error(`GET ${path}: ${response.status} ${body}`);
  return { backend: response.headers.get("grpc-metadata-x-backend") ?? "", body };
}

const whoAmI =
  (gateway: RunningGateway): Call =>
  async (signal) =>
    (JSON.parse((await get(gateway, "/v1/whoami", signal)).body) as { backend: string }).backend;

const slow =
  (gateway: RunningGateway, millis: number): Call =>
  async (signal) =>
    (await get(gateway, `/v1/slow/${millis}`, signal)).backend;

/** A `GET /v1/stream/{count}` NDJSON stream; `backend` is known once its headers are in. */
async function openStream(gateway: RunningGateway, count: number, intervalMs: number) {
  const response = await fetch(`${gateway.url}/v1/stream/${count}?intervalMs=${intervalMs}`, { signal: AbortSignal.timeout(15_000) });
  assert.equal(response.status, 200);
  const lines: unknown[] = [];
  const done = (async () => {
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let rest = "";
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      const parts = (rest + chunk.value).split("\n");
      rest = parts.pop()!;
      for (const line of parts) lines.push(JSON.parse(line));
    }
    if (rest !== "") lines.push(JSON.parse(rest));
    return performance.now();
  })();
  return { backend: response.headers.get("grpc-metadata-x-backend") ?? "", lines, done };
}

interface EndpointView {
  readonly key: string;
  readonly membership: "eligible" | "standby" | "draining";
  readonly inFlight: number;
}

async function endpointView(gateway: RunningGateway): Promise<EndpointView[]> {
  const view = (await (await fetch(`${gateway.admin}/debug/endpoints`)).json()) as { upstreams: Record<string, { endpoints: EndpointView[] }> };
  return view.upstreams.mirror.endpoints;
}

/** Polls /debug/endpoints until `accept` holds (bounded); returns when it did. */
async function waitForView(gateway: RunningGateway, what: string, accept: (endpoints: EndpointView[]) => boolean, timeoutMs = 5_000) {
  const deadline = performance.now() + timeoutMs;
  let last: EndpointView[] = [];
  while (performance.now() < deadline) {
    last = await endpointView(gateway);
    if (accept(last)) return performance.now();
    await sleep(10);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; endpoints: ${JSON.stringify(last)}`);
}

const keys = (endpoints: readonly EndpointView[], membership?: EndpointView["membership"]) =>
  endpoints
    .filter((e) => membership === undefined || e.membership === membership)
    .map((e) => e.key)
    .sort();
const targets = (pods: readonly Pod[]) => pods.map((p) => p.backend.target).sort();
const failuresOf = (records: readonly { error?: Error }[]) => records.filter((r) => r.error !== undefined).map((r) => r.error!.message);
const ms = (x: number) => `${x.toFixed(0)} ms`;

// ---------------------------------------------------------------------------------------------

test("kubernetes: readyz waits for the first endpoint set; then round robin alternates over the ready endpoints", { timeout: 20_000 }, async (t) => {
  const own = teardown(t);
  const pods = await startPods(own, ["a", "b"]);
  const cluster = await startCluster(own);
  // The API is unreachable when the gateway starts: discovery can deliver no set at all.
  await cluster.apiserver.stop();
  const gateway = await startGateway(own, kubernetesDiscovery(cluster));
  await sleep(300);
  const before = await fetch(`${gateway.admin}/readyz`);
  assert.equal(before.status, 503);
  assert.deepEqual(await before.json(), { ready: false, reason: "waiting for endpoint sets", upstreams: { mirror: false } });

  // The API answers that the Service has no endpoints: that is a first set, if an empty one.
  await cluster.apiserver.restart();
  await waitForStatus(`${gateway.admin}/readyz`, 200);
  const empty = await fetch(`${gateway.url}/v1/whoami`);
  assert.equal(empty.status, 503, "no endpoint: UNAVAILABLE");
  assert.equal(((await empty.json()) as { code: number }).code, 14);

  for (const pod of pods) cluster.publish(pod, "ready");
  await waitForView(gateway, "both endpoints", (e) => keys(e, "eligible").join() === targets(pods).join());
  const n = 20;
  const answers: string[] = [];
  for (let i = 0; i < 2 * n; i++) answers.push(await whoAmI(gateway)(AbortSignal.timeout(5_000)));
  assert.deepEqual(
    { a: answers.filter((x) => x === "a").length, b: answers.filter((x) => x === "b").length },
    { a: n, b: n },
  );
  assert.ok(
    answers.every((backend, i) => i === 0 || backend !== answers[i - 1]),
    `round robin alternates: ${answers.join(" ")}`,
  );
});

test("kubernetes: scaling 2 → 3 under steady HTTP load sends traffic to the new endpoint within 3 s, no request fails", { timeout: 20_000 }, async (t) => {
  const own = teardown(t);
  const [a, b, c] = await startPods(own, ["a", "b", "c"]);
  const { cluster, gateway } = await startKubernetesGateway(own, [a, b]);
  const load = own(steadyLoad(whoAmI(gateway), { concurrency: 4, maxDurationMs: 10_000, pauseMs: 2 }), (l) => l.stop());
  await waitFor(() => tally(load.records).size === 2, "both endpoints to answer");

  // c is up before it is published, as a ready pod is.
  const changedAt = cluster.publish(c, "ready");
  await waitFor(() => firstServedBy(load.records, c.name) !== undefined, "the new endpoint to answer", 5_000);
  const firstAt = firstServedBy(load.records, c.name)!;
  await waitFor(() => load.records.filter((r) => r.startedAt > firstAt).length >= 60, "60 more requests");
  await load.stop();

  const after = tally(load.records.filter((r) => r.startedAt > firstAt));
  t.diagnostic(`slice update → first answer from the new endpoint ${ms(firstAt - changedAt)}; ${load.records.length} requests; after: ${JSON.stringify(Object.fromEntries(after))}`);
  assert.ok(firstAt - changedAt < 3_000, `first answer ${ms(firstAt - changedAt)} after the slice update`);
  assert.deepEqual(failuresOf(load.records), [], "no request failed");
  const total = [...after.values()].reduce((x, y) => x + y, 0);
  const share = (after.get(c.name) ?? 0) / total;
  assert.ok(share > 0.2 && share < 0.5, `the new endpoint's share ${share.toFixed(2)} of ${total}`);
});

test("kubernetes: a rolling update under steady HTTP load fails no request and finishes the running stream", { timeout: 30_000 }, async (t) => {
  const own = teardown(t);
  const olds = await startPods(own, ["old-0", "old-1"]);
  const { cluster, gateway } = await startKubernetesGateway(own, olds);
  // 20 ms calls from 6 callers: several in flight on each endpoint at any moment.
  const load = own(steadyLoad(slow(gateway, 20), { concurrency: 6, maxDurationMs: 20_000 }), (l) => l.stop());
  await waitFor(() => tally(load.records).size === olds.length, "both old endpoints to answer");
  // About 1.5 s of NDJSON on one old endpoint, replaced first so that its graceful stop waits for it.
  const streamCount = 30;
  const stream = await openStream(gateway, streamCount, 50);
  const streamPod = olds.find((p) => p.name === stream.backend);
  assert.ok(streamPod, `the stream runs on an old endpoint, not ${JSON.stringify(stream.backend)}`);
  let streamEndedAt: number | undefined;
  void stream.done.then((at) => (streamEndedAt = at), () => {}); // its failure is awaited below

  const news: Pod[] = [];
  /** Per old pod: when its terminating slice was written, and when the gateway showed it taking no new calls. */
  const terminations = new Map<string, { markedAt: number; notEligibleAt: number }>();
  for (const [i, old] of [streamPod, ...olds.filter((p) => p !== streamPod)].entries()) {
    const [next] = await startPods(own, [`new-${i}`]);
    news.push(next);
    cluster.publish(next, "ready");
    await waitFor(() => firstServedBy(load.records, next.name) !== undefined, `${next.name} to answer`);

    const markedAt = cluster.publish(old, "terminating");
    // What a preStop hook waits for in a cluster: the gateway sends no new calls there (the
    // endpoint drains, or has drained already and left the view).
    const notEligibleAt = await waitForView(gateway, `${old.name} to take no new calls`, (e) => !keys(e, "eligible").includes(old.backend.target));
    terminations.set(old.name, { markedAt, notEligibleAt });
    if (old === streamPod) assert.equal(streamEndedAt, undefined, "the stream is still running when its endpoint terminates");
    // SIGTERM: GOAWAY, in-flight calls (the stream) finish, then the server closes.
    await old.backend.stop(true);
    cluster.unpublish(old);
  }
  await stream.done;
  await waitForView(gateway, "only the new endpoints", (e) => keys(e).join() === targets(news).join());
  // The new endpoints carry the load on their own for a while.
  const replacedAt = performance.now();
  await sleep(200);
  await load.stop();

  const served = tally(load.records);
  const inFlightWhenMarked = olds.map((old) => {
    const { markedAt } = terminations.get(old.name)!;
    return load.records.filter((r) => r.backend === old.name && r.startedAt < markedAt && r.endedAt > markedAt).length;
  });
  t.diagnostic(`${load.records.length} requests, per backend ${JSON.stringify(Object.fromEntries(served))}; in flight on each old endpoint when marked terminating: ${inFlightWhenMarked.join(", ")}`);
  assert.deepEqual(failuresOf(load.records), [], "every request answered 200");
  const received = (stream.lines as Array<{ result?: { i32: number } }>).map((l) => l.result?.i32);
  assert.deepEqual(received, Array.from({ length: streamCount }, (_, i) => i), "the stream got every line, in order, and no error line");
  assert.ok(
    inFlightWhenMarked.reduce((x, y) => x + y, 0) > 0,
    "requests were in flight on old endpoints when they were marked terminating",
  );
  for (const next of news) assert.ok((served.get(next.name) ?? 0) > 0, `${next.name} served requests`);
  assert.ok(load.records.some((r) => r.startedAt > replacedAt), "requests went on after the update");
  for (const old of olds) {
    assert.deepEqual(Object.fromEntries(old.backend.aborted), {}, `${old.name}: no call was cut`);
    const { notEligibleAt } = terminations.get(old.name)!;
    const late = load.records.filter((r) => r.backend === old.name && r.startedAt > notEligibleAt);
    assert.equal(late.length, 0, `${old.name}: no request sent after the gateway showed it taking no new calls went to it`);
  }

  const endpoints = await endpointView(gateway);
  assert.deepEqual(keys(endpoints), targets(news), "/debug/endpoints lists only the new endpoints");
  assert.ok(endpoints.every((e) => e.membership === "eligible"), JSON.stringify(endpoints));
});

test("kubernetes: with the API server gone the gateway serves the last set; back with a changed set, it follows", { timeout: 30_000 }, async (t) => {
  const own = teardown(t);
  const [a, b, c] = await startPods(own, ["a", "b", "c"]);
  const { cluster, gateway } = await startKubernetesGateway(own, [a, b]);
  const load = own(steadyLoad(whoAmI(gateway), { concurrency: 2, maxDurationMs: 20_000, pauseMs: 5 }), (l) => l.stop());
  await waitFor(() => tally(load.records).size === 2, "both endpoints to answer");

  await cluster.apiserver.stop();
  const goneAt = performance.now();
  await sleep(1_000);
  const whileGone = tally(load.records.filter((r) => r.startedAt > goneAt));
  assert.deepEqual([...whileGone.keys()].sort(), ["a", "b"], `both endpoints serve while the API is gone: ${JSON.stringify(Object.fromEntries(whileGone))}`);

  // While it is away, the Deployment changes: c comes, a goes (a's process stays up, so only
  // the gateway's view can keep requests from it).
  cluster.publish(c, "ready");
  cluster.unpublish(a);
  await cluster.apiserver.restart();
  const backAt = performance.now();
  const followedAt = await waitForView(gateway, "b and c as the set", (e) => keys(e, "eligible").join() === targets([b, c]).join(), 15_000);
  await waitFor(() => load.records.filter((r) => r.startedAt > followedAt).length >= 40, "40 more requests");
  await load.stop();

  t.diagnostic(`API back → new set in the gateway ${ms(followedAt - backAt)}; ${load.records.length} requests`);
  assert.deepEqual(failuresOf(load.records), [], "no request failed");
  const since = tally(load.records.filter((r) => r.startedAt > followedAt));
  assert.deepEqual([...since.keys()].sort(), ["b", "c"], `after the change: ${JSON.stringify(Object.fromEntries(since))}`);
  assert.match(gateway.output(), /warning: upstream mirror: discovery: /, "the gateway reported the API being unreachable");
});

test("dns: an IP literal host from the config file is the upstream's one endpoint", { timeout: 20_000 }, async (t) => {
  const own = teardown(t);
  const [pod] = await startPods(own, ["literal"]);
  const gateway = await startGateway(own, { dns: { host: pod.backend.address, port: pod.backend.port } });
  await waitForStatus(`${gateway.admin}/readyz`, 200);
  assert.equal(await whoAmI(gateway)(AbortSignal.timeout(5_000)), "literal");
  assert.deepEqual(keys(await endpointView(gateway)), [pod.backend.target]);
});

test("dns: SRV answers from the configured name server; every endpoint failing re-resolves at once", { timeout: 30_000 }, async (t) => {
  const own = teardown(t);
  const dns = own(await startFakeDnsServer(), (d) => d.stop());
  const [a, b] = await startPods(own, ["a", "b"]);
  const srv = "_grpc._tcp.mirror.test";
  const targetOf = (pod: Pod) => ({ priority: 0, weight: 1, port: pod.backend.port, target: "backends.test" });
  dns.setRecords("backends.test", { a: ["127.0.0.1"] });
  dns.setRecords(srv, { srv: [targetOf(a)] });
  // An hour between lookups: only the pool's call for a fresh look can bring b in.
  const gateway = await startGateway(own, { dns: { srv, refresh: "1h", servers: [dns.address] } });
  await waitForStatus(`${gateway.admin}/readyz`, 200);
  assert.equal(await whoAmI(gateway)(AbortSignal.timeout(5_000)), "a");

  dns.setRecords(srv, { srv: [targetOf(b)] });
  const queriesBefore = dns.queries(srv);
  await a.backend.stop();
  // The first requests fail over nothing (a is the only endpoint) and make the pool ask again.
  const deadline = performance.now() + 10_000;
  let answer = "";
  while (answer !== "b" && performance.now() < deadline) {
    answer = await whoAmI(gateway)(AbortSignal.timeout(5_000)).catch(() => "");
    if (answer !== "b") await sleep(50);
  }
  assert.equal(answer, "b", "b answers after a re-resolution");
  assert.ok(dns.queries(srv) > queriesBefore, "the SRV name was asked again");
  assert.deepEqual(keys(await endpointView(gateway)), [b.backend.target]);
});
