/**
 * Kubernetes discovery against the API stand-in: what it emits, and how its watch survives
 * cuts, stalls, 410 Gone and an API server that goes away.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { until as waitFor } from "../support/wait.ts";
import { kubernetesDiscovery, type KubernetesDiscoveryOptions } from "../../src/discovery/kubernetes.ts";
import { endpointKey, type DiscoveredEndpoint } from "../../src/discovery/types.ts";
import { endpointSlice, FakeApiServer, legacyEndpoints, type SliceEndpointSpec } from "./fake-apiserver.ts";

const slicesPath = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "k8s-discovery-"));
});
after(() => rm(dir, { recursive: true, force: true }));

let server: FakeApiServer;
let kubeconfig: string;
const running: AbortController[] = [];
beforeEach(async () => {
  server = await FakeApiServer.start({ bookmarkIntervalMs: 100 });
  kubeconfig = await server.writeKubeconfig(dir);
});
afterEach(async () => {
  for (const c of running.splice(0)) c.abort();
  await server.stop();
});

function slice(name: string, endpoints: readonly SliceEndpointSpec[], port = 50051, service = "mirror") {
  return endpointSlice({ service, name, ports: [{ name: "grpc", port }], endpoints });
}
const ready = (ip: string, zone?: string): SliceEndpointSpec => ({ ip, ready: true, serving: true, terminating: false, zone });

/** A started discovery and everything it reported. */
function start(options: Partial<KubernetesDiscoveryOptions> = {}) {
  const discovery = kubernetesDiscovery({
    namespace: "default",
    service: "mirror",
    port: "grpc",
    kubeconfig,
    // Not in a cluster, even when the tests run in one.
    serviceAccountRoot: join(dir, "no-service-account"),
    backoff: { baseMs: 20, maxMs: 200 },
    stallTimeoutMs: 2_000,
    debounceMs: 5,
    ...options,
  });
  const sets: (readonly DiscoveredEndpoint[])[] = [];
  const errors: Error[] = [];
  const errorTimes: number[] = [];
  const controller = new AbortController();
  running.push(controller);
  let seen = 0;
  const onError = (e: Error) => {
    errors.push(e);
    errorTimes.push(performance.now());
  };
  discovery.start({ onEndpoints: (set) => sets.push(set), onError }, controller.signal);
  return {
    discovery,
    sets,
    errors,
    errorTimes,
    stop: () => controller.abort(),
    /** The next emitted set (after those already taken), within `timeoutMs`. */
    async next(timeoutMs = 3_000): Promise<readonly DiscoveredEndpoint[]> {
      await waitFor(() => sets.length > seen, "an endpoint set", timeoutMs);
      return sets[seen++];
    },
    /** Waits for a set whose keys are `keys`, skipping others. */
    async until(keys: readonly string[], timeoutMs = 3_000): Promise<readonly DiscoveredEndpoint[]> {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const set = await this.next(Math.max(1, deadline - performance.now()));
        if (set.map(endpointKey).join() === keys.join()) return set;
      }
    },
  };
}


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const keys = (set: readonly DiscoveredEndpoint[]) => set.map(endpointKey);
const lists = () => server.requests.filter((r) => r.path === slicesPath && r.query.watch === undefined);
const watchRequests = () => server.requests.filter((r) => r.path === slicesPath && r.query.watch === "true");

