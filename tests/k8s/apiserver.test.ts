/**
 * The Kubernetes API stand-in, proven three ways: on the wire (fetch), with kubectl 1.32 and
 * with a plain @kubernetes/client-node informer.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { until as waitFor } from "../support/wait.ts";
import * as k8s from "@kubernetes/client-node";
import { endpointSlice, FakeApiServer, legacyEndpoints, type KubeObject } from "./fake-apiserver.ts";
import { isEvent, openWatch, type WatchEvent, type WatchStream } from "./watch-client.ts";

const slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

function slice(name: string, ips: readonly string[], service = "mirror"): KubeObject {
  return endpointSlice({
    service,
    name,
    ports: [{ name: "grpc", port: 50051 }],
    endpoints: ips.map((ip) => ({ ip, ready: true })),
  });
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "k8s-stand-in-"));
});
after(() => rm(dir, { recursive: true, force: true }));

let server: FakeApiServer;
const watches: WatchStream[] = [];
beforeEach(async () => {
  server = await FakeApiServer.start({ bookmarkIntervalMs: 100 });
});
afterEach(async () => {
  for (const w of watches.splice(0)) w.close();
  await server.stop();
});

async function get(path: string, token: string | undefined = server.token): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.url}${path}`, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: response.status, body: await response.json() };
}

async function watch(path: string): Promise<WatchStream> {
  const stream = await openWatch(`${server.url}${path}`, server.token);
  watches.push(stream);
  return stream;
}

const summary = (events: readonly WatchEvent[]) =>
  events.filter((e) => e.type !== "BOOKMARK").map((e) => `${e.type} ${e.object.metadata.name}@${e.object.metadata.resourceVersion}`);

describe("on the wire", () => {
  test("a list carries the global resourceVersion, items in key order without kind", async () => {
    const b = server.applySlice(slice("mirror-b", ["10.0.0.2"]));
    const a = server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("other-a", ["10.0.1.1"], "other"));
    assert.ok(Number(a.metadata.resourceVersion) > Number(b.metadata.resourceVersion));
    const { status, body } = await get(slices);
    assert.equal(status, 200);
    assert.equal(body.kind, "EndpointSliceList");
    assert.equal(body.apiVersion, "discovery.k8s.io/v1");
    assert.equal(body.metadata.resourceVersion, server.resourceVersion);
    assert.deepEqual(body.items.map((i: KubeObject) => i.metadata.name), ["mirror-a", "mirror-b", "other-a"]);
    assert.equal(body.items[0].kind, undefined);
    const one = await get(`${slices}/mirror-a`);
    assert.equal(one.body.kind, "EndpointSlice");
    assert.equal(one.body.metadata.resourceVersion, a.metadata.resourceVersion);
  });

  test("label selectors pick the service's slices; a bad one is a 400 Status", async () => {
    server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("other-a", ["10.0.1.1"], "other"));
    const names = async (selector: string) =>
      (await get(`${slices}?labelSelector=${encodeURIComponent(selector)}`)).body.items.map((i: KubeObject) => i.metadata.name);
    assert.deepEqual(await names("kubernetes.io/service-name=mirror"), ["mirror-a"]);
    assert.deepEqual(await names("kubernetes.io/service-name in (mirror,other)"), ["mirror-a", "other-a"]);
    assert.deepEqual(await names("kubernetes.io/service-name!=mirror"), ["other-a"]);
    assert.deepEqual(await names("!kubernetes.io/service-name"), []);
    const bad = await get(`${slices}?labelSelector=${encodeURIComponent("a in b")}`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.kind, "Status");
    assert.equal(bad.body.reason, "BadRequest");
  });

  test("errors are Status objects: 404 for a missing object or path, 401 for a wrong token", async () => {
    const missing = await get(`${slices}/nope`);
    assert.equal(missing.status, 404);
    assert.deepEqual(
      { kind: missing.body.kind, reason: missing.body.reason, code: missing.body.code, message: missing.body.message },
      { kind: "Status", reason: "NotFound", code: 404, message: 'endpointslices.discovery.k8s.io "nope" not found' },
    );
    assert.equal((await get("/apis/example.com/v1/widgets")).status, 404);
    const wrong = await get(slices, "wrong-token");
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.reason, "Unauthorized");
    assert.equal((await get(slices, undefined)).status, 200, "no credentials is anonymous");
  });

  test("paged lists read one snapshot; an expired continue token is HTTP 410", async () => {
    for (const n of [1, 2, 3, 4, 5]) server.applySlice(slice(`mirror-${n}`, [`10.0.0.${n}`]));
    const first = await get(`${slices}?limit=2`);
    assert.deepEqual(first.body.items.map((i: KubeObject) => i.metadata.name), ["mirror-1", "mirror-2"]);
    assert.equal(first.body.metadata.remainingItemCount, 3);
    const snapshot = first.body.metadata.resourceVersion;
    // Changes after the first page do not show on the next ones.
    server.deleteSlice("default", "mirror-3");
    server.applySlice(slice("mirror-6", ["10.0.0.6"]));
    const second = await get(`${slices}?limit=2&continue=${first.body.metadata.continue}`);
    assert.deepEqual(second.body.items.map((i: KubeObject) => i.metadata.name), ["mirror-3", "mirror-4"]);
    assert.equal(second.body.metadata.resourceVersion, snapshot);
    const third = await get(`${slices}?limit=2&continue=${second.body.metadata.continue}`);
    assert.deepEqual(third.body.items.map((i: KubeObject) => i.metadata.name), ["mirror-5"]);
    assert.equal(third.body.metadata.continue, undefined);

    server.compactHistory();
    const gone = await get(`${slices}?limit=2&continue=${first.body.metadata.continue}`);
    assert.equal(gone.status, 410);
    assert.equal(gone.body.reason, "Expired");
    assert.equal(gone.body.code, 410);
  });

  test("a watch streams chunked newline-delimited events and replays those after its resourceVersion", async () => {
    const a = server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("mirror-a", ["10.0.0.1", "10.0.0.2"]));
    const stream = await watch(`${slices}?watch=true&resourceVersion=${a.metadata.resourceVersion}`);
    assert.equal(stream.status, 200);
    assert.equal(stream.headers.get("content-type"), "application/json");
    assert.equal(stream.headers.get("transfer-encoding"), "chunked");
    server.applySlice(slice("mirror-b", ["10.0.0.3"]));
    server.deleteSlice("default", "mirror-a");
    const rv = Number(a.metadata.resourceVersion);
    assert.deepEqual(summary(await stream.drain(200)), [
      `MODIFIED mirror-a@${rv + 1}`,
      `ADDED mirror-b@${rv + 2}`,
      `DELETED mirror-a@${rv + 3}`,
    ]);
  });

  test("a watch without resourceVersion starts with the current objects as ADDED", async () => {
    server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("other-a", ["10.0.1.1"], "other"));
    const stream = await watch(`${slices}?watch=1&labelSelector=kubernetes.io/service-name%3Dmirror`);
    assert.deepEqual(summary(await stream.drain(150)), [`ADDED mirror-a@${Number(server.resourceVersion) - 1}`]);
  });

  test("an object leaving a watch's selection is DELETED for it, one entering is ADDED", async () => {
    const start = server.resourceVersion;
    const stream = await watch(`${slices}?watch=true&resourceVersion=${start}&labelSelector=kubernetes.io/service-name%3Dmirror`);
    server.applySlice(slice("s", ["10.0.0.1"], "other"));
    server.applySlice(slice("s", ["10.0.0.1"], "mirror"));
    server.applySlice(slice("s", ["10.0.0.2"], "mirror"));
    server.applySlice(slice("s", ["10.0.0.2"], "other"));
    const rv = Number(start);
    assert.deepEqual(summary(await stream.drain(200)), [`ADDED s@${rv + 2}`, `MODIFIED s@${rv + 3}`, `DELETED s@${rv + 4}`]);
  });

  test("a resourceVersion older than the history is a 410 ERROR event in the stream, then the end", async () => {
    const a = server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("mirror-a", ["10.0.0.2"]));
    server.compactHistory();
    const stream = await watch(`${slices}?watch=true&resourceVersion=${a.metadata.resourceVersion}`);
    assert.equal(stream.status, 200);
    const error = await stream.next();
    assert.ok(isEvent(error));
    assert.equal(error.type, "ERROR");
    assert.deepEqual(
      { kind: error.object.kind, code: error.object.code, reason: error.object.reason },
      { kind: "Status", code: 410, reason: "Expired" },
    );
    assert.deepEqual(await stream.next(), { end: "clean" });
    // The current resourceVersion is still fine after a compaction.
    const fresh = await watch(`${slices}?watch=true&resourceVersion=${server.resourceVersion}`);
    assert.deepEqual(await fresh.next(150), { end: "timeout" });
  });

  test("the history is bounded: beyond historyLimit changes, older resourceVersions expire", async (t) => {
    const small = await FakeApiServer.start({ historyLimit: 3 });
    t.after(() => small.stop());
    const versions = [1, 2, 3, 4, 5].map((n) => small.applySlice(slice("mirror-a", [`10.0.0.${n}`])).metadata.resourceVersion);
    const url = (rv: string | undefined) => `${small.url}${slices}?watch=true&resourceVersion=${rv}`;
    const old = await openWatch(url(versions[0]), small.token);
    t.after(() => old.close());
    assert.equal(((await old.next()) as WatchEvent).object.code, 410);
    const kept = await openWatch(url(versions[1]), small.token);
    t.after(() => kept.close());
    assert.deepEqual(
      summary(await kept.drain(150)),
      versions.slice(2).map((rv) => `MODIFIED mirror-a@${rv}`),
    );
  });

  test("bookmarks come only when allowed, carry the current resourceVersion, and timeoutSeconds ends the watch cleanly", async () => {
    const quiet = await watch(`${slices}?watch=true&resourceVersion=${server.resourceVersion}&timeoutSeconds=1`);
    const bookmarked = await watch(`${slices}?watch=true&resourceVersion=${server.resourceVersion}&allowWatchBookmarks=true&timeoutSeconds=1`);
    server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    const events = await bookmarked.drain(1_500);
    const bookmarks = events.filter((e) => e.type === "BOOKMARK");
    assert.ok(bookmarks.length >= 3, `${bookmarks.length} bookmarks in one second at 100 ms`);
    assert.equal(bookmarks.at(-1)!.object.metadata.resourceVersion, server.resourceVersion);
    assert.equal(bookmarks[0].object.kind, "EndpointSlice");
    assert.deepEqual(await bookmarked.next(), { end: "clean" });
    assert.deepEqual(summary(await quiet.drain(1_500)), [`ADDED mirror-a@${server.resourceVersion}`]);
    assert.deepEqual(await quiet.next(), { end: "clean" });
  });

  test("sendInitialEvents ends the initial ADDED events with an annotated bookmark", async () => {
    server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    const stream = await watch(`${slices}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true`);
    const first = await stream.next();
    const second = await stream.next();
    assert.ok(isEvent(first) && isEvent(second));
    assert.equal(first.type, "ADDED");
    assert.equal(second.type, "BOOKMARK");
    assert.equal(second.object.metadata.annotations?.["k8s.io/initial-events-end"], "true");
  });

  test("cutWatches drops the connection of every open watch", async () => {
    const one = await watch(`${slices}?watch=true&resourceVersion=${server.resourceVersion}`);
    const two = await watch(`${slices}?watch=true&resourceVersion=${server.resourceVersion}&allowWatchBookmarks=true`);
    await waitFor(() => server.openWatches === 2, "two watches");
    server.cutWatches();
    assert.equal(server.openWatches, 0);
    assert.equal(((await one.next()) as { end: string }).end, "error");
    assert.equal((await two.drain(1_000)).filter((e) => e.type !== "BOOKMARK").length, 0);
    assert.equal(((await two.next()) as { end: string }).end, "error");
  });

  test("stallWatches keeps a watch open and silent: no events, no bookmarks, not even its timeout", async () => {
    const stalled = await watch(`${slices}?watch=true&resourceVersion=${server.resourceVersion}&allowWatchBookmarks=true&timeoutSeconds=1`);
    assert.ok(isEvent(await stalled.next()), "a bookmark before the stall");
    server.stallWatches();
    server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    assert.deepEqual(await stalled.next(1_500), { end: "timeout" });
    assert.equal(server.openWatches, 1);
    // A new watch is not stalled, and a resume gets what the stalled one held back.
    const fresh = await watch(`${slices}?watch=true&resourceVersion=${Number(server.resourceVersion) - 1}`);
    assert.deepEqual(summary(await fresh.drain(150)), [`ADDED mirror-a@${server.resourceVersion}`]);
  });

  test("stop drops everything and refuses connections; restart serves the same port and state", async () => {
    const a = server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    const stream = await watch(`${slices}?watch=true&resourceVersion=${server.resourceVersion}`);
    const port = server.port;
    await server.stop();
    assert.equal(((await stream.next()) as { end: string }).end, "error");
    await assert.rejects(fetch(`${server.url}${slices}`));
    await server.restart();
    assert.equal(server.port, port);
    const { body } = await get(slices);
    assert.equal(body.metadata.resourceVersion, a.metadata.resourceVersion);
    assert.deepEqual(body.items.map((i: KubeObject) => i.metadata.name), ["mirror-a"]);
  });

  test("legacy v1 Endpoints list and watch by field selector", async () => {
    server.applyEndpoints(legacyEndpoints({ service: "mirror", subsets: [{ ready: [{ ip: "10.0.0.1" }], ports: [{ name: "grpc", port: 50051 }] }] }));
    server.applyEndpoints(legacyEndpoints({ service: "other", subsets: [] }));
    const list = await get("/api/v1/namespaces/default/endpoints?fieldSelector=metadata.name%3Dmirror");
    assert.equal(list.body.kind, "EndpointsList");
    assert.deepEqual(list.body.items.map((i: KubeObject) => i.metadata.name), ["mirror"]);
    const stream = await watch(`/api/v1/namespaces/default/endpoints?watch=true&fieldSelector=metadata.name%3Dmirror&resourceVersion=${server.resourceVersion}`);
    server.applyEndpoints(legacyEndpoints({ service: "other", subsets: [{ ready: [{ ip: "10.0.1.1" }], ports: [{ port: 1 }] }] }));
    server.deleteEndpoints("default", "mirror");
    assert.deepEqual(summary(await stream.drain(200)), [`DELETED mirror@${server.resourceVersion}`]);
  });

  test("legacy and aggregated discovery documents", async () => {
    const groups = await get("/apis");
    assert.equal(groups.body.kind, "APIGroupList");
    assert.deepEqual(groups.body.groups.map((g: { name: string }) => g.name), ["discovery.k8s.io"]);
    const resources = await get("/apis/discovery.k8s.io/v1");
    assert.equal(resources.body.kind, "APIResourceList");
    assert.deepEqual(resources.body.resources.map((r: { name: string }) => r.name), ["endpointslices"]);
    const aggregated = await fetch(`${server.url}/apis`, {
      headers: { accept: "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json" },
    });
    assert.equal(aggregated.headers.get("content-type"), "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
    const list = await aggregated.json();
    assert.equal(list.kind, "APIGroupDiscoveryList");
    assert.equal(list.items[0].versions[0].resources[0].resource, "endpointslices");
  });

  test("runs as a process: prints its address, and its hooks answer over HTTP", async (t) => {
    const script = fileURLToPath(new URL("./fake-apiserver.ts", import.meta.url));
    const child = spawn(process.execPath, [script, "--port", "0", "--bookmark-ms", "50"], { stdio: ["ignore", "pipe", "inherit"] });
    t.after(() => child.kill());
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no listening line in 10 s")), 10_000);
      child.stdout.setEncoding("utf8").on("data", (text: string) => {
        const m = /^listening (http:\/\/127\.0\.0\.1:\d+)$/m.exec(text);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
    });
    const stream = await openWatch(`${url}${slices}?watch=true&resourceVersion=100`);
    t.after(() => stream.close());
    assert.equal((await fetch(`${url}/_standin/cut-watches`, { method: "POST" })).status, 200);
    assert.equal(((await stream.next()) as { end: string }).end, "error");
    child.kill();
  });
});

// ---------------------------------------------------------------------------------------------

describe("kubectl", () => {
  let kubeconfig: string;
  beforeEach(async () => {
    kubeconfig = await server.writeKubeconfig(dir);
  });

  /** Runs kubectl against the stand-in, with a home and cache of its own. */
  function kubectl(args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      execFile(
        "kubectl",
        ["--kubeconfig", kubeconfig, "--cache-dir", join(dir, "cache"), ...args],
        { timeout: 20_000, env: { ...process.env, HOME: dir, KUBECONFIG: "" } },
        (error, stdout, stderr) => (error ? reject(Object.assign(error, { stderr })) : resolve({ stdout, stderr })),
      );
    });
  }

  test("get endpointslices -o json returns the slices", async () => {
    server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("other-a", ["10.0.1.1"], "other"));
    const list = JSON.parse((await kubectl(["get", "endpointslices", "-n", "default", "-o", "json"])).stdout);
    assert.deepEqual(list.items.map((i: KubeObject) => i.metadata.name), ["mirror-a", "other-a"]);
    assert.deepEqual(list.items[0].endpoints[0].addresses, ["10.0.0.1"]);
    assert.equal(list.items[0].kind, "EndpointSlice");
    server.applySlice({ ...slice("mirror-a", ["10.1.0.1"]), metadata: { ...slice("mirror-a", []).metadata, namespace: "prod" } });
    const everywhere = JSON.parse((await kubectl(["get", "endpointslices", "-A", "-o", "json"])).stdout);
    assert.deepEqual(
      everywhere.items.map((i: KubeObject) => `${i.metadata.namespace}/${i.metadata.name}`),
      ["default/mirror-a", "default/other-a", "prod/mirror-a"],
    );
  });

  test("get endpointslices -l selects by label", async () => {
    server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("other-a", ["10.0.1.1"], "other"));
    const list = JSON.parse((await kubectl(["get", "endpointslices", "-l", "kubernetes.io/service-name=mirror", "-o", "json"])).stdout);
    assert.deepEqual(list.items.map((i: KubeObject) => i.metadata.name), ["mirror-a"]);
    const set = JSON.parse((await kubectl(["get", "endpointslices", "-l", "kubernetes.io/service-name in (mirror,other)", "-o", "json"])).stdout);
    assert.equal(set.items.length, 2);
  });

  test("get endpoints, and one by name", async () => {
    server.applyEndpoints(legacyEndpoints({ service: "mirror", subsets: [{ ready: [{ ip: "10.0.0.1" }], ports: [{ port: 50051 }] }] }));
    const list = JSON.parse((await kubectl(["get", "endpoints", "-o", "json"])).stdout);
    assert.deepEqual(list.items.map((i: KubeObject) => i.metadata.name), ["mirror"]);
    const one = JSON.parse((await kubectl(["get", "ep", "mirror", "-o", "json"])).stdout);
    assert.deepEqual(one.subsets[0].addresses, [{ ip: "10.0.0.1" }]);
    await assert.rejects(kubectl(["get", "endpoints", "missing"]), (e: { stderr: string }) =>
      e.stderr.includes('endpoints "missing" not found'),
    );
  });

  test("get endpointslices --watch receives ADDED then MODIFIED as a slice changes", async (t) => {
    server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    const child = spawn(
      "kubectl",
      ["--kubeconfig", kubeconfig, "--cache-dir", join(dir, "cache"), "get", "endpointslices", "--watch", "-o", "json", "--output-watch-events"],
      { env: { ...process.env, HOME: dir, KUBECONFIG: "" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    t.after(() => child.kill());
    const events: { type: string; object: KubeObject }[] = [];
    const seen = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`kubectl printed ${events.length} events, waiting for ${n}`)), 15_000);
        const check = () => {
          if (events.length >= n) {
            clearTimeout(timer);
            child.stdout.off("data", check);
            resolve();
          }
        };
        child.stdout.on("data", check);
        check();
      });
    let text = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      const { values, rest } = takeJsonObjects(text + chunk);
      events.push(...values);
      text = rest;
    });
    await seen(1);
    // kubectl lists, then watches from the list's resourceVersion.
    await waitFor(() => server.openWatches === 1, "kubectl's watch");
    server.applySlice(slice("mirror-a", ["10.0.0.1", "10.0.0.2"]));
    await seen(2);
    child.kill();
    assert.deepEqual(
      events.map((e) => [e.type, e.object.metadata.name]),
      [
        ["ADDED", "mirror-a"],
        ["MODIFIED", "mirror-a"],
      ],
    );
    assert.deepEqual((events[1].object.endpoints as { addresses: string[] }[]).map((e) => e.addresses[0]), ["10.0.0.1", "10.0.0.2"]);
  });

  test("create and delete go through the API (validation off: the stand-in serves no OpenAPI)", async () => {
    const file = join(dir, "slice.json");
    const { writeFile } = await import("node:fs/promises");
    await writeFile(file, JSON.stringify(slice("mirror-new", ["10.0.0.9"])));
    await kubectl(["create", "--validate=false", "-f", file]);
    assert.equal((await get(`${slices}/mirror-new`)).status, 200);
    await kubectl(["delete", "endpointslice", "mirror-new"]);
    assert.equal((await get(`${slices}/mirror-new`)).status, 404);
  });
});

