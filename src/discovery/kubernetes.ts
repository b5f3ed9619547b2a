/**
 * Kubernetes discovery: the EndpointSlices (`discovery.k8s.io/v1`) labelled
 * `kubernetes.io/service-name=<service>` in a namespace, or the Service's legacy v1 Endpoints,
 * listed and then watched, merged into one endpoint set.
 *
 * What the emitted set says:
 * - Every endpoint of every slice of the Service that has the port (by name: each slice's own
 *   port of that name, as slices may disagree on numbers; by number: that number).
 * - The conditions as the API states them (absent `ready` is true, absent `serving` defers to
 *   `ready`, absent `terminating` is false). The pool decides what to route to: ready ones;
 *   when none is ready, KEP-1672's serving-and-terminating ones; terminating ones only drain.
 * - A failed list or watch never changes the set: the API being unreachable is not the
 *   Service being empty. The API saying there are no endpoints is an empty set.
 *
 * How the watch is kept alive:
 * - It resumes from the last resourceVersion seen (events and bookmarks, which it asks for);
 *   410 Gone means the history moved on, so it lists again.
 * - Errors are retried with exponential backoff and jitter, resuming the watch where it was.
 * - A watch that delivers nothing (no event, no bookmark) for `stallTimeoutMs` is assumed
 *   dead, a known failure of long-lived watches behind proxies and load balancers, and is
 *   restarted from its resourceVersion. client-node's Watch also ends a watch after 30 s
 *   without data (a fixed, private bound); that ends it cleanly and it resumes at once.
 *
 * Why `Watch` and list calls rather than client-node's informer (ListWatch): the informer
 * does not ask for bookmarks, stops for good on the first error until its owner restarts it,
 * reconnects without jitter, and reports per-object events when what is wanted is the set.
 *
 * @kubernetes/client-node is imported when a discovery starts, not when this module loads: it
 * is large, and 2.x does not load on Node before 22.19.
 */
import { existsSync, readFileSync } from "node:fs";
import { STATUS_CODES } from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import type * as K8s from "@kubernetes/client-node";
import { endpointKey, type DiscoveredEndpoint, type Discovery, type DiscoveryEvents } from "./types.ts";

export interface KubernetesDiscoveryOptions {
  /**
   * Default, as kubectl does: in a cluster the pod's own namespace (the service account's), else
   * the kubeconfig context's namespace, else `default`.
   */
  readonly namespace?: string;
  readonly service: string;
  /** A port name (the Service's target port name, as in the slices' `ports[].name`) or number. */
  readonly port: string | number;
  /** A kubeconfig file, used when not in a cluster. Default: `$KUBECONFIG`, then `~/.kube/config`. */
  readonly kubeconfig?: string;
  /** `endpoints` reads the legacy v1 Endpoints object named after the Service. */
  readonly api?: "endpointslices" | "endpoints";
  /** The gateway's own zone; when unset, read from its node's `topology.kubernetes.io/zone` label if `nodeName` is known. */
  readonly zone?: string;
  /** The node the gateway runs on, for its zone. Default: `$NODE_NAME` (set it from the downward API: `spec.nodeName`). */
  readonly nodeName?: string;
  /** Each watch asks the server to end it after this long (jittered up to twice it), then resumes. */
  readonly watchTimeoutSeconds?: number;
  /** A watch with no event and no bookmark for this long is restarted. */
  readonly stallTimeoutMs?: number;
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
  /** Changes within this window are emitted as one set. */
  readonly debounceMs?: number;
  /** Time limit of one list (or node) request. */
  readonly requestTimeoutMs?: number;
  /** Items per list page. */
  readonly pageSize?: number;
  /** Prefix of `/var/run/secrets/kubernetes.io/serviceaccount` (for tests). */
  readonly serviceAccountRoot?: string;
}

/** A discovery that also knows the gateway's zone, once it does. */
export interface KubernetesDiscovery extends Discovery {
  /** `zone` from the options, else the node's zone label once read (before the first set is emitted). */
  readonly zone: string | undefined;
}

const defaults = {
  api: "endpointslices",
  watchTimeoutSeconds: 300,
  // Longer than the API server's bookmark period (about a minute).
  stallTimeoutMs: 90_000,
  backoff: { baseMs: 500, maxMs: 30_000 },
  debounceMs: 10,
  requestTimeoutMs: 10_000,
  pageSize: 500,
  serviceAccountRoot: "",
} as const;

