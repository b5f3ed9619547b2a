/**
 * A Kubernetes API server stand-in for tests: HTTP (or HTTPS) on 127.0.0.1, speaking the real
 * list/watch protocol for EndpointSlices (discovery.k8s.io/v1), Endpoints and Nodes (v1),
 * well enough for `kubectl` and `@kubernetes/client-node` (both proven in apiserver.test.ts).
 *
 * What it does as the real one does:
 * - One global resourceVersion, increasing with every write (etcd's revision). Objects carry
 *   the revision of their last write; lists carry the revision they were read at.
 * - A bounded event history, like the watch cache: a watch from resourceVersion N replays the
 *   events after N, then streams new ones, as chunked newline-delimited JSON
 *   (`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}`). N older than the
 *   history gets an `ERROR` event carrying a 410 `Status` (reason Expired) in the stream, then
 *   the end of the response. No resourceVersion (or "0") starts with synthetic ADDED events.
 * - `allowWatchBookmarks=true`: BOOKMARK events every `bookmarkIntervalMs` and before a timeout;
 *   `timeoutSeconds` ends the watch cleanly; `sendInitialEvents=true` ends the initial ADDED
 *   events with a bookmark annotated `k8s.io/initial-events-end`.
 * - Label selectors (equality and set-based) and `metadata.name`/`metadata.namespace` field
 *   selectors, on lists and watches; an object leaving a watch's selection is a DELETED event
 *   for that watch, one entering it an ADDED event.
 * - Paged lists (`limit`, `continue`): every page reads the snapshot of the first; a continue
 *   token older than the history answers HTTP 410. `resourceVersionMatch=Exact` reads a snapshot.
 * - Legacy and aggregated discovery (kubectl 1.32 asks for `apidiscovery.k8s.io/v2`),
 *   `Status` objects for errors, create/replace/delete.
 * - Bearer tokens: the right one authenticates, a wrong one gets 401, none is anonymous and
 *   allowed (kubectl sends no token to a plain-http server; client-node does).
 * What it leaves out: Table output (kubectl then prints only NAME and AGE unless given -o),
 * OpenAPI documents (so `kubectl create` needs `--validate=false`), PATCH, protobuf.
 *
 * Test hooks: applySlice/deleteSlice, applyEndpoints/deleteEndpoints, applyNode, cutWatches,
 * stallWatches, compactHistory, stop, restart (same port, state kept), writeKubeconfig,
 * writeServiceAccount; `requests` records what clients asked.
 *
 * As a process: `node tests/k8s/fake-apiserver.ts --port 0 [--token T] [--kubeconfig DIR]
 * [--tls] [--bookmark-ms N]` prints `listening http://127.0.0.1:PORT` (and writes
 * DIR/kubeconfig.yaml); POST /_standin/{cut-watches,stall-watches,compact-history} reach the
 * hooks, and writes go through the API (kubectl create / replace / delete).
 */
import { randomUUID } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import { parseFieldSelector, parseLabelSelector, SelectorError, type Labels } from "./selectors.ts";

// ---------------------------------------------------------------------------------------------
// Objects

/** A Kubernetes object as JSON; only `metadata` is known to the server. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    resourceVersion?: string;
    uid?: string;
    creationTimestamp?: string;
    generation?: number;
    [field: string]: unknown;
  };
  [field: string]: unknown;
}

interface ResourceType {
  readonly group: string;
  readonly version: string;
  /** Plural, as in the URL. */
  readonly resource: string;
  readonly singular: string;
  readonly kind: string;
  readonly namespaced: boolean;
  readonly shortNames: readonly string[];
}

const endpointSlices: ResourceType = {
  group: "discovery.k8s.io",
  version: "v1",
  resource: "endpointslices",
  singular: "endpointslice",
  kind: "EndpointSlice",
  namespaced: true,
  shortNames: [],
};
const endpoints: ResourceType = {
  group: "",
  version: "v1",
  resource: "endpoints",
  singular: "endpoints",
  kind: "Endpoints",
  namespaced: true,
  shortNames: ["ep"],
};
const nodes: ResourceType = {
  group: "",
  version: "v1",
  resource: "nodes",
  singular: "node",
  kind: "Node",
  namespaced: false,
  shortNames: ["no"],
};
const resourceTypes = [endpointSlices, endpoints, nodes];
/** What this stand-in implements; discovery advertises exactly these verbs. */
const verbs = ["create", "delete", "get", "list", "update", "watch"];

const tlsDir = new URL("./tls/", import.meta.url);
const tlsCertificate = await readFile(new URL("stand-in.crt", tlsDir), "utf8");
const tlsKey = await readFile(new URL("stand-in.key", tlsDir), "utf8");

const apiVersionOf = (t: ResourceType) => (t.group === "" ? t.version : `${t.group}/${t.version}`);
const prefixOf = (t: ResourceType) => (t.group === "" ? `/api/${t.version}` : `/apis/${t.group}/${t.version}`);
const keyOf = (namespace: string | undefined, name: string) => `${namespace ?? ""}/${name}`;

function clone<T>(value: T): T {
  return structuredClone(value);
}

// ---------------------------------------------------------------------------------------------
// Builders for tests

