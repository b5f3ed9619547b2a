/**
 * One upstream: its endpoints (from discovery), the policy that picks among them, and a
 * Connect `Transport` that the transcoder calls. Per call: pick an endpoint, call it through
 * its EndpointTransport, and if the request never reached the backend, try another endpoint
 * within the same deadline. Endpoints that leave the set (or terminate) drain: no new calls,
 * in-flight calls finish, then their sessions close.
 */
import {
  create,
  isMessage,
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import { endpointKey, type DiscoveredEndpoint } from "../discovery/types.ts";
import { createPolicy, decayedLatency, peakEwma, type BalancerName, type BalancerPolicy, type Endpoint, type PickContext } from "./balancer.ts";
import { EndpointTransport, isNeverSent, type CallObserver, type CallOutcome } from "./endpoint-transport.ts";
import { ReplayableInput } from "./replayable-input.ts";
import { EndpointSessions, type EndpointConnectivity, type SessionOptions, type SessionsSnapshot } from "./session.ts";

export interface UpstreamOptions {
  readonly name: string;
  readonly balancer: BalancerName;
  /** The call deadline; a caller's shorter timeout (Grpc-Timeout) wins. */
  readonly timeoutMs: number;
  /** Largest response message (default 4 MiB). */
  readonly maxMessageBytes?: number;
  /** Tries for a call that never reached a backend, the first included (default 3). */
  readonly maxAttempts?: number;
  /** Connect timeout and reconnect backoff (session.ts defaults). */
  readonly session?: Partial<SessionOptions>;
  /** For deterministic tests of the policies' random choices. */
  readonly random?: () => number;
  // Next issue (balancing): warm, idleTimeoutMs, keepalive, retry, outlier, health.
}

/** Why an endpoint takes no new calls, or "eligible". */
export type Membership = "eligible" | "standby" | "draining";

export interface EndpointSnapshot {
  readonly key: string;
  readonly name?: string;
  readonly zone?: string;
  /** eligible: in the set and ready; standby: in the set, not ready; draining: leaving. */
  readonly membership: Membership;
  readonly healthy: boolean;
  readonly inFlight: number;
  readonly calls: number;
  /** Calls that ended with a non-OK status other than Canceled. */
  readonly errors: number;
  /** Of those, calls that never reached the backend (retried elsewhere when possible). */
  readonly neverSent: number;
  readonly latencyMs: number;
  readonly lastError?: string;
  readonly connectivity: EndpointConnectivity;
  readonly connectFailures: number;
  /** Why the last connection attempt or connection failed. */
  readonly connectError?: string;
  readonly sessions: SessionsSnapshot["sessions"];
}

export interface UpstreamSnapshot {
  readonly name: string;
  readonly balancer: BalancerName;
  readonly timeoutMs: number;
  readonly hasEndpoints: boolean;
  readonly endpoints: readonly EndpointSnapshot[];
}

const noExclusions: PickContext = {};

export class UpstreamPool implements Transport {
  readonly name: string;
  readonly #options: UpstreamOptions;
  readonly #maxAttempts: number;
  readonly #policy: BalancerPolicy<PoolEndpoint>;
  /** Endpoints in the current set, by key. */
  readonly #members = new Map<string, PoolEndpoint>();
  /** Endpoints that left the set (or terminate) and still have sessions open. */
  readonly #draining = new Set<PoolEndpoint>();
  #hasEndpoints = false;
  #closed = false;

  constructor(options: UpstreamOptions) {
    this.name = options.name;
    this.#options = options;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 3);
    this.#policy = createPolicy<PoolEndpoint>(options.balancer, options.random);
  }

  /** A first endpoint set has arrived (readiness), even if it was empty. */
  get hasEndpoints(): boolean {
    return this.#hasEndpoints;
  }

  /**
   * Replaces the endpoint set. Ready, not terminating endpoints take calls; when none is
   * ready, serving ones do (EndpointSlice semantics). Terminating or removed endpoints drain.
   */
  update(endpoints: readonly DiscoveredEndpoint[]): void {
    if (this.#closed) return;
    this.#hasEndpoints = true;
    const seen = new Set<string>();
    const present: PoolEndpoint[] = [];
    for (const discovered of endpoints) {
      const key = endpointKey(discovered);
      if (seen.has(key)) continue;
      seen.add(key);
      if (discovered.terminating) {
        const leaving = this.#members.get(key);
        if (leaving !== undefined) this.#drain(leaving);
        continue;
      }
      let endpoint = this.#members.get(key);
      if (endpoint === undefined) {
        endpoint = new PoolEndpoint(key, discovered, this.#options);
        this.#members.set(key, endpoint);
      }
      endpoint.discovered = discovered;
      present.push(endpoint);
    }
    for (const [key, endpoint] of this.#members) {
      if (!seen.has(key)) this.#drain(endpoint);
    }
    const anyReady = present.some((e) => e.discovered.ready);
    const eligible: PoolEndpoint[] = [];
    for (const endpoint of present) {
      const takesCalls = anyReady ? endpoint.discovered.ready : endpoint.discovered.serving;
      endpoint.membership = takesCalls ? "eligible" : "standby";
      if (takesCalls) eligible.push(endpoint);
    }
    this.#policy.update(eligible);
  }

  snapshot(): UpstreamSnapshot {
    return {
      name: this.name,
      balancer: this.#options.balancer,
      timeoutMs: this.#options.timeoutMs,
      hasEndpoints: this.#hasEndpoints,
      endpoints: [...this.#members.values(), ...this.#draining].map((e) => e.snapshot()),
    };
  }

  /** No new calls from now on; graceful lets in-flight calls finish before sessions close. */
  async close(graceful: boolean): Promise<void> {
    this.#closed = true;
    this.#policy.update([]);
    const all = [...this.#members.values(), ...this.#draining];
    this.#members.clear();
    await Promise.all(all.map((e) => e.sessions.close(graceful)));
    this.#draining.clear();
  }

  async unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    input: MessageInitShape<I>,
    contextValues?: ContextValues,
  ): Promise<UnaryResponse<I, O>> {
    const deadline = performance.now() + this.#timeout(timeoutMs);
    const message: MessageShape<I> = isMessage(input, method.input) ? input : create(method.input, input);
    let tried: Set<Endpoint> | undefined;
    for (let attempt = 1; ; attempt++) {
      const endpoint = this.#pick(tried);
      try {
        return await endpoint.transport.unary(method, signal, remaining(deadline), header, message, contextValues);
      } catch (e) {
        if (!this.#retryable(e, attempt, deadline, signal)) throw e;
        (tried ??= new Set()).add(endpoint);
      }
    }
  }

  async stream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodStreaming<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    input: AsyncIterable<MessageInitShape<I>>,
    contextValues?: ContextValues,
  ): Promise<StreamResponse<I, O>> {
    const deadline = performance.now() + this.#timeout(timeoutMs);
    const replay = new ReplayableInput(input);
    let tried: Set<Endpoint> | undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        const endpoint = this.#pick(tried);
        const reader = replay.reader();
        try {
          const response = await endpoint.transport.stream(method, signal, remaining(deadline), header, reader, contextValues);
          replay.commit(reader);
          return response;
        } catch (e) {
          if (!replay.replayable || !this.#retryable(e, attempt, deadline, signal)) throw e;
          (tried ??= new Set()).add(endpoint);
        }
      }
    } catch (e) {
      replay.close();
      throw e;
    }
  }

  /** The upstream's timeout, lowered by the caller's (Connect: undefined or ≤ 0 is none). */
  #timeout(timeoutMs: number | undefined): number {
    const upstream = this.#options.timeoutMs;
    return timeoutMs === undefined || timeoutMs <= 0 ? upstream : Math.min(timeoutMs, upstream);
  }

  /**
   * An endpoint for the next attempt: one not tried yet if possible, else any healthy one
   * (a never-sent call may safely go to the same endpoint again, e.g. on a fresh session
   * after GOAWAY). Throws Unavailable at once when there is none.
   */
  #pick(tried: Set<Endpoint> | undefined): PoolEndpoint {
    const policy = this.#policy;
    const endpoint =
      tried === undefined
        ? policy.pick(noExclusions)
        : (policy.pick({ exclude: tried }) ?? policy.pick(noExclusions));
    if (endpoint !== undefined) return endpoint;
    if (this.#closed) throw new ConnectError(`upstream ${this.name} is closed`, Code.Unavailable);
    throw new ConnectError(`no healthy endpoints for upstream ${this.name}`, Code.Unavailable);
  }

  #retryable(error: unknown, attempt: number, deadline: number, signal: AbortSignal | undefined): boolean {
    return (
      isNeverSent(error) &&
      attempt < this.#maxAttempts &&
      !this.#closed &&
      signal?.aborted !== true &&
      performance.now() < deadline
    );
  }

  #drain(endpoint: PoolEndpoint): void {
    this.#members.delete(endpoint.key);
    endpoint.membership = "draining";
    this.#draining.add(endpoint);
    void endpoint.sessions.close(true).then(() => this.#draining.delete(endpoint));
  }
}

function remaining(deadline: number): number {
  return Math.max(1, Math.ceil(deadline - performance.now()));
}

/** One endpoint as the pool and its policy see it; fed by its transport's call outcomes. */
class PoolEndpoint implements Endpoint, CallObserver {
  readonly key: string;
  discovered: DiscoveredEndpoint;
  membership: Membership = "eligible";
  readonly sessions: EndpointSessions;
  readonly transport: EndpointTransport;
  inFlight = 0;
  calls = 0;
  errors = 0;
  neverSent = 0;
  /** Peak-EWMA estimate as of its last sample, at `#latencyAt`. */
  #latency = 0;
  #latencyAt = 0;
  #lastError: string | undefined;

  constructor(key: string, discovered: DiscoveredEndpoint, options: UpstreamOptions) {
    this.key = key;
    this.discovered = discovered;
    this.sessions = new EndpointSessions(discovered, options.session);
    this.transport = new EndpointTransport({
      sessions: this.sessions,
      maxMessageBytes: options.maxMessageBytes,
      observer: this,
    });
  }

  get latencyMs(): number {
    return this.#latency === 0 ? 0 : decayedLatency(this.#latency, performance.now() - this.#latencyAt);
  }

  get healthy(): boolean {
    const state = this.sessions.state;
    return state !== "backoff" && state !== "draining" && state !== "closed";
  }

  callStarted(): void {
    this.inFlight++;
    this.calls++;
  }

  callEnded(outcome: CallOutcome): void {
    this.inFlight--;
    if (outcome.code !== 0 && outcome.code !== Code.Canceled) {
      this.errors++;
      if (outcome.neverSent) this.neverSent++;
      this.#lastError = Code[outcome.code];
    }
    if (!outcome.neverSent && outcome.code !== Code.Canceled) {
      const now = performance.now();
      this.#latency = peakEwma(this.#latency, outcome.latencyMs, now - this.#latencyAt);
      this.#latencyAt = now;
    }
  }

  snapshot(): EndpointSnapshot {
    const sessions = this.sessions.snapshot();
    const d = this.discovered;
    return {
      key: this.key,
      ...(d.name === undefined ? {} : { name: d.name }),
      ...(d.zone === undefined ? {} : { zone: d.zone }),
      membership: this.membership,
      healthy: this.healthy,
      inFlight: this.inFlight,
      calls: this.calls,
      errors: this.errors,
      neverSent: this.neverSent,
      latencyMs: Math.round(this.latencyMs * 1000) / 1000,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
      connectivity: sessions.state,
      connectFailures: sessions.connectFailures,
      ...(sessions.lastError === undefined ? {} : { connectError: sessions.lastError }),
      sessions: sessions.sessions,
    };
  }
}
