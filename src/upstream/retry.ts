/**
 * When a call that reached a backend may be tried again, and after how long. Calls that never
 * reached a backend are not decided here: the pool always retries those (see pool.ts).
 */
import { Code, ConnectError } from "@connectrpc/connect";

export interface RetryPolicy {
  /** Total tries including the first (gRPC service config `maxAttempts`). */
  readonly attempts: number;
  /** Status codes worth another try. */
  readonly on: ReadonlySet<Code>;
  /** "idempotent": only calls whose route promises idempotency (GET/HEAD/PUT/DELETE). */
  readonly methods: "idempotent" | "all";
  /** Backoff before retry n: random in [0, min(max, base × 2^(n-1))) ("full jitter"). */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export const defaultRetryPolicy: RetryPolicy = {
  attempts: 2,
  on: new Set([Code.Unavailable]),
  methods: "idempotent",
  backoffBaseMs: 25,
  backoffMaxMs: 250,
};

/** Whether the answer `error`, after `retriesDone` retries, allows another try by policy. */
export function responseRetryable(
  policy: RetryPolicy,
  error: unknown,
  retriesDone: number,
  idempotent: boolean,
): boolean {
  return (
    error instanceof ConnectError &&
    policy.on.has(error.code) &&
    retriesDone + 1 < policy.attempts &&
    (policy.methods === "all" || idempotent)
  );
}

/** The wait before retry number `retry` (1-based); `random` in [0, 1). */
export function retryBackoffMs(policy: RetryPolicy, retry: number, random: number): number {
  const ceiling = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(ceiling * random);
}

/** A config code name (`unavailable`, `resource_exhausted`, `cancelled`) as a Code. */
export function codeFromName(name: string): Code {
  if (name === "cancelled") return Code.Canceled;
  const pascal = name.replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());
  const code = (Code as unknown as Record<string, Code | undefined>)[pascal];
  if (typeof code !== "number") throw new Error(`unknown gRPC code name ${name}`);
  return code;
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0 && signal?.aborted !== true) return Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