export interface SliceEndpointSpec {
  readonly ip: string;
  /** Conditions left undefined are left out of the object (the API's "unknown"). */
  readonly ready?: boolean;
  readonly serving?: boolean;
  readonly terminating?: boolean;
  readonly zone?: string;
  readonly nodeName?: string;
  /** Pod name, as `targetRef`. */
  readonly pod?: string;
  /** `hints.forZones`. */
  readonly hints?: readonly string[];
}

export interface SliceSpec {
  readonly namespace?: string;
  readonly service: string;
  readonly name: string;
  readonly addressType?: "IPv4" | "IPv6" | "FQDN";
  readonly ports: readonly { readonly name?: string; readonly port: number; readonly protocol?: string }[];
  readonly endpoints: readonly SliceEndpointSpec[];
}

/** An EndpointSlice of `service` as the EndpointSlice controller writes one. */
export function endpointSlice(spec: SliceSpec): KubeObject {
  return {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: {
      name: spec.name,
      namespace: spec.namespace ?? "default",
      labels: {
        "kubernetes.io/service-name": spec.service,
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
      },
    },
    addressType: spec.addressType ?? "IPv4",
    ports: spec.ports.map((p) => ({ ...(p.name === undefined ? {} : { name: p.name }), port: p.port, protocol: p.protocol ?? "TCP" })),
    endpoints: spec.endpoints.map((e) => {
      const conditions: Record<string, boolean> = {};
      if (e.ready !== undefined) conditions.ready = e.ready;
      if (e.serving !== undefined) conditions.serving = e.serving;
      if (e.terminating !== undefined) conditions.terminating = e.terminating;
      return {
        addresses: [e.ip],
        conditions,
        ...(e.nodeName === undefined ? {} : { nodeName: e.nodeName }),
        ...(e.zone === undefined ? {} : { zone: e.zone }),
        ...(e.pod === undefined ? {} : { targetRef: { kind: "Pod", namespace: spec.namespace ?? "default", name: e.pod } }),
        ...(e.hints === undefined ? {} : { hints: { forZones: e.hints.map((name) => ({ name })) } }),
      };
    }),
  };
}

export interface LegacyEndpointsSpec {
  readonly namespace?: string;
  readonly service: string;
  readonly subsets: readonly {
    readonly ready?: readonly { readonly ip: string; readonly pod?: string; readonly nodeName?: string }[];
    readonly notReady?: readonly { readonly ip: string; readonly pod?: string; readonly nodeName?: string }[];
    readonly ports: readonly { readonly name?: string; readonly port: number }[];
  }[];
}

/** A v1 Endpoints object of `service` (named after it, as the endpoints controller writes it). */
export function legacyEndpoints(spec: LegacyEndpointsSpec): KubeObject {
  const namespace = spec.namespace ?? "default";
  const address = (a: { ip: string; pod?: string; nodeName?: string }) => ({
    ip: a.ip,
    ...(a.nodeName === undefined ? {} : { nodeName: a.nodeName }),
    ...(a.pod === undefined ? {} : { targetRef: { kind: "Pod", namespace, name: a.pod } }),
  });
  return {
    apiVersion: "v1",
    kind: "Endpoints",
    metadata: { name: spec.service, namespace },
    subsets: spec.subsets.map((s) => ({
      ...(s.ready?.length ? { addresses: s.ready.map(address) } : {}),
      ...(s.notReady?.length ? { notReadyAddresses: s.notReady.map(address) } : {}),
      ports: s.ports.map((p) => ({ ...(p.name === undefined ? {} : { name: p.name }), port: p.port, protocol: "TCP" })),
    })),
  };
}

// ---------------------------------------------------------------------------------------------
// Status objects

interface StatusOptions {
  readonly reason: string;
  readonly message: string;
  readonly details?: Record<string, unknown>;
}

function status(code: number, { reason, message, details }: StatusOptions) {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: code < 400 ? "Success" : "Failure",
    message,
    reason,
    ...(details === undefined ? {} : { details }),
    code,
  };
}

class ApiError extends Error {
  readonly code: number;
  readonly body: ReturnType<typeof status>;
  constructor(code: number, options: StatusOptions) {
    super(options.message);
    this.code = code;
    this.body = status(code, options);
  }
}

const notFound = (t: ResourceType, name: string) =>
  new ApiError(404, {
    reason: "NotFound",
    message: `${t.group === "" ? t.resource : `${t.resource}.${t.group}`} "${name}" not found`,
    details: { name, group: t.group, kind: t.resource },
  });
const badRequest = (message: string) => new ApiError(400, { reason: "BadRequest", message });
const expired = (message: string) => new ApiError(410, { reason: "Expired", message });

// ---------------------------------------------------------------------------------------------
// Store: current objects plus a bounded log of changes, like etcd behind the watch cache

type EventType = "ADDED" | "MODIFIED" | "DELETED";

interface Change {
  readonly revision: number;
  readonly type: ResourceType;
  readonly event: EventType;
  /** After the change; for DELETED, the last state with the deletion's resourceVersion. */
  readonly object: KubeObject;
  /** Before the change; undefined for ADDED. */
  readonly previous: KubeObject | undefined;
}

