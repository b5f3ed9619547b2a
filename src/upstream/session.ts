/**
 * The HTTP/2 connections to one endpoint, as two small state machines.
 *
 * `Session` is one connection:        connecting → open → draining → closed
 *                                      connecting → closed,  open → closed
 * `EndpointSessions` is the endpoint's connectivity, what the balancer sees:
 *   idle ──first call──▶ connecting ──connected──▶ open
 *   connecting ──connect failed──▶ backoff ──timer──▶ idle (the next call reconnects)
 *   open ──GOAWAY or connection lost──▶ idle (the old session finishes its streams alone)
 *   any ──close()──▶ draining ──last session closed──▶ closed
 *
 * Calls never wait here: `acquire()` hands out the current session even while it connects
 * (node:http2 queues the streams), or throws a never-sent Unavailable at once.
 *
 * Next issue (balancing): keepalive PING while streams are open, close after idle, a second
 * session when the current one is at the peer's MAX_CONCURRENT_STREAMS, `warm` from config.
 */
import { connect, type ClientHttp2Session, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import { endpointKey } from "../discovery/types.ts";
import { neverSentError } from "./grpc-wire.ts";

export interface SessionOptions {
  /** A connection whose HTTP/2 handshake is not done by then fails and counts as a connect failure. */
  readonly connectTimeoutMs: number;
  /** Delay before reconnecting after a failed connect: initial × multiplier^(failures-1), capped. */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly backoffMultiplier: number;
  /** ± this fraction of randomness, so endpoints failing together do not retry in lockstep. */
  readonly backoffJitter: number;
}

export const defaultSessionOptions: SessionOptions = {
  connectTimeoutMs: 5_000,
  backoffInitialMs: 100,
  backoffMaxMs: 5_000,
  backoffMultiplier: 2,
  backoffJitter: 0.2,
};

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

/** One HTTP/2 connection. */
export class Session {
  #state: SessionState = "connecting";
  #activeStreams = 0;
  #wasOpen = false;
  #error: Error | undefined;
  readonly #h2: ClientHttp2Session;
  readonly #events: SessionEvents;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #closed: Promise<void>;

  constructor(authority: string, options: SessionOptions, events: SessionEvents) {
    this.#events = events;
    this.#h2 = connect(authority, { settings: { enablePush: false } });
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = undefined;
      const error = Object.assign(new Error(`connect timeout after ${options.connectTimeoutMs}ms`), {
        code: "ETIMEDOUT",
      });
      this.#h2.destroy(error);
    }, options.connectTimeoutMs);
    this.#closed = new Promise((resolve) => this.#h2.once("close", resolve));
    // Open when the peer's SETTINGS arrive, not at TCP connect: a peer that does not speak
    // HTTP/2 (or hangs) then fails within the connect timeout instead of each call's deadline.
    this.#h2.once("remoteSettings", () => {
      this.#clearConnectTimer();
      if (this.#state === "connecting") this.#setState("open");
    });
    // Without this listener a connection error would be an uncaught exception.
    this.#h2.on("error", (error: Error) => (this.#error ??= error));
    // The server will not take new streams: node:http2 finishes the ones it accepted.
    this.#h2.on("goaway", () => this.#setState("draining"));
    this.#h2.once("close", () => {
      this.#clearConnectTimer();
      this.#setState("closed");
    });
  }

  get state(): SessionState {
    return this.#state;
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  /**
   * True once the connection is closing or gone: a stream that ends without a gRPC status now
   * was cut by the connection, not reset by the server's application.
   */
  get connectionGone(): boolean {
    return this.#h2.destroyed || this.#h2.closed;
  }

  /** Starts a stream; throws a never-sent Unavailable when the connection is no longer usable. */
  request(headers: OutgoingHttpHeaders): ClientHttp2Stream {
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

  readonly #streamClosed = (): void => {
    this.#activeStreams--;
  };

  #clearConnectTimer(): void {
    if (this.#connectTimer !== undefined) clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
  }

  #setState(next: SessionState): void {
    if (next === this.#state || !sessionTransitions[this.#state].includes(next)) return;
    this.#state = next;
    if (next === "open") {
      this.#wasOpen = true;
      this.#events.onOpen(this);
    } else if (next === "draining") {
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
  open: ["idle", "draining", "closed"],
  backoff: ["idle", "draining", "closed"],
  draining: ["closed"],
  closed: [],
};

export interface SessionsSnapshot {
  readonly state: EndpointConnectivity;
  readonly connectFailures: number;
  readonly lastError?: string;
  readonly sessions: ReadonlyArray<{ readonly state: SessionState; readonly activeStreams: number }>;
}

/** The sessions of one endpoint (one address:port). */
export class EndpointSessions {
  readonly authority: string;
  readonly #options: SessionOptions;
  readonly #onChange: ((state: EndpointConnectivity) => void) | undefined;
  #state: EndpointConnectivity = "idle";
  /** The session new calls go to; set only while it is connecting or open. */
  #current: Session | undefined;
  /** Every session not yet closed, the current one included. */
  readonly #sessions = new Set<Session>();
  #connectFailures = 0;
  #lastError: Error | undefined;
  #backoffTimer: ReturnType<typeof setTimeout> | undefined;
  #backoffUntil = 0;
  #allClosed: (() => void) | undefined;
  readonly #sessionEvents: SessionEvents = {
    onOpen: (session) => {
      if (session !== this.#current) return;
      this.#connectFailures = 0;
      this.#setState("open");
    },
    onDraining: (session) => this.#retire(session),
    onClosed: (session, error, wasOpen) => {
      this.#sessions.delete(session);
      if (error !== undefined) this.#lastError = error;
      if (session === this.#current && !wasOpen) {
        this.#current = undefined;
        this.#connectFailures++;
        this.#startBackoff();
      } else {
        this.#retire(session);
      }
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
   * The session for a new call, connecting one if needed. Throws a never-sent Unavailable
   * while connects are failing (backoff) or once the endpoint is draining or closed.
   */
  acquire(): Session {
    const current = this.#current;
    if (current !== undefined) return current;
    if (this.#state === "idle") return this.#connect();
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
    this.#current = undefined;
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
      sessions: [...this.#sessions].map((s) => ({ state: s.state, activeStreams: s.activeStreams })),
    };
  }

  #connect(): Session {
    const session = new Session(`http://${this.authority}`, this.#options, this.#sessionEvents);
    this.#sessions.add(session);
    this.#current = session;
    this.#setState("connecting");
    return session;
  }

  /** A session that takes no new calls: the next call opens a fresh one. */
  #retire(session: Session): void {
    if (session !== this.#current) return;
    this.#current = undefined;
    if (this.#state === "open" || this.#state === "connecting") this.#setState("idle");
  }

  #startBackoff(): void {
    const delay = backoffDelayMs(this.#connectFailures, this.#options, Math.random());
    this.#backoffUntil = Date.now() + delay;
    this.#setState("backoff");
    this.#backoffTimer = setTimeout(() => {
      this.#backoffTimer = undefined;
      this.#setState("idle");
    }, delay);
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