describe("what kubernetes discovery emits", () => {
  test("the initial list, then a watch from its resourceVersion asking for bookmarks", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.2", "zone-a"), { ...ready("10.0.0.1"), pod: "mirror-7f9c" }]));
    server.applySlice(slice("other-a", [ready("10.0.9.9")], 50051, "other"));
    const d = start();
    const set = await d.next();
    assert.deepEqual(set, [
      { address: "10.0.0.1", port: 50051, ready: true, serving: true, terminating: false, name: "mirror-7f9c" },
      { address: "10.0.0.2", port: 50051, ready: true, serving: true, terminating: false, zone: "zone-a" },
    ]);
    await waitFor(() => server.openWatches === 1, "the watch");
    assert.deepEqual(lists()[0].query.labelSelector, "kubernetes.io/service-name=mirror");
    const watch = watchRequests()[0].query;
    assert.equal(watch.resourceVersion, server.resourceVersion);
    assert.equal(watch.allowWatchBookmarks, "true");
    assert.equal(watch.labelSelector, "kubernetes.io/service-name=mirror");
    assert.ok(Number(watch.timeoutSeconds) >= 300 && Number(watch.timeoutSeconds) <= 600, watch.timeoutSeconds);
    assert.ok(server.requests.every((r) => r.authenticated), "with the kubeconfig's token");
    assert.deepEqual(d.errors, []);
  });

  test("scaling 2 → 3 is emitted within 200 ms, as one set", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), ready("10.0.0.2")]));
    const d = start();
    assert.equal((await d.next()).length, 2);
    await waitFor(() => server.openWatches === 1, "the watch");
    const changedAt = performance.now();
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), ready("10.0.0.2"), ready("10.0.0.3")]));
    const set = await d.next(1_000);
    assert.ok(performance.now() - changedAt < 200, `${performance.now() - changedAt} ms`);
    assert.deepEqual(keys(set), ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"]);
    // A burst (the endpoint turning not-ready, then removed) is debounced into few sets, ending right.
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), ready("10.0.0.2"), { ip: "10.0.0.3", ready: false }]));
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), ready("10.0.0.2")]));
    assert.deepEqual(keys(await d.next()), ["10.0.0.1:50051", "10.0.0.2:50051"]);
    await sleep(50);
    assert.equal(d.sets.length, 3, "the burst became one set");
  });

  test("conditions as the API states them: terminating, serving while terminating, defaults when absent", async () => {
    server.applySlice(
      slice("mirror-a", [
        { ip: "10.0.0.1", ready: false, serving: true, terminating: true },
        { ip: "10.0.0.2", ready: false, serving: false, terminating: true },
        { ip: "10.0.0.3" },
        { ip: "10.0.0.4", ready: false },
        { ip: "10.0.0.5", ready: false, serving: true, terminating: false },
      ]),
    );
    const d = start();
    const flags = (await d.next()).map((e) => `${e.address} ${+e.ready}${+e.serving}${+e.terminating}`);
    assert.deepEqual(flags, [
      "10.0.0.1 011", // draining but still serving: the KEP-1672 fallback when nothing is ready
      "10.0.0.2 001", // draining, no longer serving
      "10.0.0.3 110", // no conditions: ready (so serving), not terminating
      "10.0.0.4 000", // not ready, serving unknown: as ready says
      "10.0.0.5 010",
    ]);
  });

  test("a port by name uses each slice's own number; by number, that number; slices without the name are left out", async () => {
    server.applySlice(slice("mirror-old", [ready("10.0.0.1")], 50051));
    server.applySlice(slice("mirror-new", [ready("10.0.0.2")], 60061));
    server.applySlice(
      endpointSlice({ service: "mirror", name: "mirror-metrics", ports: [{ name: "metrics", port: 9090 }], endpoints: [ready("10.0.0.3")] }),
    );
    const byName = start();
    assert.deepEqual(keys(await byName.next()), ["10.0.0.1:50051", "10.0.0.2:60061"]);
    const byNumber = start({ port: 7000 });
    assert.deepEqual(keys(await byNumber.next()), ["10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"]);
    const byDigits = start({ port: "7001" });
    assert.deepEqual(keys(await byDigits.next()), ["10.0.0.1:7001", "10.0.0.2:7001", "10.0.0.3:7001"]);
  });

  test("all slices of the service are merged; an endpoint in two slices shows once, at its best", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), { ip: "10.0.0.2", ready: false, serving: false }]));
    server.applySlice(slice("mirror-b", [ready("10.0.0.2"), ready("fd00::3")]));
    const d = start();
    const set = await d.next();
    assert.deepEqual(keys(set), ["10.0.0.1:50051", "10.0.0.2:50051", "[fd00::3]:50051"]);
    assert.equal(set[1].ready, true);
    await waitFor(() => server.openWatches === 1, "the watch");
    server.deleteSlice("default", "mirror-b");
    const after = await d.next();
    assert.deepEqual(keys(after), ["10.0.0.1:50051", "10.0.0.2:50051"]);
    assert.equal(after[1].ready, false);
  });

  test("no slices is an empty set, at start and when the last one goes", async () => {
    const d = start();
    assert.deepEqual(await d.next(), []);
    await waitFor(() => server.openWatches === 1, "the watch");
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    assert.equal((await d.next()).length, 1);
    server.deleteSlice("default", "mirror-a");
    assert.deepEqual(await d.next(), []);
  });

  test("hints.forZones are passed on", async () => {
    server.applySlice(slice("mirror-a", [{ ...ready("10.0.0.1", "a"), hints: ["a", "b"] }]));
    const d = start();
    assert.deepEqual((await d.next())[0].forZones, ["a", "b"]);
  });

  test("the legacy v1 Endpoints object, by field selector", async () => {
    server.applyEndpoints(
      legacyEndpoints({
        service: "mirror",
        subsets: [
          { ready: [{ ip: "10.0.0.1", pod: "mirror-1" }], notReady: [{ ip: "10.0.0.2" }], ports: [{ name: "grpc", port: 50051 }] },
          { ready: [{ ip: "10.0.0.3" }], ports: [{ name: "grpc", port: 50052 }] },
          { ready: [{ ip: "10.0.0.4" }], ports: [{ name: "metrics", port: 9090 }] },
        ],
      }),
    );
    server.applyEndpoints(legacyEndpoints({ service: "other", subsets: [{ ready: [{ ip: "10.0.9.9" }], ports: [{ name: "grpc", port: 1 }] }] }));
    const d = start({ api: "endpoints" });
    assert.deepEqual(await d.next(), [
      { address: "10.0.0.1", port: 50051, ready: true, serving: true, terminating: false, name: "mirror-1" },
      { address: "10.0.0.2", port: 50051, ready: false, serving: false, terminating: false },
      { address: "10.0.0.3", port: 50052, ready: true, serving: true, terminating: false },
    ]);
    const endpointsPath = "/api/v1/namespaces/default/endpoints";
    await waitFor(() => server.openWatches === 1, "the watch");
    assert.ok(server.requests.some((r) => r.path === endpointsPath && r.query.watch === "true" && r.query.fieldSelector === "metadata.name=mirror"));
    server.applyEndpoints(legacyEndpoints({ service: "mirror", subsets: [{ ready: [{ ip: "10.0.0.5" }], ports: [{ name: "grpc", port: 50051 }] }] }));
    assert.deepEqual(keys(await d.next()), ["10.0.0.5:50051"]);
    server.deleteEndpoints("default", "mirror");
    assert.deepEqual(await d.next(), []);
  });

  test("the gateway's zone comes from the options, else from its node's label", async () => {
    server.applyNode({ metadata: { name: "node-1", labels: { "topology.kubernetes.io/zone": "zone-b" } } });
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    const configured = start({ zone: "zone-a", nodeName: "node-1" });
    assert.equal(configured.discovery.zone, "zone-a");
    const fromNode = start({ nodeName: "node-1" });
    assert.equal(fromNode.discovery.zone, undefined);
    await fromNode.next();
    assert.equal(fromNode.discovery.zone, "zone-b", "known before the first set");
    const missing = start({ nodeName: "node-9" });
    assert.equal((await missing.next()).length, 1, "a node it cannot read does not stop discovery");
    assert.equal(missing.discovery.zone, undefined);
    assert.match(missing.errors[0].message, /node-9.*404/);
  });
});