class Store {
  revision: number;
  /** Every change after this revision is in `log`. */
  compactedThrough: number;
  readonly #historyLimit: number;
  readonly #objects = new Map<ResourceType, Map<string, KubeObject>>(resourceTypes.map((t) => [t, new Map()]));
  readonly log: Change[] = [];
  readonly #listeners = new Set<(change: Change) => void>();

  constructor(historyLimit: number, firstRevision: number) {
    this.#historyLimit = historyLimit;
    this.revision = firstRevision;
    this.compactedThrough = firstRevision;
  }

  onChange(listener: (change: Change) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get(type: ResourceType, key: string): KubeObject | undefined {
    return this.#objects.get(type)!.get(key);
  }

  /** Creates or replaces, stamping metadata as the API server does. */
  put(type: ResourceType, input: KubeObject): KubeObject {
    const name = input.metadata?.name;
    if (typeof name !== "string" || name === "") throw badRequest("metadata.name: Required value: name is required");
    const namespace = type.namespaced ? (input.metadata.namespace ?? "default") : undefined;
    const key = keyOf(namespace, name);
    const previous = this.get(type, key);
    const revision = ++this.revision;
    const object = clone(input);
    object.apiVersion = apiVersionOf(type);
    object.kind = type.kind;
    object.metadata = {
      ...object.metadata,
      name,
      ...(namespace === undefined ? {} : { namespace }),
      uid: previous?.metadata.uid ?? randomUUID(),
      resourceVersion: String(revision),
      creationTimestamp: previous?.metadata.creationTimestamp ?? new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      generation: (previous?.metadata.generation ?? 0) + 1,
    };
    if (namespace === undefined) delete object.metadata.namespace;
    this.#objects.get(type)!.set(key, object);
    this.#record({ revision, type, event: previous ? "MODIFIED" : "ADDED", object, previous });
    return object;
  }

  delete(type: ResourceType, key: string): KubeObject | undefined {
    const previous = this.get(type, key);
    if (previous === undefined) return undefined;
    const revision = ++this.revision;
    this.#objects.get(type)!.delete(key);
    const object = clone(previous);
    object.metadata.resourceVersion = String(revision);
    this.#record({ revision, type, event: "DELETED", object, previous });
    return object;
  }

  /** Objects of `type` as they were at `revision` (which must not be compacted), sorted by key. */
  snapshot(type: ResourceType, revision: number): [string, KubeObject][] {
    const state = new Map(this.#objects.get(type)!);
    for (let i = this.log.length - 1; i >= 0 && this.log[i].revision > revision; i--) {
      const change = this.log[i];
      if (change.type !== type) continue;
      const key = keyOf(change.object.metadata.namespace, change.object.metadata.name);
      if (change.previous === undefined) state.delete(key);
      else state.set(key, change.previous);
    }
    return [...state].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  changesAfter(revision: number): Change[] {
    return this.log.filter((c) => c.revision > revision);
  }

  compact(): void {
    this.log.length = 0;
    this.compactedThrough = this.revision;
  }

  #record(change: Change): void {
    this.log.push(change);
    while (this.log.length > this.#historyLimit) this.compactedThrough = this.log.shift()!.revision;
    for (const listener of this.#listeners) listener(change);
  }
}

// ---------------------------------------------------------------------------------------------
// The server

export interface FakeApiServerOptions {
  /** 0 (default) for an ephemeral port. */
  readonly port?: number;
  /** The bearer token the server accepts; requests without credentials are anonymous and allowed. */
  readonly token?: string;
  /** Period of BOOKMARK events on watches that allow them. */
  readonly bookmarkIntervalMs?: number;
  /** Changes the history keeps before older resourceVersions expire. */
  readonly historyLimit?: number;
  /** A watch's timeout when the client gives none (the real server picks 30-60 min). */
  readonly defaultWatchTimeoutSeconds?: number;
  /**
   * Serve HTTPS with the committed test certificate for 127.0.0.1 (tests/k8s/tls, self-signed,
   * valid to 2126), as a cluster's API server does for in-cluster clients.
   */
  readonly tls?: boolean;
}

const defaults = {
  port: 0,
  tls: false,
  token: "stand-in-token",
  bookmarkIntervalMs: 1_000,
  historyLimit: 1_000,
  defaultWatchTimeoutSeconds: 1_800,
};

/** One request as the server saw it, for tests that check what a client asked. */
export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** Whether it carried the server's bearer token (else it was anonymous). */
  readonly authenticated: boolean;
}

interface OpenWatch {
  readonly response: ServerResponse;
  readonly type: ResourceType;
  stalled: boolean;
  readonly close: () => void;
}

export class FakeApiServer {
  readonly #settings: typeof defaults;
  readonly #server: Server;
  readonly #store: Store;
  readonly #watches = new Set<OpenWatch>();
  readonly #sockets = new Set<Socket>();
  readonly #requests: RecordedRequest[] = [];
  #port = 0;

  private constructor(options: FakeApiServerOptions) {
    this.#settings = {
      port: options.port ?? defaults.port,
      token: options.token ?? defaults.token,
      bookmarkIntervalMs: options.bookmarkIntervalMs ?? defaults.bookmarkIntervalMs,
      historyLimit: options.historyLimit ?? defaults.historyLimit,
      defaultWatchTimeoutSeconds: options.defaultWatchTimeoutSeconds ?? defaults.defaultWatchTimeoutSeconds,
      tls: options.tls ?? defaults.tls,
    };
    // Not 0 or 1, so a client that confuses "0" (any) with a real version shows up.
    this.#store = new Store(this.#settings.historyLimit, 100);
    const handle = (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res);
    this.#server = this.#settings.tls ? createTlsServer({ key: tlsKey, cert: tlsCertificate }, handle) : createServer(handle);
    this.#server.on("connection", (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
  }

  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const server = new FakeApiServer(options);
    await server.#listen(server.#settings.port);
    return server;
  }

  get url(): string {
    return `${this.#settings.tls ? "https" : "http"}://127.0.0.1:${this.#port}`;
  }

  get port(): number {
    return this.#port;
  }

  get token(): string {
    return this.#settings.token;
  }

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.#store.revision);
  }

