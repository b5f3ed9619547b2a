/**
 * One upstream: its endpoints (from discovery), the policy that picks among them, and a
 * Connect `Transport` that the transcoder calls. Per call: pick an endpoint, call it through
 * its EndpointTransport, and retry elsewhere when that is safe:
 * - a call that never reached a backend (connect refused, REFUSED_STREAM, GOAWAY before it
 *   was processed) is retried at once on another endpoint, always (up to `maxAttempts` tries
 *   and the deadline): no backend has seen it;
 * - an answer the retry policy names (`retry.on`) is retried after a jittered backoff, for
 *   idempotent routes (or all, by policy), within the retry budget and the deadline.
 * Streaming calls are retried only while their response has not started.
 * Endpoints that leave the set (or terminate) drain: no new calls, in-flight calls finish,
 * then their sessions close. Passive health (outlier.ts) and optional active health
 * (health.ts) take endpoints out of the policy's choices and bring them back.
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
import { createPolicy, decayedLatency, peakEwma, type BalancerName, type BalancerPolicy, type Endpoint } from "./balancer.ts";
import { callInfoKey, WireMessage } from "./call-info.ts";
import { EndpointTransport, isNeverSent, type CallObserver, type CallOutcome } from "./endpoint-transport.ts";
import { HealthProbe, type HealthCheckOptions, type HealthStatus } from "./health.ts";
import { OutlierDetector, type OutlierOptions, type OutlierRecord } from "./outlier.ts";
import { ReplayableInput } from "./replayable-input.ts";
import { RetryBudget, type RetryBudgetOptions } from "./retry-budget.ts";
import { defaultRetryPolicy, responseRetryable, retryBackoffMs, sleep, type RetryPolicy } from "./retry.ts";
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
  /** Connect timeout, reconnect backoff, keepalive, idle close (session.ts defaults). */
  readonly session?: Partial<SessionOptions>;
  /** Connect to every endpoint as soon as it is known, and keep a session open to it. */
  readonly warm?: boolean;
  /** Retries of answers (retry.ts defaults: 2 tries on Unavailable, idempotent routes only). */
  readonly retry?: Partial<RetryPolicy>;
  /** Share of requests retries may add (retry-budget.ts defaults: 20% + 10 per 10 s). */
  readonly retryBudget?: Partial<RetryBudgetOptions>;
  /** Passive health (outlier.ts defaults). */
  readonly outlier?: Partial<OutlierOptions>;
  /** Active health: grpc.health.v1 Check per endpoint; none when undefined. */
  readonly health?: HealthCheckOptions;
  /**
   * Called when a call finds no endpoint to use, or its last try could not reach a backend:
   * the gateway asks discovery for a fresh look (DNS re-resolves at once, rate-limited there).
   */
  readonly onStarved?: () => void;
  /** For deterministic tests of the policies' random choices and the retry jitter. */
  readonly random?: () => number;
  /** Monotonic clock in ms for ejections and the retry budget (tests inject one). */
  readonly now?: () => number;
}

/** Why an endpoint takes no new calls, or "eligible". */
export type Membership = "eligible" | "standby" | "draining";

/**
 * One word for the endpoint view: ready (takes calls), ejected (passive health), unhealthy
 * (active health), backoff (connects failing), standby (not ready in discovery), draining.
 */
export type EndpointState = "ready" | "ejected" | "unhealthy" | "backoff" | "standby" | "draining";

