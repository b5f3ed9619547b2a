/**
 * DNS discovery: a headless Service's A/AAAA records (or an SRV name's records and their
 * targets' addresses) looked up every `refreshMs`, and at once when the pool asks.
 *
 * What an answer means:
 * - Addresses: the new set (emitted only if it differs from the last one).
 * - NXDOMAIN or NODATA on every family: an empty set. A headless Service with no ready pod
 *   answers exactly so; keeping the old addresses would route to pods that are gone.
 * - Anything else (SERVFAIL, REFUSED, timeout, no server reachable): not an answer. The last
 *   good set stays in force, `onError` reports it, and the lookup is retried sooner.
 * - Any family or SRV target failing fails the whole lookup: a half answer could drop good
 *   endpoints as surely as an empty one.
 */
import { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { endpointKey, type DiscoveredEndpoint, type Discovery, type DiscoveryEvents } from "./types.ts";

export interface DnsDiscoveryOptions {
  /** A name with A/AAAA records, or an IP literal (then that one endpoint, never looked up). */
  readonly host: string;
  readonly port: number;
  /** Time between lookups. */
  readonly refreshMs: number;
  /** An SRV name (`_grpc._tcp.name`): when set, its records give targets and ports; `host` and `port` are unused. */
  readonly srv?: string;
  /** DNS servers to ask ("127.0.0.1:5353"); default: the system's. For tests and for clusters whose resolver differs. */
  readonly servers?: readonly string[];
  /** How long one server has to answer one query. */
  readonly lookupTimeoutMs?: number;
  /** The least time between two lookups that `refresh()` brings forward, so a failing fleet cannot make a DNS storm. */
  readonly minRefreshIntervalMs?: number;
}

const defaults = {
  lookupTimeoutMs: 2_000,
  minRefreshIntervalMs: 1_000,
};

/**
 * Deno's `node:dns` (hickory underneath) reports SERVFAIL and REFUSED as ENOTFOUND, the same
 * as NXDOMAIN. There an answer without addresses may be a failure, so it does not replace a
 * set that has endpoints (it still gives the first, empty, set).
 */
const negativeAnswersAreReliable = !("Deno" in globalThis);

export function dnsDiscovery(options: DnsDiscoveryOptions): Discovery {
  const settings = settle(options);
  if (settings.srv === undefined && isIP(settings.host) !== 0) {
    const literal = [endpoint(settings.host, settings.port, settings.host)];
    return {
      start(events, signal) {
        if (!signal.aborted) events.onEndpoints(literal);
      },
    };
  }
  const watches = new Set<DnsWatch>();
  return {
    start(events, signal) {
      if (signal.aborted) return;
      const watch = new DnsWatch(settings, events);
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

type Settings = Required<Omit<DnsDiscoveryOptions, "srv" | "servers">> &
  Pick<DnsDiscoveryOptions, "srv" | "servers">;

function settle(options: DnsDiscoveryOptions): Settings {
  const settings: Settings = {
    ...options,
    lookupTimeoutMs: options.lookupTimeoutMs ?? defaults.lookupTimeoutMs,
    minRefreshIntervalMs: options.minRefreshIntervalMs ?? defaults.minRefreshIntervalMs,
  };
  const invalid = (why: string) => new ConnectError(`dns discovery: ${why}`, Code.InvalidArgument);
  if (settings.srv === undefined) {
    if (settings.host === "") throw invalid("host is empty");
    if (!Number.isInteger(settings.port) || settings.port < 1 || settings.port > 65_535) {
      throw invalid(`port ${settings.port} is not in 1-65535`);
    }
  } else if (settings.srv === "") {
    throw invalid("srv is empty");
  }
  for (const key of ["refreshMs", "lookupTimeoutMs", "minRefreshIntervalMs"] as const) {
    if (!(settings[key] > 0 && Number.isFinite(settings[key]))) throw invalid(`${key} must be a positive number`);
  }
  // Fails here, once, on a malformed server address rather than at every lookup.
  newResolver(settings);
  return settings;
}

function newResolver(settings: Settings): Resolver {
  // One try: a lost answer fails this lookup, and the watch's retry (sooner than a refresh) asks again.
  const resolver = new Resolver({ timeout: settings.lookupTimeoutMs, tries: 1 });
  if (settings.servers) resolver.setServers(settings.servers);
  return resolver;
}

function endpoint(address: string, port: number, name: string): DiscoveredEndpoint {
  return { address, port, ready: true, serving: true, terminating: false, name };
}

/** What one lookup found out. */
type Lookup =
  | { readonly kind: "addresses"; readonly endpoints: readonly DiscoveredEndpoint[] }
  /** The name exists with no addresses, or does not exist. */
  | { readonly kind: "none" }
  | { readonly kind: "failed"; readonly error: ConnectError };

type WatchState = "waiting" | "resolving" | "stopped";

/**
 * One started discovery: a timer, at most one lookup in flight, the last emitted set.
 * `waiting`: the timer is armed; `resolving`: a lookup is in flight; `stopped`: aborted.
 */
class DnsWatch {
  readonly #settings: Settings;
  readonly #events: DiscoveryEvents;
  readonly #resolver: Resolver;
  #state: WatchState = "waiting";
  #timer: ReturnType<typeof setTimeout> | undefined;
  #dueAt = 0;
  #lastLookupAt = Number.NEGATIVE_INFINITY;
  #consecutiveFailures = 0;
  /** The last emitted set, as a canonical string; undefined before the first. */
  #emitted: string | undefined;
  #emittedCount = 0;

  constructor(settings: Settings, events: DiscoveryEvents) {
    this.#settings = settings;
    this.#events = events;
    this.#resolver = newResolver(settings);
    this.#arm(0);
  }

  /** Looks up at once, or as soon as the rate limit allows; a lookup in flight already answers. */
  refresh(): void {
    if (this.#state !== "waiting") return;
    const allowedAt = this.#lastLookupAt + this.#settings.minRefreshIntervalMs;
    const at = Math.max(performance.now(), allowedAt);
    if (at < this.#dueAt) this.#arm(at - performance.now());
  }

  stop(): void {
    this.#state = "stopped";
    clearTimeout(this.#timer);
    this.#timer = undefined;
    // Ends a lookup in flight now instead of after its timeout.
    this.#resolver.cancel();
  }

  #arm(delayMs: number): void {
    clearTimeout(this.#timer);
    this.#dueAt = performance.now() + delayMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#lookUp();
    }, Math.max(0, delayMs));
  }

  async #lookUp(): Promise<void> {
    this.#state = "resolving";
    this.#lastLookupAt = performance.now();
    const lookup = await lookUp(this.#resolver, this.#settings);
    // stop() may have run while the lookup was in flight.
    if ((this.#state as WatchState) === "stopped") return;
    this.#state = "waiting";
    const failure = this.#failureIn(lookup);
    // Armed before the events run, so a throwing handler cannot stop the refreshes.
    if (failure === undefined) {
      this.#consecutiveFailures = 0;
      this.#arm(this.#settings.refreshMs);
      this.#emit(lookup.kind === "addresses" ? lookup.endpoints : []);
    } else {
      this.#consecutiveFailures++;
      // Sooner than a refresh, backing off, so one lost packet does not cost a whole period.
      const backoff = this.#settings.minRefreshIntervalMs * 2 ** Math.min(this.#consecutiveFailures - 1, 16);
      this.#arm(Math.min(this.#settings.refreshMs, backoff));
      this.#events.onError?.(failure);
    }
  }

  /** Why this lookup must not replace the set, if it must not. */
  #failureIn(lookup: Lookup): ConnectError | undefined {
    if (lookup.kind === "failed") return lookup.error;
    if (lookup.kind === "none" && !negativeAnswersAreReliable && this.#emittedCount > 0) {
      return new ConnectError(
        `dns discovery: no addresses for ${this.#settings.srv ?? this.#settings.host}, which this runtime cannot tell from a failed lookup; keeping ${this.#emittedCount} endpoints`,
        Code.Unavailable,
      );
    }
    return undefined;
  }

  #emit(endpoints: readonly DiscoveredEndpoint[]): void {
    // The order is canonical (see lookUp), so comparing sequences compares sets.
    const canonical = endpoints.map((e) => `${endpointKey(e)} ${e.name ?? ""}`).join("\n");
    if (canonical === this.#emitted) return;
    this.#emitted = canonical;
    this.#emittedCount = endpoints.length;
    this.#events.onEndpoints(endpoints);
  }
}

/**
 * The endpoints behind `host`, or behind each target of `srv` in SRV preference order
 * (priority ascending, then weight descending); addresses sorted within a name, duplicates
 * dropped.
 */
async function lookUp(resolver: Resolver, settings: Settings): Promise<Lookup> {
  try {
    const endpoints = settings.srv === undefined
      ? await addressEndpoints(resolver, settings.host, settings.port)
      : await srvEndpoints(resolver, settings.srv);
    if (endpoints === undefined) return { kind: "none" };
    const seen = new Set<string>();
    const unique = endpoints.filter((e) => {
      const key = endpointKey(e);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    return unique.length === 0 ? { kind: "none" } : { kind: "addresses", endpoints: unique };
  } catch (reason) {
    const code = (reason as { code?: unknown }).code;
    return {
      kind: "failed",
      error: new ConnectError(
        `dns discovery: looking up ${settings.srv ?? settings.host} failed${typeof code === "string" ? ` (${code})` : ""}`,
        Code.Unavailable,
        undefined,
        undefined,
        reason,
      ),
    };
  }
}

/** Undefined when the SRV name has no records; throws when a lookup fails. */
async function srvEndpoints(resolver: Resolver, srv: string): Promise<DiscoveredEndpoint[] | undefined> {
  const records = await absentAsUndefined(resolver.resolveSrv(srv));
  if (records === undefined) return undefined;
  const ordered = records
    // "." says the service is decidedly not available there (RFC 2782).
    .filter((r) => r.name !== "" && r.name !== ".")
    .sort((a, b) => a.priority - b.priority || b.weight - a.weight || compare(a.name, b.name) || a.port - b.port);
  const targets = [...new Set(ordered.map((r) => r.name))];
  const addresses = new Map(
    await Promise.all(targets.map(async (target) => [target, await addressesOf(resolver, target)] as const)),
  );
  return ordered.flatMap((r) => (addresses.get(r.name) ?? []).map((address) => endpoint(address, r.port, r.name)));
}

/** Undefined when `host` has no addresses; throws when a lookup fails. */
async function addressEndpoints(
  resolver: Resolver,
  host: string,
  port: number,
): Promise<DiscoveredEndpoint[] | undefined> {
  const addresses = await addressesOf(resolver, host);
  return addresses.length === 0 ? undefined : addresses.map((address) => endpoint(address, port, host));
}

/** A and AAAA asked together; IPv4 first, each family sorted. */
async function addressesOf(resolver: Resolver, name: string): Promise<string[]> {
  if (isIP(name) !== 0) return [name];
  const [v4, v6] = await Promise.all([
    absentAsUndefined(resolver.resolve4(name)),
    absentAsUndefined(resolver.resolve6(name)),
  ]);
  return [...(v4 ?? []).sort(compare), ...(v6 ?? []).sort(compare)];
}

/** NXDOMAIN (ENOTFOUND) and NODATA (ENODATA) are answers: nothing there. */
async function absentAsUndefined<T>(query: Promise<T[]>): Promise<T[] | undefined> {
  try {
    return await query;
  } catch (reason) {
    const code = (reason as { code?: unknown }).code;
    if (code === "ENOTFOUND" || code === "ENODATA") return undefined;
    throw reason;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