const zoneLabel = "topology.kubernetes.io/zone";
const serviceAccountTokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const serviceAccountNamespacePath = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/**
 * Watches one Service's endpoints.
 *
 * @example
 * const discovery = kubernetesDiscovery({ namespace: "default", service: "mirror", port: "grpc" });
 * discovery.start({ onEndpoints: (set) => pool.update(set) }, controller.signal);
 */
export function kubernetesDiscovery(options: KubernetesDiscoveryOptions): KubernetesDiscovery {
  const settings = settle(options);
  const watches = new Set<ServiceWatch>();
  let learnedZone: string | undefined;
  return {
    get zone() {
      return settings.zone ?? learnedZone;
    },
    start(events, signal) {
      if (signal.aborted) return;
      const watch = new ServiceWatch(settings, events, (zone) => (learnedZone = zone));
      watches.add(watch);
      signal.addEventListener(
        "abort",
        () => {
          watches.delete(watch);
          watch.stop();
        },
        { once: true },
      );
    },
    refresh() {
      for (const watch of watches) watch.refresh();
    },
  };
}

/**
 * The endpoints to send new calls to, preferring the gateway's zone: when every ready endpoint
 * carries topology hints (`hints.forZones`) and some name `zone`, those; else the ready
 * endpoints in `zone`, if any; else all of `endpoints`, unchanged.
 *
 * Pass the endpoints the pool would route to (without those it has ejected as failing), so the
 * preference holds only while same-zone endpoints are healthy, and apply the pool's own ready /
 * serving rules to what comes back. Pure.
 *
 * @example
 * preferZone([{ address: "10.0.0.1", port: 80, ready: true, serving: true, terminating: false, zone: "a" },
 *             { address: "10.0.1.1", port: 80, ready: true, serving: true, terminating: false, zone: "b" }], "a")
 * // → the first only
 */
export function preferZone(
  endpoints: readonly DiscoveredEndpoint[],
  zone: string | undefined,
): readonly DiscoveredEndpoint[] {
  if (zone === undefined || zone === "") return endpoints;
  const ready = endpoints.filter((e) => e.ready && !e.terminating);
  if (ready.length === 0) return endpoints;
  if (ready.every((e) => e.forZones !== undefined && e.forZones.length > 0)) {
    const hinted = ready.filter((e) => e.forZones!.includes(zone));
    if (hinted.length > 0) return hinted;
  }
  const local = ready.filter((e) => e.zone === zone);
  return local.length > 0 ? local : endpoints;
}

// ---------------------------------------------------------------------------------------------
// Settings

type PortRef = { readonly name: string } | { readonly number: number };

interface Settings {
  readonly namespace: string | undefined;
  readonly service: string;
  readonly port: PortRef;
  readonly kubeconfig: string | undefined;
  readonly api: "endpointslices" | "endpoints";
  readonly zone: string | undefined;
  readonly nodeName: string | undefined;
  readonly watchTimeoutSeconds: number;
  readonly stallTimeoutMs: number;
  readonly backoff: { readonly baseMs: number; readonly maxMs: number };
  readonly debounceMs: number;
  readonly requestTimeoutMs: number;
  readonly pageSize: number;
  readonly serviceAccountRoot: string;
}