export interface EndpointSnapshot {
  readonly key: string;
  readonly name?: string;
  readonly zone?: string;
  readonly state: EndpointState;
  /** eligible: in the set and ready; standby: in the set, not ready; draining: leaving. */
  readonly membership: Membership;
  readonly healthy: boolean;
  /** While ejected: when it comes back (ISO time). */
  readonly ejectedUntil?: string;
  /** Times it has been ejected. */
  readonly ejections: number;
  /** Active health status, when checks are configured. */
  readonly health?: HealthStatus;
  readonly healthError?: string;
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

export interface RetryStats {
  /** Retries of calls that never reached a backend. */
  readonly transparent: number;
  /** Retries of answers, by policy. */
  readonly policy: number;
  /** Answers the policy would have retried, but the budget had no room. */
  readonly budgetExhausted: number;
}

export interface UpstreamSnapshot {
  readonly name: string;
  readonly balancer: BalancerName;
  readonly timeoutMs: number;
  readonly hasEndpoints: boolean;
  readonly requests: number;
  readonly retries: RetryStats;
  readonly endpoints: readonly EndpointSnapshot[];
}

/** What every endpoint of one pool shares. */
interface PoolContext {
  readonly options: UpstreamOptions;
  readonly detector: OutlierDetector;
  readonly now: () => number;
}

export class UpstreamPool implements Transport {
  readonly name: string;
  readonly #options: UpstreamOptions;
  readonly #maxAttempts: number;
  readonly #retry: RetryPolicy;
  readonly #budget: RetryBudget;
  readonly #random: () => number;
  readonly #context: PoolContext;
  readonly #policy: BalancerPolicy<PoolEndpoint>;
  /** Endpoints in the current set, by key. */
  readonly #members = new Map<string, PoolEndpoint>();
  /** Endpoints that left the set (or terminate) and still have sessions open. */
  readonly #draining = new Set<PoolEndpoint>();
  #hasEndpoints = false;
  #closed = false;
  #requests = 0;
  #retries = { transparent: 0, policy: 0, budgetExhausted: 0 };

  constructor(options: UpstreamOptions) {
    this.name = options.name;
    this.#options = options;
    this.#maxAttempts = Math.max(1, options.maxAttempts ?? 3);
    this.#retry = { ...defaultRetryPolicy, ...options.retry };
    this.#random = options.random ?? Math.random;
    const now = options.now ?? (() => performance.now());
    this.#budget = new RetryBudget(options.retryBudget, now);
    this.#context = { options, detector: new OutlierDetector(options.outlier, now), now };
    this.#policy = createPolicy<PoolEndpoint>(options.balancer, options.random);
  }

  /** A first endpoint set has arrived (readiness), even if it was empty. */
  get hasEndpoints(): boolean {
    return this.#hasEndpoints;
  }

  /**
   * Replaces the endpoint set. Ready, not terminating endpoints take calls; when none is
   * ready, serving ones do (EndpointSlice semantics). Terminating or removed endpoints drain.
   * An endpoint that comes back after leaving starts afresh (new sessions, clean history).
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
        endpoint = new PoolEndpoint(key, discovered, this.#context);
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
      requests: this.#requests,
      retries: { ...this.#retries },
      endpoints: [...this.#members.values(), ...this.#draining].map((e) => e.snapshot()),
    };
  }

  /** No new calls from now on; graceful lets in-flight calls finish before sessions close. */
  async close(graceful: boolean): Promise<void> {
    this.#closed = true;
    this.#policy.update([]);
    // Members join the draining set, so a forced close after a graceful one still finds them.
    for (const e of this.#members.values()) {
      e.retire();
      this.#draining.add(e);
    }
    this.#members.clear();
    await Promise.all([...this.#draining].map((e) => e.sessions.close(graceful)));
    this.#draining.clear();
  }

  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    input: MessageInitShape<I>,
    contextValues?: ContextValues,
  ): Promise<UnaryResponse<I, O>> {
    // Built once for every attempt; a WireMessage (already encoded by the caller) stays as it is.
    const message: MessageShape<I> =
      input instanceof WireMessage || isMessage(input, method.input) ? (input as MessageShape<I>) : create(method.input, input);
    return this.#call(signal, timeoutMs, contextValues, () => true, (endpoint, remainingMs) =>
      endpoint.transport.unary(method, signal, remainingMs, header, message, contextValues),
    );
  }