/** The complete JSON objects at the start of `text` (kubectl prints them one after another), and what is left. */
function takeJsonObjects(text: string): { values: any[]; rest: string } {
  const values: any[] = [];
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = 0;
  let consumed = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === "{") {
      if (depth === 0) start = i;
      depth++;
    } else if (c === "}" && --depth === 0) {
      values.push(JSON.parse(text.slice(start, i + 1)));
      consumed = i + 1;
    }
  }
  return { values, rest: text.slice(consumed) };
}


// ---------------------------------------------------------------------------------------------

describe("a plain @kubernetes/client-node informer", () => {
  type Informer = k8s.Informer<k8s.V1EndpointSlice> & k8s.ObjectCache<k8s.V1EndpointSlice>;
  let informer: Informer;
  let log: string[];
  let errors: unknown[];
  let stopped: boolean;

  beforeEach(async () => {
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(await server.writeKubeconfig(dir));
    const api = kc.makeApiClient(k8s.DiscoveryV1Api);
    const selector = "kubernetes.io/service-name=mirror";
    informer = k8s.makeInformer(kc, slices, () => api.listNamespacedEndpointSlice({ namespace: "default", labelSelector: selector }), selector);
    log = [];
    errors = [];
    stopped = false;
    const record = (verb: string) => (o: k8s.V1EndpointSlice) => log.push(`${verb} ${o.metadata?.name}@${o.metadata?.resourceVersion}`);
    informer.on("add", record("add"));
    informer.on("update", record("update"));
    informer.on("delete", record("delete"));
    // The owner's part: an informer that reports an error has stopped, and is restarted.
    informer.on("error", (e) => {
      errors.push(e);
      if (!stopped) setTimeout(() => void (stopped || informer.start()), 50);
    });
  });
  afterEach(async () => {
    stopped = true;
    await informer.stop();
  });

  const names = () => informer.list("default").map((o) => o.metadata?.name).sort();
  const rv = (o: KubeObject) => o.metadata.resourceVersion;

  test("lists, then sees add, update and delete", async () => {
    const a = server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("other-a", ["10.0.1.1"], "other"));
    await informer.start();
    await waitFor(() => server.openWatches === 1, "the informer's watch");
    const b = server.applySlice(slice("mirror-b", ["10.0.0.2"]));
    const a2 = server.applySlice(slice("mirror-a", ["10.0.0.3"]));
    server.deleteSlice("default", "mirror-b");
    await waitFor(() => log.length === 4, "four events");
    assert.deepEqual(log, [`add mirror-a@${rv(a)}`, `add mirror-b@${rv(b)}`, `update mirror-a@${rv(a2)}`, `delete mirror-b@${server.resourceVersion}`]);
    assert.deepEqual(names(), ["mirror-a"]);
    assert.ok(server.requests.every((r) => r.authenticated), "client-node sends the kubeconfig's token");
  });

  test("after cutWatches it reports an error, is restarted, resumes from its resourceVersion and gets what it missed", async () => {
    const a = server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    await informer.start();
    await waitFor(() => server.openWatches === 1, "the informer's watch");
    const seenBefore = server.resourceVersion;
    server.cutWatches();
    const b = server.applySlice(slice("mirror-b", ["10.0.0.2"]));
    await waitFor(() => log.length === 2, "the missed add");
    assert.ok(errors.length >= 1);
    assert.deepEqual(log, [`add mirror-a@${rv(a)}`, `add mirror-b@${rv(b)}`], "no duplicate ADD");
    const watchesAt = server.requests.filter((r) => r.query.watch === "true").map((r) => r.query.resourceVersion);
    assert.deepEqual(watchesAt, [seenBefore, seenBefore]);
    assert.equal(server.requests.filter((r) => r.query.watch === undefined && r.path === slices).length, 1, "one list only");
  });

  test("after compactHistory and a cut, the resumed watch gets 410, the informer re-lists, and ends with the right state", async () => {
    const a = server.applySlice(slice("mirror-a", ["10.0.0.1"]));
    server.applySlice(slice("mirror-b", ["10.0.0.2"]));
    await informer.start();
    await waitFor(() => server.openWatches === 1, "the informer's watch");
    const resumeFrom = server.resourceVersion;
    server.cutWatches();
    server.deleteSlice("default", "mirror-a");
    const c = server.applySlice(slice("mirror-c", ["10.0.0.3"]));
    server.compactHistory();
    await waitFor(() => names().join() === "mirror-b,mirror-c", "the re-listed state");
    assert.ok(errors.length >= 1, "the cut is reported");
    const lists = server.requests.filter((r) => r.path === slices && r.query.watch === undefined);
    assert.equal(lists.length, 2, "the 410 made it list again");
    const fromResume = server.requests.filter((r) => r.query.watch === "true" && r.query.resourceVersion === resumeFrom);
    assert.equal(fromResume.length, 2, "the first watch, then the resume that got 410");
    // The re-list shows the deletion it missed as the object it last knew.
    assert.ok(log.includes(`delete mirror-a@${rv(a)}`), log.join());
    assert.ok(log.includes(`add mirror-c@${rv(c)}`));
    assert.equal(log.filter((l) => l.startsWith("add mirror-b")).length, 1, "mirror-b is not added twice");
  });
});
