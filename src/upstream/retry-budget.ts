/**
 * A retry budget (Finagle / Linkerd style): over a sliding window, retries may add at most
 * `percent`% of the requests, plus `minRetries` so that low traffic can still retry at all.
 * When every backend fails, traffic is amplified by at most (1 + percent/100), not by the
 * number of attempts.
 *
 * Pure: no timers, the clock is injected; the window is `buckets` slots that expire as the
 * clock moves on.
 */

export interface RetryBudgetOptions {
  /** Retries allowed as a share of requests, 0-100. */
  readonly percent: number;
  /** Retries always allowed per window, whatever the traffic. */
  readonly minRetries: number;
  readonly windowMs: number;
}

export const defaultRetryBudgetOptions: RetryBudgetOptions = {
  percent: 20,
  minRetries: 10,
  windowMs: 10_000,
};

const buckets = 10;

export class RetryBudget {
  readonly #options: RetryBudgetOptions;
  readonly #now: () => number;
  readonly #bucketMs: number;
  /** Per slot: the slot's epoch (time / bucketMs), its requests and its retries. */
  readonly #epochs = new Float64Array(buckets).fill(-1);
  readonly #requests = new Float64Array(buckets);
  readonly #retries = new Float64Array(buckets);

  constructor(options: Partial<RetryBudgetOptions> = {}, now: () => number = () => performance.now()) {
    this.#options = { ...defaultRetryBudgetOptions, ...options };
    this.#now = now;
    this.#bucketMs = this.#options.windowMs / buckets;
  }

  /** A new call (not a retry) deposits into the budget. */
  recordRequest(): void {
    this.#requests[this.#slot()]++;
  }

  /** Takes one retry from the budget if there is room; false means do not retry. */
  tryRetry(): boolean {
    const slot = this.#slot();
    const { requests, retries } = this.totals();
    if (retries + 1 > this.#options.minRetries + (requests * this.#options.percent) / 100) return false;
    this.#retries[slot]++;
    return true;
  }

  /** Requests and retries in the window. */
  totals(): { readonly requests: number; readonly retries: number } {
    const oldest = Math.floor(this.#now() / this.#bucketMs) - buckets + 1;
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < buckets; i++) {
      if (this.#epochs[i] < oldest) continue;
      requests += this.#requests[i];
      retries += this.#retries[i];
    }
    return { requests, retries };
  }

  /** The current slot, cleared if it last held an older epoch. */
  #slot(): number {
    const epoch = Math.floor(this.#now() / this.#bucketMs);
    const slot = epoch % buckets;
    if (this.#epochs[slot] !== epoch) {
      this.#epochs[slot] = epoch;
      this.#requests[slot] = 0;
      this.#retries[slot] = 0;
    }
    return slot;
  }
}