  /** Watches whose response is open now. */
  get openWatches(): number {
    return this.#watches.size;
  }

  /** Requests seen so far (the newest 1,000). */
  get requests(): readonly RecordedRequest[] {
    return this.#requests;
  }

  /** Creates or replaces an EndpointSlice; returns it as stored (with its resourceVersion). */
  applySlice(slice: KubeObject): KubeObject {
    return clone(this.#store.put(endpointSlices, slice));
  }

  deleteSlice(namespace: string, name: string): boolean {
    return this.#store.delete(endpointSlices, keyOf(namespace, name)) !== undefined;
  }

  applyEndpoints(object: KubeObject): KubeObject {
    return clone(this.#store.put(endpoints, object));
  }

  deleteEndpoints(namespace: string, name: string): boolean {
    return this.#store.delete(endpoints, keyOf(namespace, name)) !== undefined;
  }

  applyNode(node: KubeObject): KubeObject {
    return clone(this.#store.put(nodes, node));
  }

  /** Destroys the connections of every open watch, as a dropped network path or a dying apiserver would. */
  cutWatches(): void {
    for (const watch of [...this.#watches]) {
      watch.close();
      watch.response.socket?.destroy();
    }
  }

  /** Open watches go silent (no events, no bookmarks, no timeout) but stay connected. New watches are not affected. */
  stallWatches(): void {
    for (const watch of this.#watches) watch.stalled = true;
  }

  /** Forgets all history: a watch or a continued list from an older resourceVersion gets 410 Gone. */
  compactHistory(): void {
    this.#store.compact();
  }

  /** Stops listening and drops every connection; state is kept for `restart`. */
  async stop(): Promise<void> {
    this.cutWatches();
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  /** Listens again on the same port, with the same objects and history. */
  async restart(): Promise<void> {
    if (this.#server.listening) await this.stop();
    await this.#listen(this.#port);
  }

  /**
   * Writes `kubeconfig.yaml` for this server into `dir` and returns its path.
   * `insecure-skip-tls-verify` is there for client-node: 2.0.1 refuses an `http://` server
   * without it ("HTTP protocol is not allowed when skipTLSVerify is not set or false"); kubectl
   * ignores it for http. kubectl sends no token to a plain-http server; client-node does.
   */
  async writeKubeconfig(dir: string, namespace = "default"): Promise<string> {
    const file = join(dir, "kubeconfig.yaml");
    const trust = this.#settings.tls
      ? `certificate-authority-data: ${Buffer.from(tlsCertificate).toString("base64")}`
      : "insecure-skip-tls-verify: true";
    await writeFile(
      file,
      `apiVersion: v1
kind: Config
clusters:
- name: stand-in
  cluster:
    server: ${this.url}
    ${trust}
users:
- name: stand-in
  user:
    token: ${this.token}
contexts:
- name: stand-in
  context:
    cluster: stand-in
    user: stand-in
    namespace: ${namespace}
current-context: stand-in
`,
    );
    return file;
  }

  /**
   * Mounts a service account for this server under `root` (token, ca.crt, namespace in
   * `root/var/run/secrets/kubernetes.io/serviceaccount`) and returns the environment a pod would
   * have: client-node's `loadFromCluster(root)` then reaches this server. Needs `tls` (in-cluster
   * clients speak https to any port but 80, 8080 and 8001).
   */
  async writeServiceAccount(root: string, namespace = "default"): Promise<Record<string, string>> {
    const dir = join(root, "var/run/secrets/kubernetes.io/serviceaccount");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "token"), this.token);
    await writeFile(join(dir, "ca.crt"), tlsCertificate);
    await writeFile(join(dir, "namespace"), namespace);
    return { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(this.#port) };
  }

  async #listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, "127.0.0.1", () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    this.#port = (this.#server.address() as AddressInfo).port;
  }

  // -------------------------------------------------------------------------------------------
  // Requests

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://stand-in");
    const query = Object.fromEntries(url.searchParams);
    const authenticated = req.headers.authorization === `Bearer ${this.#settings.token}`;
    this.#requests.push({ method: req.method ?? "GET", path: url.pathname, query, authenticated });
    if (this.#requests.length > 1_000) this.#requests.shift();
    const body: Buffer[] = [];
    req.on("data", (chunk: Buffer) => body.push(chunk));
    req.on("end", () => {
      try {
        this.#route(req, res, url, Buffer.concat(body).toString("utf8"));
      } catch (e) {
        if (e instanceof ApiError) sendJson(res, e.code, e.body);
        else sendJson(res, 500, status(500, { reason: "InternalError", message: String(e) }));
      }
    });
  }

  #route(req: IncomingMessage, res: ServerResponse, url: URL, body: string): void {
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const method = req.method ?? "GET";
    if (["/healthz", "/livez", "/readyz"].includes(path)) return void sendText(res, 200, "ok");
    if (path === "/version") return void sendJson(res, 200, versionInfo);
    // Like a server with anonymous auth on: no credentials is allowed (kubectl sends none over
    // plain http), wrong ones are refused.
    const credentials = req.headers.authorization;
    if (credentials !== undefined && credentials !== `Bearer ${this.#settings.token}`) {
      throw new ApiError(401, { reason: "Unauthorized", message: "Unauthorized" });
    }
    if (path.startsWith("/_standin/") && method === "POST") return void this.#standInHook(path, res);
    if (!acceptsJson(req.headers.accept) && !path.startsWith("/openapi/")) {
      throw new ApiError(406, { reason: "NotAcceptable", message: "only the following media types are accepted: application/json" });
    }
    const target = parseResourcePath(path);
    if (target === undefined) {
      const document = discoveryDocument(path, req.headers.accept ?? "", this.#port);
      // No OpenAPI documents either: kubectl then skips client-side validation where it can.
      if (document === undefined) {
        throw new ApiError(404, { reason: "NotFound", message: "the server could not find the requested resource" });
      }
      return void sendJson(res, 200, document.body, document.contentType);
    }
    const params = url.searchParams;
    const watch = target.legacyWatch || params.get("watch") === "true" || params.get("watch") === "1";
    switch (method) {
      case "GET":
        if (target.name !== undefined && !watch) return void sendJson(res, 200, this.#get(target.type, target.namespace, target.name));
        if (watch) return this.#watch(res, target, params);
        return void sendJson(res, 200, this.#list(target, params));
      case "POST":
        if (target.name !== undefined) throw methodNotAllowed();
        return void sendJson(res, 201, this.#create(target, parseBody(body)));
      case "PUT":
        if (target.name === undefined) throw methodNotAllowed();
        return void sendJson(res, 200, this.#replace(target, target.name, parseBody(body)));
      case "DELETE": {
        if (target.name === undefined) throw methodNotAllowed();
        const deleted = this.#store.delete(target.type, keyOf(target.namespace, target.name));
        if (deleted === undefined) throw notFound(target.type, target.name);
        return void sendJson(
          res,
          200,
          status(200, {
            reason: "",
            message: "",
            details: { name: target.name, group: target.type.group, kind: target.type.resource, uid: deleted.metadata.uid },
          }),
        );
      }
      default:
        throw methodNotAllowed();
    }
  }

  #standInHook(path: string, res: ServerResponse): void {
    const hooks: Record<string, () => void> = {
      "/_standin/cut-watches": () => this.cutWatches(),
      "/_standin/stall-watches": () => this.stallWatches(),
      "/_standin/compact-history": () => this.compactHistory(),
    };
    const hook = hooks[path];
    if (hook === undefined) throw new ApiError(404, { reason: "NotFound", message: `no stand-in hook ${path}` });
    hook();
    sendJson(res, 200, { resourceVersion: this.resourceVersion });
  }

  #get(type: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const object = this.#store.get(type, keyOf(namespace, name));
    if (object === undefined) throw notFound(type, name);
    return object;
  }

  #list(target: ResourceTarget, params: URLSearchParams) {
    const { type } = target;
    const select = selection(type, params, target.namespace);
    const limit = params.has("limit") ? Number(params.get("limit")) : 0;
    if (!Number.isInteger(limit) || limit < 0) throw badRequest(`invalid limit: ${params.get("limit")}`);
    const resourceVersion = params.get("resourceVersion") ?? "";
    const match = params.get("resourceVersionMatch") ?? "";
    const continueToken = params.get("continue") ?? "";
    let revision = this.#store.revision;
    let startAfter = "";
    if (continueToken !== "") {
      if (resourceVersion !== "" && resourceVersion !== "0") {
        throw badRequest("specifying resource version is not allowed when using continue");
      }
      ({ revision, startAfter } = decodeContinue(continueToken));
      if (revision < this.#store.compactedThrough) {
        throw expired(
          "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue value from the response to start a new list.",
        );
      }
    } else if (match !== "") {
      if (resourceVersion === "") throw badRequest("resourceVersionMatch is forbidden unless resourceVersion is provided");
      const requested = parseRevision(resourceVersion);
      if (match === "Exact") {
        if (requested < this.#store.compactedThrough) throw expired(`too old resource version: ${requested} (${this.#store.compactedThrough})`);
        if (requested > this.#store.revision) throw tooLarge(requested, this.#store.revision);
        revision = requested;
      } else if (match === "NotOlderThan") {
        if (requested > this.#store.revision) throw tooLarge(requested, this.#store.revision);
      } else {
        throw badRequest(`resourceVersionMatch: Unsupported value: "${match}"`);
      }
    } else if (resourceVersion !== "" && resourceVersion !== "0") {
      const requested = parseRevision(resourceVersion);
      if (requested > this.#store.revision) throw tooLarge(requested, this.#store.revision);
    }
    const selected = this.#store.snapshot(type, revision).filter(([key, object]) => key > startAfter && select(object));
    const page = limit > 0 ? selected.slice(0, limit) : selected;
    const more = selected.length > page.length;
    return {
      kind: `${type.kind}List`,
      apiVersion: apiVersionOf(type),
      metadata: {
        resourceVersion: String(revision),
        ...(more
          ? { continue: encodeContinue(revision, page[page.length - 1][0]), remainingItemCount: selected.length - page.length }
          : {}),
      },
      // A typed list's items carry no kind or apiVersion on the wire.
      items: page.map(([, object]) => {
        const { kind: _kind, apiVersion: _apiVersion, ...item } = object;
        return item;
      }),
    };
  }

  #create(target: ResourceTarget, object: KubeObject): KubeObject {
    const namespace = this.#namespaceOf(target, object);
    if (this.#store.get(target.type, keyOf(namespace, object.metadata.name)) !== undefined) {
      throw new ApiError(409, {
        reason: "AlreadyExists",
        message: `${target.type.resource}${target.type.group ? `.${target.type.group}` : ""} "${object.metadata.name}" already exists`,
        details: { name: object.metadata.name, group: target.type.group, kind: target.type.resource },
      });
    }
    return this.#store.put(target.type, { ...object, metadata: { ...object.metadata, namespace } });
  }

  #replace(target: ResourceTarget, name: string, object: KubeObject): KubeObject {
    if (object.metadata.name !== name) throw badRequest("the name of the object does not match the name on the URL");
    const namespace = this.#namespaceOf(target, object);
    const current = this.#get(target.type, namespace, name);
    const expected = object.metadata.resourceVersion;
    if (expected !== undefined && expected !== "" && expected !== current.metadata.resourceVersion) {
      throw new ApiError(409, {
        reason: "Conflict",
        message: `Operation cannot be fulfilled on ${target.type.resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        details: { name, group: target.type.group, kind: target.type.resource },
      });
    }
    return this.#store.put(target.type, { ...object, metadata: { ...object.metadata, namespace } });
  }

  #namespaceOf(target: ResourceTarget, object: KubeObject): string | undefined {
    if (typeof object?.metadata !== "object" || object.metadata === null) throw badRequest("metadata: Required value");
    if (!target.type.namespaced) return undefined;
    if (target.namespace === undefined) throw methodNotAllowed();
    if (object.metadata.namespace !== undefined && object.metadata.namespace !== target.namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    return target.namespace;
  }

  // -------------------------------------------------------------------------------------------
  // Watches

  #watch(res: ServerResponse, target: ResourceTarget, params: URLSearchParams): void {
    const { type } = target;
    const select = selection(type, params, target.namespace);
    const bookmarks = params.get("allowWatchBookmarks") === "true";
    const timeoutSeconds = params.has("timeoutSeconds")
      ? Number(params.get("timeoutSeconds"))
      : this.#settings.defaultWatchTimeoutSeconds;
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) throw badRequest(`invalid timeoutSeconds`);
    const resourceVersion = params.get("resourceVersion") ?? "";
    const initialEvents = params.get("sendInitialEvents") === "true";
    const fromScratch = resourceVersion === "" || resourceVersion === "0" || initialEvents;
    const from = fromScratch ? this.#store.revision : parseRevision(resourceVersion);
    if (from > this.#store.revision) throw tooLarge(from, this.#store.revision);

    res.writeHead(200, {
      "content-type": "application/json",
      "cache-control": "no-cache, private",
      "transfer-encoding": "chunked",
    });
    res.flushHeaders();
    const send = (type: string, object: unknown) => {
      if (!watch.stalled && !res.writableEnded) res.write(`${JSON.stringify({ type, object })}\n`);
    };
    const bookmark = (annotations?: Record<string, string>) =>
      send("BOOKMARK", {
        kind: type.kind,
        apiVersion: apiVersionOf(type),
        metadata: { resourceVersion: String(this.#store.revision), ...(annotations ? { annotations } : {}) },
      });
    const deliver = (change: Change) => {
      if (change.type !== type) return;
      const event = eventFor(change, select);
      if (event !== undefined) send(event.type, event.object);
    };

    let timeout: ReturnType<typeof setTimeout> | undefined;
    let bookmarkTimer: ReturnType<typeof setInterval> | undefined;
    let unsubscribe = () => {};
    const watch: OpenWatch = {
      response: res,
      type,
      stalled: false,
      close: () => {
        this.#watches.delete(watch);
        unsubscribe();
        clearTimeout(timeout);
        clearInterval(bookmarkTimer);
      },
    };
    this.#watches.add(watch);
    res.on("close", watch.close);

    if (!fromScratch && from < this.#store.compactedThrough) {
      send("ERROR", status(410, { reason: "Expired", message: `too old resource version: ${from} (${this.#store.compactedThrough})` }));
      watch.close();
      res.end();
      return;
    }
    if (fromScratch) {
      for (const [, object] of this.#store.snapshot(type, from)) if (select(object)) send("ADDED", object);
      if (initialEvents && bookmarks) bookmark({ "k8s.io/initial-events-end": "true" });
    } else {
      for (const change of this.#store.changesAfter(from)) deliver(change);
    }
    unsubscribe = this.#store.onChange(deliver);
    if (bookmarks) bookmarkTimer = setInterval(() => bookmark(), this.#settings.bookmarkIntervalMs);
    if (timeoutSeconds > 0) {
      timeout = setTimeout(() => {
        // A stalled watch is a hung server: it does not end on time either.
        if (watch.stalled) return;
        if (bookmarks) bookmark();
        watch.close();
        res.end();
      }, timeoutSeconds * 1_000);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/** The event a watch with this selection sees for a change, if any (the watch cache's rules). */
function eventFor(change: Change, select: (o: KubeObject) => boolean): { type: EventType; object: KubeObject } | undefined {
  const now = change.event !== "DELETED" && select(change.object);
  const before = change.previous !== undefined && select(change.previous);
  if (change.event === "DELETED") return before ? { type: "DELETED", object: change.object } : undefined;
  if (now && before) return { type: "MODIFIED", object: change.object };
  if (now) return { type: "ADDED", object: change.object };
  if (before) {
    // Left the selection: a deletion, of the old content at the new resourceVersion.
    const object = clone(change.previous!);
    object.metadata.resourceVersion = String(change.revision);
    return { type: "DELETED", object };
  }
  return undefined;
}

interface ResourceTarget {
  readonly type: ResourceType;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  /** The deprecated `/watch/` path form. */
  readonly legacyWatch: boolean;
}

function parseResourcePath(path: string): ResourceTarget | undefined {
  for (const type of resourceTypes) {
    const prefix = prefixOf(type);
    if (!path.startsWith(`${prefix}/`)) continue;
    let rest = path.slice(prefix.length + 1).split("/").map(decodeURIComponent);
    const legacyWatch = rest[0] === "watch";
    if (legacyWatch) rest = rest.slice(1);
    let namespace: string | undefined;
    if (rest[0] === "namespaces" && rest.length >= 3) {
      if (!type.namespaced) continue;
      namespace = rest[1];
      rest = rest.slice(2);
    }
    if (rest[0] !== type.resource || rest.length > 2) continue;
    return { type, namespace, name: rest[1], legacyWatch };
  }
  return undefined;
}

/** The objects a request's namespace, label and field selectors pick. */
function selection(type: ResourceType, params: URLSearchParams, namespace: string | undefined) {
  try {
    const labels = parseLabelSelector(params.get("labelSelector") ?? "");
    const fields = parseFieldSelector(
      params.get("fieldSelector") ?? "",
      (object, field) => {
        const metadata = (object as KubeObject).metadata;
        return field === "metadata.name" ? metadata.name : (metadata.namespace ?? "");
      },
      type.namespaced ? ["metadata.name", "metadata.namespace"] : ["metadata.name"],
    );
    return (object: KubeObject) =>
      (namespace === undefined || object.metadata.namespace === namespace) &&
      labels.matches(object.metadata.labels as Labels | undefined) &&
      fields.matches(object);
  } catch (e) {
    if (e instanceof SelectorError) throw badRequest(e.message);
    throw e;
  }
}

function parseRevision(text: string): number {
  if (!/^\d+$/.test(text)) throw badRequest(`Invalid value: "${text}": must be a valid resourceVersion`);
  return Number(text);
}

const tooLarge = (requested: number, current: number) =>
  new ApiError(504, {
    reason: "Timeout",
    message: `Timeout: Too large resource version: ${requested}, current: ${current}`,
    details: { causes: [{ reason: "ResourceVersionTooLarge", message: "Too large resource version" }], retryAfterSeconds: 1 },
  });

const methodNotAllowed = () => new ApiError(405, { reason: "MethodNotAllowed", message: "the server does not allow this method on the requested resource" });

function encodeContinue(revision: number, lastKey: string): string {
  return Buffer.from(JSON.stringify({ v: "meta.k8s.io/v1", rv: revision, start: `${lastKey}\u0000` })).toString("base64url");
}

function decodeContinue(token: string): { revision: number; startAfter: string } {
  try {
    const decoded = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (decoded.v === "meta.k8s.io/v1" && Number.isInteger(decoded.rv) && typeof decoded.start === "string") {
      // Keys sort below their own "\0" successor, so "after lastKey" is "at or after start".
      return { revision: decoded.rv, startAfter: decoded.start.slice(0, -1) };
    }
  } catch {
    // Reported below.
  }
  throw badRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
}

function parseBody(body: string): KubeObject {
  try {
    return JSON.parse(body);
  } catch {
    throw badRequest("the body of the request was in an unknown format - accepted media types include: application/json");
  }
}

function acceptsJson(accept: string | undefined): boolean {
  if (accept === undefined || accept === "") return true;
  return accept.split(",").some((part) => {
    const type = part.split(";")[0].trim();
    return type === "application/json" || type === "*/*" || type === "application/*";
  });
}

/** The discovery document `path` names, if any, in the form `accept` asks for. */
function discoveryDocument(path: string, accept: string, port: number): { body: unknown; contentType?: string } | undefined {
  const groups = [...new Set(resourceTypes.map((t) => t.group))].filter((g) => g !== "");
  const aggregated = aggregatedDiscoveryType(accept);
  if ((path === "/api" || path === "/apis") && aggregated !== undefined) {
    return {
      body: aggregatedDiscovery(path === "/api" ? [""] : groups, aggregated),
      contentType: `application/json;g=apidiscovery.k8s.io;v=${aggregated};as=APIGroupDiscoveryList`,
    };
  }
  if (path === "/api") {
    return {
      body: {
        kind: "APIVersions",
        versions: ["v1"],
        serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress: `127.0.0.1:${port}` }],
      },
    };
  }
  if (path === "/apis") return { body: { kind: "APIGroupList", apiVersion: "v1", groups: groups.map(apiGroup) } };
  const group = /^\/apis\/([^/]+)$/.exec(path)?.[1];
  if (group !== undefined && groups.includes(group)) return { body: { kind: "APIGroup", apiVersion: "v1", ...apiGroup(group) } };
  const groupVersion = path === "/api/v1" ? "v1" : /^\/apis\/([^/]+\/[^/]+)$/.exec(path)?.[1];
  const types = resourceTypes.filter((t) => apiVersionOf(t) === groupVersion);
  if (types.length === 0) return undefined;
  return {
    body: {
      kind: "APIResourceList",
      apiVersion: "v1",
      groupVersion,
      resources: types.map((t) => ({
        name: t.resource,
        singularName: t.singular,
        namespaced: t.namespaced,
        kind: t.kind,
        verbs,
        ...(t.shortNames.length > 0 ? { shortNames: t.shortNames } : {}),
      })),
    },
  };
}

/** The aggregated discovery version the client accepts (kubectl 1.32 asks for v2, then v2beta1). */
function aggregatedDiscoveryType(accept: string): "v2" | "v2beta1" | undefined {
  for (const part of accept.split(",")) {
    const params = part.split(";").map((p) => p.trim());
    if (params[0] !== "application/json" || !params.includes("g=apidiscovery.k8s.io") || !params.includes("as=APIGroupDiscoveryList")) continue;
    if (params.includes("v=v2")) return "v2";
    if (params.includes("v=v2beta1")) return "v2beta1";
  }
  return undefined;
}

function aggregatedDiscovery(groups: readonly string[], version: "v2" | "v2beta1") {
  return {
    kind: "APIGroupDiscoveryList",
    apiVersion: `apidiscovery.k8s.io/${version}`,
    metadata: {},
    items: groups.map((group) => ({
      metadata: group === "" ? {} : { name: group },
      versions: [
        {
          version: "v1",
          resources: resourceTypes
            .filter((t) => t.group === group)
            .map((t) => ({
              resource: t.resource,
              responseKind: { group: t.group, version: t.version, kind: t.kind },
              scope: t.namespaced ? "Namespaced" : "Cluster",
              singularResource: t.singular,
              verbs,
              ...(t.shortNames.length > 0 ? { shortNames: t.shortNames } : {}),
            })),
          freshness: "Current",
        },
      ],
    })),
  };
}

function apiGroup(group: string) {
  const version = { groupVersion: `${group}/v1`, version: "v1" };
  return { name: group, versions: [version], preferredVersion: version };
}

const versionInfo = {
  major: "1",
  minor: "32",
  gitVersion: "v1.32.0-stand-in",
  gitCommit: "0000000000000000000000000000000000000000",
  gitTreeState: "clean",
  buildDate: "2026-01-01T00:00:00Z",
  goVersion: "go1.23.0",
  compiler: "gc",
  platform: "linux/amd64",
};

function sendJson(res: ServerResponse, code: number, body: unknown, contentType = "application/json"): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { "content-type": contentType, "content-length": Buffer.byteLength(text), "cache-control": "no-cache, private" });
  res.end(text);
}

function sendText(res: ServerResponse, code: number, text: string): void {
  res.writeHead(code, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

// ---------------------------------------------------------------------------------------------
// As a process

if (import.meta.main) {
  const { values } = (await import("node:util")).parseArgs({
    options: {
      port: { type: "string", default: "0" },
      token: { type: "string" },
      "bookmark-ms": { type: "string" },
      kubeconfig: { type: "string" },
      tls: { type: "boolean", default: false },
    },
  });
  const server = await FakeApiServer.start({
    port: Number(values.port),
    token: values.token,
    tls: values.tls,
    bookmarkIntervalMs: values["bookmark-ms"] === undefined ? undefined : Number(values["bookmark-ms"]),
  });
  if (values.kubeconfig !== undefined) await server.writeKubeconfig(values.kubeconfig);
  process.stdout.write(`listening ${server.url}\n`);
  const shutDown = () => void server.stop().then(() => process.exit(0));
  process.once("SIGTERM", shutDown);
  process.once("SIGINT", shutDown);
}