  async stream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodStreaming<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    input: AsyncIterable<MessageInitShape<I>>,
    contextValues?: ContextValues,
  ): Promise<StreamResponse<I, O>> {
    const replay = new ReplayableInput(input);
    try {
      return await this.#call(
        signal,
        timeoutMs,
        contextValues,
        () => replay.replayable,
        async (endpoint, remainingMs) => {
          const reader = replay.reader();
          const response = await endpoint.transport.stream(method, signal, remainingMs, header, reader, contextValues);
          replay.commit(reader);
          return response;
        },
      );
    } catch (e) {
      replay.close();
      throw e;
    }
  }

  /**
   * Runs attempts until one answers or no retry is allowed. `attempt` resolves once the
   * response has started, so a rejection is always before any response reached the caller.
   */
  async #call<T>(
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    contextValues: ContextValues | undefined,
    replayable: () => boolean,
    attempt: (endpoint: PoolEndpoint, remainingMs: number) => Promise<T>,
  ): Promise<T> {
    const deadline = performance.now() + this.#timeout(timeoutMs);
    const idempotent = contextValues?.get(callInfoKey).idempotent ?? false;
    this.#requests++;
    this.#budget.recordRequest();
    let tried: Set<Endpoint> | undefined;
    let lastError: unknown;
    let notSent = 0;
    let retries = 0;
    for (;;) {
      const endpoint = this.#pick(tried, lastError);
      try {
        return await attempt(endpoint, remaining(deadline));
      } catch (e) {
        lastError = e;
        if (this.#closed || signal?.aborted === true || !replayable()) throw e;
        (tried ??= new Set()).add(endpoint);
        if (isNeverSent(e)) {
          if (++notSent >= this.#maxAttempts || performance.now() >= deadline) {
            this.#options.onStarved?.();
            throw e;
          }
          this.#retries.transparent++;
          continue;
        }
        if (!responseRetryable(this.#retry, e, retries, idempotent)) throw e;
        const wait = retryBackoffMs(this.#retry, retries + 1, this.#random());
        if (performance.now() + wait >= deadline) throw e;
        if (!this.#budget.tryRetry()) {
          this.#retries.budgetExhausted++;
          throw e;
        }
        retries++;
        this.#retries.policy++;
        await sleep(wait, signal).catch(() => {
          throw new ConnectError("the call was canceled", Code.Canceled, undefined, undefined, signal?.reason);
        });
      }
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
   * after GOAWAY). Throws at once when there is none: the last attempt's error if any.
   */
  #pick(tried: Set<Endpoint> | undefined, lastError: unknown): PoolEndpoint {
    const policy = this.#policy;
    const endpoint =
      tried === undefined ? policy.pick(noExclusions) : (policy.pick({ exclude: tried }) ?? policy.pick(noExclusions));
    if (endpoint !== undefined) return endpoint;
    this.#options.onStarved?.();
    if (lastError !== undefined) throw lastError;
    if (this.#closed) throw new ConnectError(`upstream ${this.name} is closed`, Code.Unavailable);
    throw new ConnectError(`no healthy endpoints for upstream ${this.name}`, Code.Unavailable);
  }

  #drain(endpoint: PoolEndpoint): void {
    this.#members.delete(endpoint.key);
    endpoint.membership = "draining";
    endpoint.retire();
    this.#draining.add(endpoint);
    void endpoint.sessions.close(true).then(() => this.#draining.delete(endpoint));
  }
}

const noExclusions = {};

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
  readonly outlier: OutlierRecord;
  inFlight = 0;
  calls = 0;
  errors = 0;
  neverSent = 0;
  readonly #context: PoolContext;
  readonly #probe: HealthProbe | undefined;
  /** Peak-EWMA estimate as of its last sample, at `#latencyAt`. */
  #latency = 0;
  #latencyAt = 0;
  #lastError: string | undefined;

  constructor(key: string, discovered: DiscoveredEndpoint, context: PoolContext) {
    const { options, detector } = context;
    this.key = key;
    this.discovered = discovered;
    this.#context = context;
    this.outlier = detector.add();
    const warm = options.warm === true;
    // A warm endpoint keeps a session: no idle close, and it reconnects whenever it goes idle.
    const sessionOptions = warm ? { ...options.session, idleTimeoutMs: 0 } : options.session;
    this.sessions = new EndpointSessions(discovered, sessionOptions, (state) => {
      if (state === "backoff") detector.connectFailure(this.outlier);
      else if (state === "idle" && warm && this.membership !== "draining") queueMicrotask(() => this.sessions.warm());
    });
    this.transport = new EndpointTransport({
      sessions: this.sessions,
      maxMessageBytes: options.maxMessageBytes,
      observer: this,
    });
    if (options.health !== undefined) {
      // Checks do not count as calls: a transport without observer on the same sessions.
      const checks = new EndpointTransport({ sessions: this.sessions, maxMessageBytes: options.maxMessageBytes });
      this.#probe = new HealthProbe(checks, options.health);
      this.#probe.start();
    }
    if (warm) this.sessions.warm();
  }

  get latencyMs(): number {
    return this.#latency === 0 ? 0 : decayedLatency(this.#latency, performance.now() - this.#latencyAt);
  }

  get healthy(): boolean {
    const state = this.sessions.state;
    return (
      state !== "backoff" &&
      state !== "draining" &&
      state !== "closed" &&
      !this.#context.detector.isEjected(this.outlier) &&
      (this.#probe === undefined || this.#probe.verdict.healthy)
    );
  }

  /** Leaves the pool: no more checks, not counted for the ejection cap. */
  retire(): void {
    this.#probe?.stop();
    this.#context.detector.remove(this.outlier);
  }

  callStarted(): void {
    this.inFlight++;
    this.calls++;
  }

  callEnded(outcome: CallOutcome): void {
    this.inFlight--;
    const code = outcome.code;
    if (code !== 0 && code !== Code.Canceled) {
      this.errors++;
      if (outcome.neverSent) this.neverSent++;
      this.#lastError = Code[code];
    }
    if (outcome.neverSent || code === Code.Canceled) return;
    // Connect failures reach the detector from the sessions; here, what the backend answered.
    if (code === Code.Unavailable) this.#context.detector.failure(this.outlier);
    else if (code !== Code.DeadlineExceeded) this.#context.detector.success(this.outlier);
    const now = performance.now();
    this.#latency = peakEwma(this.#latency, outcome.latencyMs, now - this.#latencyAt);
    this.#latencyAt = now;
  }

  #state(): EndpointState {
    if (this.membership === "draining") return "draining";
    if (this.membership === "standby") return "standby";
    if (this.#context.detector.isEjected(this.outlier)) return "ejected";
    if (this.#probe !== undefined && !this.#probe.verdict.healthy) return "unhealthy";
    if (this.sessions.state === "backoff") return "backoff";
    return "ready";
  }

  snapshot(): EndpointSnapshot {
    const sessions = this.sessions.snapshot();
    const d = this.discovered;
    const ejected = this.#context.detector.isEjected(this.outlier);
    const until = Date.now() + (this.outlier.ejectedUntil - this.#context.now());
    const probe = this.#probe;
    return {
      key: this.key,
      ...(d.name === undefined ? {} : { name: d.name }),
      ...(d.zone === undefined ? {} : { zone: d.zone }),
      state: this.#state(),
      membership: this.membership,
      healthy: this.healthy,
      ...(ejected ? { ejectedUntil: new Date(until).toISOString() } : {}),
      ejections: this.outlier.ejections,
      ...(probe === undefined ? {} : { health: probe.verdict.status }),
      ...(probe?.lastError === undefined ? {} : { healthError: probe.lastError }),
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
