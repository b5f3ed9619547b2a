/**
 * Passive health (outlier detection, as Envoy's): an endpoint whose connection fails, or that
 * answers Unavailable `consecutiveFailures` times in a row, is ejected (takes no new calls)
 * for `baseEjectionMs` × the number of times it has been ejected, capped at `maxEjectionMs`.
 * The multiplier wears off by one for every `baseEjectionMs` an endpoint stays in, so an
 * endpoint that failed once long ago starts again from the base time.
 * At most `maxEjectionPercent` of the endpoints are ejected at once (rounded down), so a
 * blip across the whole fleet never empties the pool.
 *
 * Pure: no timers, the clock is injected; ejections end lazily when `isEjected` is asked.
 */

export interface OutlierOptions {
  readonly consecutiveFailures: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
}

export const defaultOutlierOptions: OutlierOptions = {
  consecutiveFailures: 5,
  baseEjectionMs: 30_000,
  maxEjectionMs: 300_000,
  maxEjectionPercent: 50,
};

/** What the detector knows about one endpoint. */
export class OutlierRecord {
  consecutiveFailures = 0;
  /** Times ejected (the current multiplier, after wear-off). */
  multiplier = 0;
  /** Total ejections, for the endpoint view and metrics. */
  ejections = 0;
  /** On the detector's clock; 0 when never ejected. */
  ejectedUntil = 0;
}

export class OutlierDetector {
  readonly #options: OutlierOptions;
  readonly #now: () => number;
  readonly #records = new Set<OutlierRecord>();

  constructor(options: Partial<OutlierOptions> = {}, now: () => number = () => performance.now()) {
    this.#options = { ...defaultOutlierOptions, ...options };
    this.#now = now;
  }

  /** A new endpoint: starts in, with a clean history. */
  add(): OutlierRecord {
    const record = new OutlierRecord();
    this.#records.add(record);
    return record;
  }

  remove(record: OutlierRecord): void {
    this.#records.delete(record);
  }

  isEjected(record: OutlierRecord): boolean {
    return record.ejectedUntil > this.#now();
  }

  /** The backend answered (anything but Unavailable): the failure streak ends. */
  success(record: OutlierRecord): void {
    record.consecutiveFailures = 0;
  }

  /** An Unavailable answer. True when this ejected the endpoint. */
  failure(record: OutlierRecord): boolean {
    record.consecutiveFailures++;
    return record.consecutiveFailures >= this.#options.consecutiveFailures && this.#eject(record);
  }

  /** The connection could not be made: nothing will reach this endpoint, eject it at once. */
  connectFailure(record: OutlierRecord): boolean {
    record.consecutiveFailures = Math.max(record.consecutiveFailures, this.#options.consecutiveFailures);
    return this.#eject(record);
  }

  /** How many endpoints are out now, and how many may be. */
  ejectedCount(): { readonly ejected: number; readonly limit: number } {
    const now = this.#now();
    let ejected = 0;
    for (const r of this.#records) if (r.ejectedUntil > now) ejected++;
    return { ejected, limit: Math.floor((this.#records.size * this.#options.maxEjectionPercent) / 100) };
  }

  #eject(record: OutlierRecord): boolean {
    const now = this.#now();
    if (record.ejectedUntil > now) return false;
    const { ejected, limit } = this.ejectedCount();
    if (ejected + 1 > limit) return false;
    const { baseEjectionMs, maxEjectionMs } = this.#options;
    // Wear-off: one level less for every base period spent in since the last ejection ended.
    if (record.ejectedUntil > 0) {
      const healthyFor = now - record.ejectedUntil;
      record.multiplier = Math.max(0, record.multiplier - Math.floor(healthyFor / baseEjectionMs));
    }
    record.multiplier++;
    record.ejections++;
    record.consecutiveFailures = 0;
    record.ejectedUntil = now + Math.min(maxEjectionMs, baseEjectionMs * record.multiplier);
    return true;
  }
}
