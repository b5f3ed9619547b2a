/** Bounded waiting for tests: polling a condition, a plain delay, a call expected to fail. */
import assert from "node:assert/strict";
import { ConnectError } from "@connectrpc/connect";

/** Resolves once `condition` holds (polled every few ms); rejects after `timeoutMs`. */
export async function until(condition: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(5);
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The ConnectError a call fails with; start the call before awaiting anything else. */
export async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (e) {
    assert.ok(e instanceof ConnectError, `a ConnectError, got ${String(e)}`);
    return e;
  }
  assert.fail("the call succeeded");
}
