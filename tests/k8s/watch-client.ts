/**
 * A bare watch client for tests of the API stand-in: one fetch, the chunked body split into
 * newline-delimited events, read one at a time with a deadline. Closer to the wire than
 * client-node, so a test can see exactly what the server sent.
 */

export interface WatchEvent {
  readonly type: string;
  readonly object: {
    readonly kind?: string;
    readonly metadata: { readonly name?: string; readonly resourceVersion?: string; readonly annotations?: Record<string, string> };
    readonly code?: number;
    readonly reason?: string;
    readonly [field: string]: unknown;
  };
}

/** What `next` gives back: an event, the clean end of the response, a failed connection, or nothing in time. */
export type WatchRead = WatchEvent | { readonly end: "clean" | "error" | "timeout"; readonly error?: unknown };

export interface WatchStream {
  readonly status: number;
  readonly headers: Headers;
  next(timeoutMs?: number): Promise<WatchRead>;
  /** Events until the response ends or `quietMs` passes without one. */
  drain(quietMs: number): Promise<WatchEvent[]>;
  close(): void;
}

export async function openWatch(url: string, token?: string): Promise<WatchStream> {
  const controller = new AbortController();
  const response = await fetch(url, {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
    signal: controller.signal,
  });
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  let ended: WatchRead | undefined;
  const lines: string[] = [];
  let pending: Promise<void> | undefined;

  const pull = () => {
    pending ??= reader.read().then(
      ({ done, value }) => {
        pending = undefined;
        if (done) {
          ended = { end: "clean" };
          return;
        }
        buffered += decoder.decode(value, { stream: true });
        const parts = buffered.split("\n");
        buffered = parts.pop()!;
        lines.push(...parts.filter((l) => l !== ""));
      },
      (error: unknown) => {
        pending = undefined;
        ended = { end: "error", error };
      },
    );
    return pending;
  };

  const next = async (timeoutMs = 2_000): Promise<WatchRead> => {
    const deadline = performance.now() + timeoutMs;
    while (lines.length === 0 && ended === undefined) {
      const left = deadline - performance.now();
      if (left <= 0) return { end: "timeout" };
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = await Promise.race([
        pull().then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), left))),
      ]);
      clearTimeout(timer);
      if (timedOut) return { end: "timeout" };
    }
    const line = lines.shift();
    return line === undefined ? ended! : (JSON.parse(line) as WatchEvent);
  };

  return {
    status: response.status,
    headers: response.headers,
    next,
    async drain(quietMs) {
      const events: WatchEvent[] = [];
      for (let i = 0; i < 10_000; i++) {
        const read = await next(quietMs);
        if ("end" in read) return events;
        events.push(read);
      }
      return events;
    },
    close() {
      controller.abort();
      reader.cancel().catch(() => {});
    },
  };
}

/** Whether a read is an event (not an end). */
export function isEvent(read: WatchRead): read is WatchEvent {
  return !("end" in read);
}
