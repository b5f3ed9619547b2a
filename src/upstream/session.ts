/**
 * The HTTP/2 connections to one endpoint, as two small state machines.
 *
 * `Session` is one connection:        connecting → open → draining → closed
 *                                      connecting → closed,  open → closed
 *   open → draining when the peer sends GOAWAY or the session has been idle for `idleTimeoutMs`;
 *   open → closed when the connection is lost or a keepalive PING goes unanswered.
 * `EndpointSessions` is the endpoint's connectivity, what the balancer sees:
 *   idle ──first call──▶ connecting ──connected──▶ open
 *   connecting ──connect failed──▶ backoff ──timer──▶ idle (the next call reconnects)
 *   open ──GOAWAY, idle close or connection lost──▶ idle (old sessions finish their streams alone)
 *   any ──close()──▶ draining ──last session closed──▶ closed
 * An endpoint may hold several usable sessions: when every one is at the peer's
 * MAX_CONCURRENT_STREAMS, the next call opens another (up to `maxSessions`) rather than queue.
 *
 * Calls never wait here: `acquire()` hands out a session even while it connects (node:http2
 * queues the streams), or throws a never-sent Unavailable at once.
 */
import { connect, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import { endpointKey } from "../discovery/types.ts";
import { neverSentError } from "./grpc-wire.ts";
import { unref } from "./timers.ts";

export interface SessionOptions {
  /** A connection whose HTTP/2 handshake is not done by then fails and counts as a connect failure. */
  readonly connectTimeoutMs: number;
  /** Delay before reconnecting after a failed connect: initial × multiplier^(failures-1), capped. */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly backoffMultiplier: number;
  /** ± this fraction of randomness, so endpoints failing together do not retry in lockstep. */
  readonly backoffJitter: number;
  /** While streams are open, a PING this often proves the connection alive; 0 disables. */
  readonly keepaliveIntervalMs: number;
  /** An unanswered PING closes the connection after this long (its streams fail Unavailable). */
  readonly keepaliveTimeoutMs: number;
  /** A session without streams for this long closes gracefully; 0 keeps it open. */
  readonly idleTimeoutMs: number;
  /** Most usable sessions to one endpoint (more open only when all are saturated). */
  readonly maxSessions: number;
}

export const defaultSessionOptions: SessionOptions = {
  connectTimeoutMs: 5_000,
  backoffInitialMs: 100,
  backoffMaxMs: 5_000,
  backoffMultiplier: 2,
  backoffJitter: 0.2,
  keepaliveIntervalMs: 30_000,
  keepaliveTimeoutMs: 10_000,
  idleTimeoutMs: 300_000,
  maxSessions: 8,
};

/**
 * The stream limit assumed for a session whose peer has not sent SETTINGS yet, when no earlier
 * session to the endpoint told us better; 100 is the minimum RFC 9113 recommends.
 */
const assumedMaxConcurrentStreams = 100;

/** The wait before connect attempt number `failures + 1`; `random` in [0, 1). */
export function backoffDelayMs(failures: number, options: SessionOptions, random: number): number {
  const base = Math.min(
    options.backoffMaxMs,
    options.backoffInitialMs * options.backoffMultiplier ** Math.max(0, failures - 1),
  );
  return Math.round(base * (1 + options.backoffJitter * (2 * random - 1)));
}

export type SessionState = "connecting" | "open" | "draining" | "closed";

const sessionTransitions: Readonly<Record<SessionState, readonly SessionState[]>> = {
  connecting: ["open", "draining", "closed"],
  open: ["draining", "closed"],
  draining: ["closed"],
  closed: [],
};

interface SessionEvents {
  onOpen(session: Session): void;
  onDraining(session: Session): void;
  onClosed(session: Session, error: Error | undefined, wasOpen: boolean): void;
}

export interface SessionSnapshot {
  readonly state: SessionState;
  readonly activeStreams: number;
  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS, once known. */
  readonly maxConcurrentStreams?: number;
}

/** One HTTP/2 connection. */
export class Session {
  #state: SessionState = "connecting";
  #activeStreams = 0;
  #wasOpen = false;
  /** From the peer's latest SETTINGS (absent from them means unlimited: 2^32-1). */
  #maxConcurrentStreams: number | undefined;
  #error: Error | undefined;
  readonly #h2: ClientHttp2Session;
  readonly #options: SessionOptions;
  readonly #events: SessionEvents;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the last stream closed (or the session opened). */
  #idleSince = 0;
  #pingTimer: ReturnType<typeof setInterval> | undefined;
  #pingDeadline: ReturnType<typeof setTimeout> | undefined;
  readonly #closed: Promise<void>;

  constructor(authority: string, options: SessionOptions, events: SessionEvents) {
    this.#options = options;
    this.#events = events;
    this.#h2 = connect(authority, { settings: { enablePush: false } });
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = undefined;
      this.#destroy(`connect timeout after ${options.connectTimeoutMs}ms`, "ETIMEDOUT");
    }, options.connectTimeoutMs);
    this.#closed = new Promise((resolve) => this.#h2.once("close", resolve));
    // Open when the peer's SETTINGS arrive, not at TCP connect: a peer that does not speak
    // HTTP/2 (or hangs) then fails within the connect timeout instead of each call's deadline.
    this.#h2.on("remoteSettings", (settings) => {
      this.#maxConcurrentStreams = settings.maxConcurrentStreams ?? this.#maxConcurrentStreams;
      this.#clearTimer("connect");
      if (this.#state === "connecting") this.#setState("open");
    });
    // Without this listener a connection error would be an uncaught exception.
    this.#h2.on("error", (error: Error) => (this.#error ??= error));
    // The server will not take new streams: node:http2 finishes the ones it accepted.
    this.#h2.on("goaway", () => this.#setState("draining"));
    this.#h2.once("close", () => {
      this.#clearTimer("connect");
      this.#clearTimer("idle");
      this.#stopKeepalive();
      this.#setState("closed");
    });
  }

  get state(): SessionState {
    return this.#state;
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  /** The peer's SETTINGS_MAX_CONCURRENT_STREAMS; undefined until its SETTINGS arrive. */
  get maxConcurrentStreams(): number | undefined {
    return this.#maxConcurrentStreams;
  }

  /**
   * True once the connection is closing or gone: a stream that ends without a gRPC status now
   * was cut by the connection, not reset by the server's application.
   */
  get connectionGone(): boolean {
    return this.#h2.destroyed || this.#h2.closed;
  }

  /**
   * Starts a stream with `headers` as a flat name/value list (see the endpoint transport's
   * requestHeaders); throws a never-sent Unavailable when the connection is no longer usable.
   */
  request(headers: readonly string[]): ClientHttp2Stream {
    let stream: ClientHttp2Stream;
    try {
      stream = this.#h2.request(headers);
    } catch (e) {
      throw neverSentError(`cannot start a stream: ${(e as Error).message}`, e);
    }
    this.#activeStreams++;
    stream.once("close", this.#streamClosed);
    return stream;
  }

  /** Graceful: no new streams, open ones finish, then the connection closes. */
  close(graceful: boolean): Promise<void> {
    if (this.#state !== "closed") {
      if (graceful) this.#h2.close();
      else this.#h2.destroy();
    }
    return this.#closed;
  }

  snapshot(): SessionSnapshot {
    const limit = this.#maxConcurrentStreams;
    return {
      state: this.#state,
      activeStreams: this.#activeStreams,
      ...(limit === undefined ? {} : { maxConcurrentStreams: limit }),
    };
  }

  readonly #streamClosed = (): void => {
    if (--this.#activeStreams === 0) this.#idleSince = performance.now();
  };

  /**
   * Idle close: the session drains itself, so the next call opens a fresh one. One timer per
   * session, re-armed for what is left of the idle time, rather than a timer per call.
   */
  #armIdle(delayMs: number): void {
    this.#idleTimer = unref(
      setTimeout(() => {
        this.#idleTimer = undefined;
        if (this.#state !== "open") return;
        const idleMs = this.#options.idleTimeoutMs;
        const idleFor = this.#activeStreams > 0 ? 0 : performance.now() - this.#idleSince;
        if (idleFor < idleMs) {
          this.#armIdle(idleMs - idleFor);
          return;
        }
        this.#setState("draining");
        this.#h2.close();
      }, delayMs),
    );
  }

  /** One interval for the session's life; it pings only while streams are open. */
  #startKeepalive(): void {
    const ms = this.#options.keepaliveIntervalMs;
    if (ms > 0) this.#pingTimer = unref(setInterval(this.#ping, ms));
  }

  #stopKeepalive(): void {
    if (this.#pingTimer !== undefined) clearInterval(this.#pingTimer);
    this.#pingTimer = undefined;
    this.#clearTimer("ping");
  }

  readonly #ping = (): void => {
    if (this.#activeStreams === 0 || this.#pingDeadline !== undefined || this.connectionGone) return;
    const timeoutMs = this.#options.keepaliveTimeoutMs;
    this.#pingDeadline = unref(
      setTimeout(() => {
        this.#pingDeadline = undefined;
        this.#destroy(`keepalive PING unanswered after ${timeoutMs}ms`, "ETIMEDOUT");
      }, timeoutMs),
    );
    const sent = this.#h2.ping(() => this.#clearTimer("ping"));
    if (!sent) this.#clearTimer("ping");
  };

  #destroy(message: string, code: string): void {
    this.#h2.destroy(Object.assign(new Error(message), { code }));
  }

  #clearTimer(which: "connect" | "idle" | "ping"): void {
    if (which === "connect") {
      if (this.#connectTimer !== undefined) clearTimeout(this.#connectTimer);
      this.#connectTimer = undefined;
    } else if (which === "idle") {
      if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    } else {
      if (this.#pingDeadline !== undefined) clearTimeout(this.#pingDeadline);
      this.#pingDeadline = undefined;
    }
  }

  #setState(next: SessionState): void {
    if (next === this.#state || !sessionTransitions[this.#state].includes(next)) return;
    this.#state = next;
    if (next === "open") {
      this.#wasOpen = true;
      this.#idleSince = performance.now();
      if (this.#options.idleTimeoutMs > 0) this.#armIdle(this.#options.idleTimeoutMs);
      this.#startKeepalive();
      this.#events.onOpen(this);
    } else if (next === "draining") {
      this.#clearTimer("idle");
      this.#events.onDraining(this);
    } else if (next === "closed") {
      this.#events.onClosed(this, this.#error, this.#wasOpen);
    }
  }
}

export type EndpointConnectivity = "idle" | "connecting" | "open" | "backoff" | "draining" | "closed";

const endpointTransitions: Readonly<Record<EndpointConnectivity, readonly EndpointConnectivity[]>> = {
  idle: ["connecting", "draining", "closed"],
  connecting: ["open", "backoff", "idle", "draining", "closed"],
  open: ["idle", "connecting", "draining", "closed"],
  backoff: ["idle", "draining", "closed"],
  draining: ["closed"],
  closed: [],
};

export interface SessionsSnapshot {
  readonly state: EndpointConnectivity;
  readonly connectFailures: number;
  readonly lastError?: string;
  readonly sessions: readonly SessionSnapshot[];
}

/** The sessions of one endpoint (one address:port). */
export class EndpointSessions {
  readonly authority: string;
  readonly #options: SessionOptions;
  readonly #onChange: ((state: EndpointConnectivity) => void) | undefined;
  #state: EndpointConnectivity = "idle";
  /** Sessions new calls may go to (connecting or open), oldest first. */
  readonly #usable: Session[] = [];
  /** Every session not yet closed, the usable ones included. */
  readonly #sessions = new Set<Session>();
  #connectFailures = 0;
  /** The peer's stream limit as its last session announced it. */
  #peerLimit = assumedMaxConcurrentStreams;
  #lastError: Error | undefined;
  #backoffTimer: ReturnType<typeof setTimeout> | undefined;
  #backoffUntil = 0;
  #allClosed: (() => void) | undefined;
  readonly #sessionEvents: SessionEvents = {
    onOpen: (session) => {
      this.#connectFailures = 0;
      this.#peerLimit = session.maxConcurrentStreams ?? this.#peerLimit;
      this.#settle();
    },
    onDraining: (session) => {
      this.#unuse(session);
      this.#settle();
    },
    onClosed: (session, error, wasOpen) => {
      this.#sessions.delete(session);
      if (error !== undefined) this.#lastError = error;
      const wasUsable = this.#unuse(session);
      if (wasUsable && !wasOpen) this.#connectFailures++;
      if (wasUsable && !wasOpen && this.#usable.length === 0) this.#startBackoff();
      else this.#settle();
      if (this.#sessions.size === 0 && this.#state === "draining") this.#setState("closed");
    },
  };

  constructor(
    target: { readonly address: string; readonly port: number },
    options: Partial<SessionOptions> = {},
    onChange?: (state: EndpointConnectivity) => void,
  ) {
    this.authority = endpointKey(target);
    this.#options = { ...defaultSessionOptions, ...options };
    this.#onChange = onChange;
  }

  get state(): EndpointConnectivity {
    return this.#state;
  }

  /**
   * The session for a new call: the oldest usable one with room for a stream, else a new one
   * (all are at the peer's stream limit), else the least busy when `maxSessions` are open.
   * Throws a never-sent Unavailable while connects are failing (backoff) or once the endpoint
   * is draining or closed.
   */
  acquire(): Session {
    const usable = this.#usable;
    for (const session of usable) {
      if (session.activeStreams < (session.maxConcurrentStreams ?? this.#peerLimit)) return session;
    }
    // At the session cap, or when the last extra connection failed (no storm of connects
    // while the peer refuses them): share the least busy session, where node:http2 queues
    // streams over the limit. Only an open session knows the limit; one still connecting
    // would send them all, and the peer would refuse the extra ones.
    if (usable.length > 0 && (usable.length >= this.#options.maxSessions || this.#connectFailures > 0)) {
      const open = usable.filter((s) => s.maxConcurrentStreams !== undefined);
      return (open.length > 0 ? open : usable).reduce((a, b) => (b.activeStreams < a.activeStreams ? b : a));
    }
    if (this.#state === "idle" || this.#state === "open" || this.#state === "connecting") return this.#connect();
    if (this.#state === "backoff") {
      const wait = Math.max(0, Math.round(this.#backoffUntil - Date.now()));
      throw neverSentError(
        `${this.authority}: ${this.#lastError?.message ?? "connect failed"}; reconnecting in ${wait}ms`,
        this.#lastError,
      );
    }
    throw neverSentError(`${this.authority} is ${this.#state}`);
  }

  /** Connects now instead of on the first call. */
  warm(): void {
    if (this.#state === "idle") this.#connect();
  }

  /**
   * Stops new calls; graceful lets open streams finish first, otherwise they are cut.
   * Resolves when every connection is closed.
   */
  close(graceful: boolean): Promise<void> {
    if (this.#state === "closed") return Promise.resolve();
    this.#clearBackoff();
    this.#usable.length = 0;
    const done = new Promise<void>((resolve) => {
      const previous = this.#allClosed;
      this.#allClosed = () => {
        previous?.();
        resolve();
      };
    });
    this.#setState(this.#sessions.size === 0 ? "closed" : "draining");
    for (const session of this.#sessions) void session.close(graceful);
    return done;
  }

  snapshot(): SessionsSnapshot {
    return {
      state: this.#state,
      connectFailures: this.#connectFailures,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError.message }),
      sessions: [...this.#sessions].map((s) => s.snapshot()),
    };
  }

  #connect(): Session {
    const session = new Session(`http://${this.authority}`, this.#options, this.#sessionEvents);
    this.#sessions.add(session);
    this.#usable.push(session);
    this.#settle();
    return session;
  }

  /** Takes a session out of the usable list; false if it was not in it. */
  #unuse(session: Session): boolean {
    const i = this.#usable.indexOf(session);
    if (i < 0) return false;
    this.#usable.splice(i, 1);
    return true;
  }

  /** The connectivity that follows from the usable sessions (outside backoff and close). */
  #settle(): void {
    if (this.#state === "draining" || this.#state === "closed") return;
    if (this.#usable.length === 0) {
      if (this.#state !== "backoff") this.#setState("idle");
      return;
    }
    this.#clearBackoff();
    this.#setState(this.#usable.some((s) => s.state === "open") ? "open" : "connecting");
  }

  #startBackoff(): void {
    const delay = backoffDelayMs(this.#connectFailures, this.#options, Math.random());
    this.#backoffUntil = Date.now() + delay;
    this.#setState("backoff");
    this.#backoffTimer = unref(
      setTimeout(() => {
        this.#backoffTimer = undefined;
        this.#setState("idle");
      }, delay),
    );
  }

  #clearBackoff(): void {
    if (this.#backoffTimer !== undefined) clearTimeout(this.#backoffTimer);
    this.#backoffTimer = undefined;
  }

  #setState(next: EndpointConnectivity): void {
    if (next === this.#state) return;
    if (!endpointTransitions[this.#state].includes(next)) {
      throw new Error(`endpoint ${this.authority}: no transition ${this.#state} → ${next}`);
    }
    this.#state = next;
    if (next === "closed") {
      this.#allClosed?.();
      this.#allClosed = undefined;
    }
    this.#onChange?.(next);
  }
}