describe("how kubernetes discovery keeps its watch", () => {
  test("a cut watch resumes from its resourceVersion, without a list, and delivers what changed meanwhile", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    const d = start();
    await d.next();
    await waitFor(() => server.openWatches === 1, "the watch");
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), ready("10.0.0.2")]));
    await d.next();
    const lastSeen = server.resourceVersion;
    server.cutWatches();
    server.applySlice(slice("mirror-b", [ready("10.0.0.3")]));
    assert.deepEqual(keys(await d.next()), ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"]);
    assert.equal(lists().length, 1);
    assert.ok(watchRequests().some((r) => r.query.resourceVersion === lastSeen), "resumed where it was");
    assert.match(d.errors[0]?.message ?? "", /watch endpointslices/);
  });

  test("a stalled watch (no event, no bookmark) is detected and restarted", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    const d = start({ stallTimeoutMs: 400 });
    await d.next();
    await waitFor(() => server.openWatches === 1, "the watch");
    await sleep(500);
    assert.equal(watchRequests().length, 1, "bookmarks keep a quiet watch alive");
    server.stallWatches();
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), ready("10.0.0.2")]));
    const stalledAt = performance.now();
    assert.deepEqual(keys(await d.next(2_000)), ["10.0.0.1:50051", "10.0.0.2:50051"]);
    const took = performance.now() - stalledAt;
    // 400 ms after the last bookmark, which came up to 100 ms before the stall.
    assert.ok(took >= 280 && took < 1_500, `${took} ms`);
    assert.match(d.errors.map((e) => e.message).join(), /nothing \(no event, no bookmark\) for 400 ms/);
    assert.equal(lists().length, 1, "restarted from its resourceVersion");
    // The stalled connection was let go.
    await waitFor(() => server.openWatches === 1, "one watch left");
  });

  test("410 Gone after a compaction makes it list again, and the set ends right", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    server.applySlice(slice("mirror-b", [ready("10.0.0.2")]));
    const d = start();
    await d.next();
    await waitFor(() => server.openWatches === 1, "the watch");
    server.cutWatches();
    server.deleteSlice("default", "mirror-a");
    server.applySlice(slice("mirror-c", [ready("10.0.0.3")]));
    server.compactHistory();
    assert.deepEqual(keys(await d.until(["10.0.0.2:50051", "10.0.0.3:50051"])), ["10.0.0.2:50051", "10.0.0.3:50051"]);
    assert.equal(lists().length, 2, "listed again");
    await waitFor(() => server.openWatches === 1, "a new watch");
  });

  test("a watch the server ends (timeoutSeconds) resumes at once, without a list or an error", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    const d = start({ watchTimeoutSeconds: 1 });
    await d.next();
    await waitFor(() => watchRequests().length >= 2, "a second watch", 5_000);
    assert.equal(watchRequests()[1].query.resourceVersion, server.resourceVersion);
    server.applySlice(slice("mirror-a", [ready("10.0.0.2")]));
    assert.deepEqual(keys(await d.next()), ["10.0.0.2:50051"]);
    assert.equal(lists().length, 1);
    assert.deepEqual(d.errors, []);
  });

  test("while the API server is down the last set stays and errors are reported; back up, updates flow again", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), ready("10.0.0.2")]));
    const d = start({ backoff: { baseMs: 20, maxMs: 100 } });
    await d.next();
    await waitFor(() => server.openWatches === 1, "the watch");
    await server.stop();
    await waitFor(() => d.errors.length >= 3, "retries reporting errors");
    assert.match(d.errors.at(-1)!.message, /ECONNREFUSED|fetch failed/);
    assert.equal(d.sets.length, 1, "no set emitted while it is down");
    server.applySlice(slice("mirror-a", [ready("10.0.0.1"), ready("10.0.0.2"), ready("10.0.0.3")]));
    await server.restart();
    assert.deepEqual(keys(await d.next()), ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"]);
    assert.equal(lists().length, 1, "it resumed its watch; the history still held its place");
  });

  test("retries back off, with jitter, up to the maximum", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    const d = start({ backoff: { baseMs: 40, maxMs: 160 } });
    await d.next();
    await waitFor(() => server.openWatches === 1, "the watch");
    await server.stop();
    await waitFor(() => d.errors.length >= 8, "eight failures", 5_000);
    const gaps = d.errorTimes.slice(1).map((t, i) => t - d.errorTimes[i]);
    // After failure n the wait is in [c/2, c], c = min(160, 40 * 2^(n-1)); scheduling adds a little.
    const ceilings = [40, 80, 160, 160, 160, 160, 160];
    ceilings.forEach((c, i) => assert.ok(gaps[i] >= c / 2 - 2 && gaps[i] < c + 40, `gaps ${gaps.map(Math.round)}`));
    assert.ok(new Set(gaps.slice(2).map(Math.round)).size > 1, `jittered: ${gaps.map(Math.round)}`);
  });

  test("refresh retries at once while waiting out a backoff", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    const d = start({ backoff: { baseMs: 20, maxMs: 60_000 } });
    await d.next();
    await waitFor(() => server.openWatches === 1, "the watch");
    await server.stop();
    // Seven failures: the next wait is at least 20 * 2^6 / 2 = 640 ms.
    await waitFor(() => d.errors.length >= 7, "seven failures", 5_000);
    await server.restart();
    server.applySlice(slice("mirror-a", [ready("10.0.0.9")]));
    const refreshedAt = performance.now();
    d.discovery.refresh?.();
    assert.deepEqual(keys(await d.next(1_000)), ["10.0.0.9:50051"]);
    assert.ok(performance.now() - refreshedAt < 300);
  });

  test("stopping closes the watch and ends all emissions", async () => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    const d = start();
    await d.next();
    await waitFor(() => server.openWatches === 1, "the watch");
    d.stop();
    await waitFor(() => server.openWatches === 0, "the watch to close");
    server.applySlice(slice("mirror-a", [ready("10.0.0.2")]));
    await sleep(100);
    assert.equal(d.sets.length, 1);
  });

  test("a wrong token is reported and nothing is emitted", async () => {
    const file = join(dir, "wrong-token.yaml");
    await writeFile(file, (await import("node:fs")).readFileSync(kubeconfig, "utf8").replace(server.token, "wrong"));
    const d = start({ kubeconfig: file });
    await waitFor(() => d.errors.length >= 1, "an error");
    assert.match(d.errors[0].message, /list endpointslices: HTTP 401: Unauthorized$/);
    assert.equal(d.sets.length, 0);
  });

  test("a missing kubeconfig is reported, and retried", async () => {
    const d = start({ kubeconfig: join(dir, "not-yet.yaml") });
    await waitFor(() => d.errors.length >= 1, "an error");
    assert.match(d.errors[0].message, /cannot load the kubeconfig/);
    await writeFile(join(dir, "not-yet.yaml"), (await import("node:fs")).readFileSync(kubeconfig, "utf8"));
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    assert.deepEqual(keys(await d.next()), ["10.0.0.1:50051"]);
  });
});