function settle(options: KubernetesDiscoveryOptions): Settings {
  const invalid = (why: string) => new ConnectError(`kubernetes discovery: ${why}`, Code.InvalidArgument);
  if (options.namespace === "") throw invalid("namespace is empty");
  if (!options.service) throw invalid("service is empty");
  const port = portRef(options.port);
  if (port === undefined) throw invalid(`port ${JSON.stringify(options.port)} is neither a port name nor a number in 1-65535`);
  const api = options.api ?? defaults.api;
  if (api !== "endpointslices" && api !== "endpoints") throw invalid(`api must be endpointslices or endpoints, not ${String(api)}`);
  const settings: Settings = {
    namespace: options.namespace,
    service: options.service,
    port,
    kubeconfig: options.kubeconfig || undefined,
    api,
    zone: options.zone || undefined,
    nodeName: options.nodeName ?? (process.env.NODE_NAME || undefined),
    watchTimeoutSeconds: options.watchTimeoutSeconds ?? defaults.watchTimeoutSeconds,
    stallTimeoutMs: options.stallTimeoutMs ?? defaults.stallTimeoutMs,
    backoff: options.backoff ?? defaults.backoff,
    debounceMs: options.debounceMs ?? defaults.debounceMs,
    requestTimeoutMs: options.requestTimeoutMs ?? defaults.requestTimeoutMs,
    pageSize: options.pageSize ?? defaults.pageSize,
    serviceAccountRoot: options.serviceAccountRoot ?? defaults.serviceAccountRoot,
  };
  const positive = {
    watchTimeoutSeconds: settings.watchTimeoutSeconds,
    stallTimeoutMs: settings.stallTimeoutMs,
    "backoff.baseMs": settings.backoff.baseMs,
    "backoff.maxMs": settings.backoff.maxMs,
    requestTimeoutMs: settings.requestTimeoutMs,
    pageSize: settings.pageSize,
  };
  for (const [key, value] of Object.entries(positive)) {
    if (!(value > 0 && Number.isFinite(value))) throw invalid(`${key} must be a positive number`);
  }
  if (!(settings.debounceMs >= 0)) throw invalid("debounceMs must not be negative");
  if (settings.backoff.maxMs < settings.backoff.baseMs) throw invalid("backoff.maxMs is less than backoff.baseMs");
  return settings;
}

/** Port names (IANA_SVC_NAME) always hold a letter, so all digits is a number. */
function portRef(port: string | number): PortRef | undefined {
  const number = typeof port === "number" ? port : /^\d+$/.test(port) ? Number(port) : undefined;
  if (number !== undefined) return Number.isInteger(number) && number >= 1 && number <= 65_535 ? { number } : undefined;
  return port === "" ? undefined : { name: port as string };
}

// ---------------------------------------------------------------------------------------------
// From API objects to endpoints (pure)

/** The fields read from an EndpointSlice; both client-node's list objects and raw watch JSON have them. */
interface SliceObject {
  readonly metadata?: { readonly name?: string };
  readonly ports?: readonly PortObject[] | null;
  readonly endpoints?:
    | readonly {
        readonly addresses?: readonly string[] | null;
        readonly conditions?: {
          readonly ready?: boolean | null;
          readonly serving?: boolean | null;
          readonly terminating?: boolean | null;
        } | null;
        readonly zone?: string | null;
        readonly hostname?: string | null;
        readonly targetRef?: { readonly name?: string } | null;
        readonly hints?: { readonly forZones?: readonly { readonly name: string }[] | null } | null;
      }[]
    | null;
}

interface LegacyAddress {
  readonly ip: string;
  readonly hostname?: string | null;
  readonly targetRef?: { readonly name?: string } | null;
}

interface EndpointsObject {
  readonly metadata?: { readonly name?: string };
  readonly subsets?:
    | readonly {
        readonly addresses?: readonly LegacyAddress[] | null;
        readonly notReadyAddresses?: readonly LegacyAddress[] | null;
        readonly ports?: readonly PortObject[] | null;
      }[]
    | null;
}

interface PortObject {
  readonly name?: string | null;
  readonly port?: number | null;
}

function portIn(ports: readonly PortObject[] | null | undefined, ref: PortRef): number | undefined {
  if ("number" in ref) return ref.number;
  return ports?.find((p) => p.name === ref.name)?.port ?? undefined;
}

function endpointsFromSlices(slices: Iterable<SliceObject>, ref: PortRef): DiscoveredEndpoint[] {
  const found: DiscoveredEndpoint[] = [];
  for (const slice of slices) {
    const port = portIn(slice.ports, ref);
    if (port === undefined) continue;
    for (const e of slice.endpoints ?? []) {
      // Consumers use the first address; the API allows no more today.
      const address = e.addresses?.[0];
      if (!address) continue;
      const ready = e.conditions?.ready ?? true;
      const forZones = e.hints?.forZones?.map((z) => z.name);
      const name = e.targetRef?.name ?? e.hostname ?? undefined;
      found.push({
        address,
        port,
        ready,
        serving: e.conditions?.serving ?? ready,
        terminating: e.conditions?.terminating ?? false,
        ...(e.zone ? { zone: e.zone } : {}),
        ...(name ? { name } : {}),
        ...(forZones?.length ? { forZones } : {}),
      });
    }
  }
  return canonical(found);
}