describe("how kubernetes discovery finds the API server", () => {
  /** Sets environment variables until the returned function restores them. */
  function withEnv(values: Record<string, string | undefined>): () => void {
    const saved = Object.fromEntries(Object.keys(values).map((k) => [k, process.env[k]]));
    const apply = (v: Record<string, string | undefined>) => {
      for (const [k, value] of Object.entries(v)) {
        if (value === undefined) delete process.env[k];
        else process.env[k] = value;
      }
    };
    apply(values);
    return () => apply(saved);
  }

  test("in a cluster, the service account (token file, CA, https) comes first, before a kubeconfig", async (t) => {
    const inCluster = await FakeApiServer.start({ tls: true, token: "service-account-token" });
    t.after(() => inCluster.stop());
    inCluster.applySlice(slice("mirror-a", [ready("10.1.0.1")]));
    server.applySlice(slice("mirror-a", [ready("10.2.0.2")]));
    const root = join(dir, "pod");
    const restore = withEnv(await inCluster.writeServiceAccount(root));
    t.after(restore);
    const d = start({ serviceAccountRoot: root, kubeconfig });
    assert.deepEqual(keys(await d.next()), ["10.1.0.1:50051"]);
    assert.ok(inCluster.requests.length > 0 && inCluster.requests.every((r) => r.authenticated), "with the service account's token");
    await waitFor(() => inCluster.openWatches === 1, "the watch over https");
    inCluster.applySlice(slice("mirror-a", [ready("10.1.0.1"), ready("10.1.0.2")]));
    assert.deepEqual(keys(await d.next()), ["10.1.0.1:50051", "10.1.0.2:50051"]);
    assert.equal(server.requests.length, 0, "the kubeconfig's server is not asked");
  });

  test("with no namespace configured: the pod's own in a cluster, else the kubeconfig context's", async (t) => {
    const inCluster = await FakeApiServer.start({ tls: true, token: "service-account-token" });
    t.after(() => inCluster.stop());
    const inNamespace = (namespace: string, ip: string) =>
      endpointSlice({ service: "mirror", name: `mirror-${namespace}`, namespace, ports: [{ name: "grpc", port: 50051 }], endpoints: [ready(ip)] });
    inCluster.applySlice(inNamespace("pod-ns", "10.3.0.1"));
    inCluster.applySlice(inNamespace("default", "10.3.0.9"));
    const root = join(dir, "pod-with-namespace");
    const restore = withEnv(await inCluster.writeServiceAccount(root, "pod-ns"));
    const fromPod = start({ namespace: undefined, serviceAccountRoot: root });
    try {
      assert.deepEqual(keys(await fromPod.next()), ["10.3.0.1:50051"]);
    } finally {
      fromPod.stop();
      restore();
    }

    server.applySlice(inNamespace("team-a", "10.4.0.1"));
    const contextDir = await mkdtemp(join(dir, "team-a-"));
    const contextConfig = await server.writeKubeconfig(contextDir, "team-a");
    const fromContext = start({ namespace: undefined, kubeconfig: contextConfig });
    assert.deepEqual(keys(await fromContext.next()), ["10.4.0.1:50051"]);
    assert.ok(server.requests.some((r) => r.path.startsWith("/apis/discovery.k8s.io/v1/namespaces/team-a/")));
  });

  test("without a service account or a kubeconfig option, $KUBECONFIG", async (t) => {
    server.applySlice(slice("mirror-a", [ready("10.0.0.1")]));
    const restore = withEnv({ KUBECONFIG: kubeconfig });
    t.after(restore);
    const d = start({ kubeconfig: undefined });
    assert.deepEqual(keys(await d.next()), ["10.0.0.1:50051"]);
  });
});