function endpointsFromLegacy(objects: Iterable<EndpointsObject>, ref: PortRef): DiscoveredEndpoint[] {
  const found: DiscoveredEndpoint[] = [];
  for (const object of objects) {
    for (const subset of object.subsets ?? []) {
      const port = portIn(subset.ports, ref);
      if (port === undefined) continue;
      // v1 Endpoints know ready and not ready, nothing of serving or terminating.
      for (const [addresses, ready] of [[subset.addresses, true], [subset.notReadyAddresses, false]] as const) {
        for (const a of addresses ?? []) {
          const name = a.targetRef?.name ?? a.hostname ?? undefined;
          found.push({ address: a.ip, port, ready, serving: ready, terminating: false, ...(name ? { name } : {}) });
        }
      }
    }
  }
  return canonical(found);
}

/**
 * One entry per address:port, sorted. An endpoint moving between slices can show in two for a
 * moment; the entry that can take the most traffic wins.
 */
function canonical(endpoints: readonly DiscoveredEndpoint[]): DiscoveredEndpoint[] {
  const rank = (e: DiscoveredEndpoint) => (e.ready && !e.terminating ? 2 : e.serving ? 1 : 0);
  const byKey = new Map<string, DiscoveredEndpoint>();
  for (const e of endpoints) {
    const key = endpointKey(e);
    const held = byKey.get(key);
    if (held === undefined || rank(e) > rank(held)) byKey.set(key, e);
  }
  return [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e);
}

// ---------------------------------------------------------------------------------------------
// The API, through client-node

interface ListPage {
  readonly items: readonly object[];
  readonly resourceVersion: string;
  readonly continueToken: string | undefined;
}

/** What one discovery needs of the API server, once client-node and the kubeconfig are loaded. */
interface Api {
  readonly watch: K8s.Watch;
  /** The collection path watches go to. */
  readonly path: string;
  readonly selector: Readonly<Record<string, string>>;
  listPage(continueToken: string | undefined, signal: AbortSignal): Promise<ListPage>;
  readNodeZone(name: string, signal: AbortSignal): Promise<string | undefined>;
  readonly toEndpoints: (objects: Iterable<object>, ref: PortRef) => DiscoveredEndpoint[];
  /** The namespace watched: the configured one, or the default found with the credentials. */
  readonly namespace: string;
}

function makeApi(k8s: typeof K8s, settings: Settings): Api {
  const { config, namespace } = loadKubeConfig(k8s, settings);
  const core = config.makeApiClient(k8s.CoreV1Api);
  const { service } = settings;
  const common = {
    namespace,
    watch: new k8s.Watch(config),
    async readNodeZone(name: string, signal: AbortSignal) {
      const node = await core.readNode({ name }, withSignal(k8s, signal));
      return node.metadata?.labels?.[zoneLabel];
    },
  };
  if (settings.api === "endpoints") {
    const fieldSelector = `metadata.name=${service}`;
    return {
      ...common,
      path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/endpoints`,
      selector: { fieldSelector },
      async listPage(continueToken, signal) {
        const list = await core.listNamespacedEndpoints(
          { namespace, fieldSelector, limit: settings.pageSize, _continue: continueToken },
          withSignal(k8s, signal),
        );
        return pageOf(list);
      },
      toEndpoints: (objects, ref) => endpointsFromLegacy(objects as Iterable<EndpointsObject>, ref),
    };
  }
  const discovery = config.makeApiClient(k8s.DiscoveryV1Api);
  const labelSelector = `kubernetes.io/service-name=${service}`;
  return {
    ...common,
    path: `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/endpointslices`,
    selector: { labelSelector },
    async listPage(continueToken, signal) {
      const list = await discovery.listNamespacedEndpointSlice(
        { namespace, labelSelector, limit: settings.pageSize, _continue: continueToken },
        withSignal(k8s, signal),
      );
      return pageOf(list);
    },
    toEndpoints: (objects, ref) => endpointsFromSlices(objects as Iterable<SliceObject>, ref),
  };
}

/**
 * In a cluster (service account mounted) first, then the `kubeconfig` option, then client-node's
 * defaults; with the namespace to watch.
 */
function loadKubeConfig(k8s: typeof K8s, settings: Settings): { config: K8s.KubeConfig; namespace: string } {
  const config = new k8s.KubeConfig();
  const inCluster =
    !!process.env.KUBERNETES_SERVICE_HOST &&
    !!process.env.KUBERNETES_SERVICE_PORT &&
    existsSync(`${settings.serviceAccountRoot}${serviceAccountTokenPath}`);
  try {
    if (inCluster) config.loadFromCluster(settings.serviceAccountRoot);
    else if (settings.kubeconfig !== undefined) config.loadFromFile(settings.kubeconfig);
    else config.loadFromDefault();
  } catch (e) {
    throw new Error(`cannot load the kubeconfig: ${messageOf(e)}`);
  }
  if (config.getCurrentCluster() === null) throw new Error("the kubeconfig names no current cluster");
  const namespace =
    settings.namespace ??
    (inCluster ? readTrimmed(`${settings.serviceAccountRoot}${serviceAccountNamespacePath}`) : undefined) ??
    config.getContextObject(config.getCurrentContext())?.namespace ??
    "default";
  return { config, namespace };
}

function readTrimmed(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

function pageOf(list: { metadata?: { resourceVersion?: string; _continue?: string }; items: readonly object[] }): ListPage {
  return {
    items: list.items,
    resourceVersion: list.metadata?.resourceVersion ?? "",
    continueToken: list.metadata?._continue || undefined,
  };
}

/** Request options that abort the request with `signal` (client-node's middleware is how a request gets one). */
function withSignal(k8s: typeof K8s, signal: AbortSignal): K8s.ConfigurationOptions {
  const middleware = {
    pre(context: K8s.RequestContext) {
      context.setSignal(signal);
      return new k8s.Observable(Promise.resolve(context));
    },
    post: (response: K8s.ResponseContext) => new k8s.Observable(Promise.resolve(response)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: "append" };
}

/** The HTTP status an error from client-node carries, if any. */
function statusOf(error: unknown): number | undefined {
  const e = error as { code?: unknown; statusCode?: unknown } | undefined;
  if (typeof e?.statusCode === "number") return e.statusCode;
  if (typeof e?.code === "number") return e.code;
  return undefined;
}

function messageOf(error: unknown): string {
  const status = statusOf(error);
  if (status !== undefined) {
    // ApiException's own message holds every header; the Status object's message is the point.
    let body = (error as { body?: unknown }).body;
    if (typeof body === "string") {
      try {
        body = JSON.parse(body);
      } catch {
        // Not a Status object: the text itself, if short, is the best there is.
      }
    }
    const detail =
      typeof body === "object" && body !== null
        ? (body as { message?: unknown }).message
        : typeof body === "string" && body.length <= 200
          ? body
          : undefined;
    return `HTTP ${status}: ${typeof detail === "string" && detail !== "" ? detail : (STATUS_CODES[status] ?? "error")}`;
  }
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
  }
  return String(error);
}

// ---------------------------------------------------------------------------------------------
// One started discovery

/**
 * - `connecting`: loading client-node and the kubeconfig, reading the node's zone;
 * - `listing`: a list in flight; `watching`: a watch open (or opening);
 * - `waiting`: a retry timer armed; `stopped`: aborted.
 */
type WatchState = "connecting" | "listing" | "watching" | "waiting" | "stopped";

class ServiceWatch {
  readonly #settings: Settings;
  readonly #events: DiscoveryEvents;
  readonly #learnZone: (zone: string) => void;
  #state: WatchState = "connecting";
  #api: Api | undefined;
  /** Objects by name, as last listed or watched. */
  #objects = new Map<string, object>();
  /** Where the watch resumes; "" means list first. */
  #resourceVersion = "";
  /** Whether the resourceVersion came from a list with no watch event since (a 410 then is not progress). */
  #fromList = false;
  #failures = 0;
  /** Bumped by every list or watch attempt, so callbacks of a superseded one are ignored. */
  #attempt = 0;
  #cancel: (() => void) | undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #stallTimer: ReturnType<typeof setTimeout> | undefined;
  #emitTimer: ReturnType<typeof setTimeout> | undefined;
  #lastRefreshAt = Number.NEGATIVE_INFINITY;
  /** The last emitted set, as a canonical string; undefined before the first. */
  #emitted: string | undefined;

  constructor(settings: Settings, events: DiscoveryEvents, learnZone: (zone: string) => void) {
    this.#settings = settings;
    this.#events = events;
    this.#learnZone = learnZone;
    void this.#connect();
  }

  /** Retries now, rather than after the backoff, if waiting to retry. */
  refresh(): void {
    if (this.#state !== "waiting" || this.#api === undefined) return;
    // A pool whose every call fails may ask often; the API server gets one extra try per base backoff.
    if (performance.now() - this.#lastRefreshAt < this.#settings.backoff.baseMs) return;
    this.#lastRefreshAt = performance.now();
    clearTimeout(this.#retryTimer);
    this.#next();
  }

  stop(): void {
    this.#state = "stopped";
    this.#attempt++;
    this.#cancel?.();
    this.#cancel = undefined;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#stallTimer);
    clearTimeout(this.#emitTimer);
  }

  async #connect(): Promise<void> {
    const attempt = ++this.#attempt;
    let k8s: typeof K8s;
    try {
      k8s = await import("@kubernetes/client-node");
    } catch (e) {
      if (attempt !== this.#attempt) return;
      // A runtime that cannot load it will not learn to.
      this.#report(`@kubernetes/client-node does not load (it needs Node >= 22.19): ${messageOf(e)}`, Code.FailedPrecondition);
      return this.stop();
    }
    if (attempt !== this.#attempt) return;
    let api: Api;
    try {
      api = makeApi(k8s, this.#settings);
    } catch (e) {
      // A kubeconfig or service account file may yet appear.
      this.#report(messageOf(e), Code.FailedPrecondition);
      return this.#retry(true, () => void this.#connect());
    }
    this.#api = api;
    const { zone, nodeName } = this.#settings;
    if (zone === undefined && nodeName !== undefined) {
      const signal = this.#requestSignal();
      try {
        const nodeZone = await api.readNodeZone(nodeName, signal);
        if (attempt !== this.#attempt) return;
        if (nodeZone) this.#learnZone(nodeZone);
      } catch (e) {
        if (attempt !== this.#attempt) return;
        // Zone preference is a refinement: go on without it.
        this.#report(`reading node ${nodeName} for its zone: ${messageOf(e)}`);
      }
    }
    this.#next();
  }

  #next(): void {
    if (this.#resourceVersion === "") void this.#list();
    else this.#watch();
  }

  async #list(): Promise<void> {
    const api = this.#api!;
    const attempt = ++this.#attempt;
    this.#state = "listing";
    const signal = this.#requestSignal();
    const objects = new Map<string, object>();
    let resourceVersion = "";
    try {
      let continueToken: string | undefined;
      // Pages of one snapshot; bounded, as a server could hand out continue tokens forever.
      for (let page = 0; page < 10_000; page++) {
        const result = await api.listPage(continueToken, signal);
        for (const item of result.items) objects.set(nameOf(item), item);
        resourceVersion ||= result.resourceVersion;
        continueToken = result.continueToken;
        if (continueToken === undefined) break;
      }
    } catch (e) {
      if (attempt !== this.#attempt) return;
      this.#cancel = undefined;
      this.#report(`list ${this.#settings.api}: ${messageOf(e)}`);
      return this.#retry(true);
    }
    if (attempt !== this.#attempt) return;
    this.#cancel = undefined;
    this.#objects = objects;
    this.#resourceVersion = resourceVersion;
    this.#fromList = true;
    this.#scheduleEmit();
    if (resourceVersion === "") {
      this.#report(`list ${this.#settings.api}: the answer has no resourceVersion to watch from`);
      return this.#retry(true);
    }
    this.#watch();
  }

  #watch(): void {
    const api = this.#api!;
    const attempt = ++this.#attempt;
    const settings = this.#settings;
    this.#state = "watching";
    const startedAt = performance.now();
    let expired = false;
    let streamError: string | undefined;
    let aborted = false;
    let controller: AbortController | undefined;
    this.#cancel = () => {
      aborted = true;
      controller?.abort();
    };
    this.#armStall(attempt);

    const onEvent = (type: string, object: { metadata?: { resourceVersion?: string }; code?: number; message?: string }) => {
      if (attempt !== this.#attempt) return;
      this.#stallTimer?.refresh();
      if (type === "ERROR") {
        if (object?.code === 410) expired = true;
        else streamError = `${object?.code ?? ""} ${object?.message ?? "error event"}`.trim();
        return;
      }
      const resourceVersion = object?.metadata?.resourceVersion;
      if (type === "ADDED" || type === "MODIFIED") this.#objects.set(nameOf(object), object);
      else if (type === "DELETED") this.#objects.delete(nameOf(object));
      else if (type !== "BOOKMARK") return;
      if (resourceVersion) this.#resourceVersion = resourceVersion;
      this.#fromList = false;
      this.#failures = 0;
      if (type !== "BOOKMARK") this.#scheduleEmit();
    };

    const onDone = (error: unknown) => {
      if (attempt !== this.#attempt) return;
      clearTimeout(this.#stallTimer);
      this.#cancel = undefined;
      const status = statusOf(error);
      if (expired || status === 410) {
        // The history moved past us: only a new list tells what changed.
        const progressed = !this.#fromList;
        this.#resourceVersion = "";
        return this.#retry(!progressed);
      }
      // client-node's own inactivity timeout is a TimeoutError: an ordinary end, like timeoutSeconds.
      const clean = (error === null || error === undefined || (error as Error).name === "TimeoutError") && streamError === undefined;
      if (!clean) this.#report(`watch ${settings.api}: ${streamError ?? messageOf(error)}`);
      // A watch that ends as soon as it starts is failing, however politely.
      const lived = performance.now() - startedAt >= settings.backoff.baseMs;
      this.#retry(!clean || !lived);
    };

    // Each watch asks for its own timeout in [T, 2T), so a fleet of gateways does not reconnect in step.
    const timeoutSeconds = Math.round(settings.watchTimeoutSeconds * (1 + Math.random()));
    api.watch
      .watch(
        api.path,
        { ...api.selector, resourceVersion: this.#resourceVersion, allowWatchBookmarks: true, timeoutSeconds },
        onEvent,
        onDone,
      )
      .then(
        (c) => {
          controller = c;
          if (aborted) c.abort();
        },
        // Raised before the request is made (e.g. the kubeconfig's credentials fail).
        (e: unknown) => onDone(e),
      );
  }

  #armStall(attempt: number): void {
    clearTimeout(this.#stallTimer);
    this.#stallTimer = setTimeout(() => {
      if (attempt !== this.#attempt) return;
      this.#report(`watch ${this.#settings.api}: nothing (no event, no bookmark) for ${this.#settings.stallTimeoutMs} ms; restarting it`);
      const cancel = this.#cancel;
      this.#cancel = undefined;
      // Superseded first, so the aborted watch's own end is ignored.
      this.#retry(true);
      cancel?.();
    }, this.#settings.stallTimeoutMs);
  }

  /** Arms the next attempt: at once after progress, after a jittered backoff after a failure. */
  #retry(failed: boolean, next = () => this.#next()): void {
    this.#attempt++;
    this.#state = "waiting";
    clearTimeout(this.#retryTimer);
    if (failed) this.#failures++;
    const { baseMs, maxMs } = this.#settings.backoff;
    const ceiling = this.#failures === 0 ? 0 : Math.min(maxMs, baseMs * 2 ** Math.min(this.#failures - 1, 30));
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this.#retryTimer = setTimeout(next, delay);
  }

  /** A signal for one request: aborted by its time limit or by stop(). */
  #requestSignal(): AbortSignal {
    const controller = new AbortController();
    this.#cancel = () => controller.abort();
    return AbortSignal.any([controller.signal, AbortSignal.timeout(this.#settings.requestTimeoutMs)]);
  }

  #scheduleEmit(): void {
    if (this.#emitTimer !== undefined) return;
    this.#emitTimer = setTimeout(() => {
      this.#emitTimer = undefined;
      this.#emit();
    }, this.#settings.debounceMs);
  }

  #emit(): void {
    if (this.#state === "stopped" || this.#api === undefined) return;
    const endpoints = this.#api.toEndpoints(this.#objects.values(), this.#settings.port);
    const canonical = JSON.stringify(endpoints);
    if (canonical === this.#emitted) return;
    this.#emitted = canonical;
    this.#events.onEndpoints(endpoints);
  }

  #report(message: string, code = Code.Unavailable): void {
    const namespace = this.#api?.namespace ?? this.#settings.namespace ?? "(namespace not known yet)";
    this.#events.onError?.(new ConnectError(`kubernetes discovery ${namespace}/${this.#settings.service}: ${message}`, code));
  }
}

function nameOf(object: unknown): string {
  return (object as { metadata?: { name?: string } })?.metadata?.name ?? "";
}
