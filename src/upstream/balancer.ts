/**
 * The balancing contract: a policy picks one endpoint for a call from the set the pool gave
 * it last. Policies are pure (no I/O, no timers) and read what they need from the endpoints
 * themselves, which the pool keeps current from every call's outcome (in-flight count,
 * latency, health). New policies implement `BalancerPolicy` and register in `createPolicy`.
 */
import { PickFirst } from "./policies/pick-first.ts";
import { leastRequestCost, peakEwmaCost, PowerOfTwoChoices } from "./policies/power-of-two.ts";
import { RoundRobin } from "./policies/round-robin.ts";

/** What a policy may look at. The pool keeps one object per endpoint for its whole life. */
export interface Endpoint {
  /** `host:port` (see `endpointKey`). */
  readonly key: string;
  /** Calls started on it and not yet ended. */
  readonly inFlight: number;
  /** Peak-EWMA response latency in ms, decaying while no response comes; 0 before the first. */
  readonly latencyMs: number;
  /** Can take a call now: not in connect backoff, not ejected, not failing its health checks. */
  readonly healthy: boolean;
}

export interface PickContext {
  /** Endpoints already tried for this call. */
  readonly exclude?: ReadonlySet<Endpoint>;
}

export interface BalancerPolicy<E extends Endpoint = Endpoint> {
  /** An endpoint for a new call, or undefined when none is healthy and not excluded. */
  pick(ctx: PickContext): E | undefined;
  /** The endpoints eligible for new calls, in discovery order (the full set each time). */
  update(endpoints: readonly E[]): void;
}

export type BalancerName = "pick_first" | "round_robin" | "least_request" | "peak_ewma";

/** The policy for a config name. `random` in [0, 1) is injectable for deterministic tests. */
export function createPolicy<E extends Endpoint>(
  name: BalancerName,
  random: () => number = Math.random,
): BalancerPolicy<E> {
  switch (name) {
    case "pick_first":
      return new PickFirst<E>();
    case "round_robin":
      return new RoundRobin<E>(random);
    case "least_request":
      return new PowerOfTwoChoices<E>(leastRequestCost, random);
    case "peak_ewma":
      return new PowerOfTwoChoices<E>(peakEwmaCost, random);
  }
}

/** How fast the latency estimate forgets: after this long a sample weighs 1/e. */
export const latencyDecayMs = 10_000;

/**
 * Linkerd's peak EWMA: a slower sample replaces the estimate at once (react to trouble
 * quickly), a faster one pulls it down with a weight that grows with the time since the last
 * sample (recover smoothly). `elapsedMs` is the time since the previous sample.
 */
export function peakEwma(estimateMs: number, sampleMs: number, elapsedMs: number): number {
  if (sampleMs >= estimateMs) return sampleMs;
  const keep = Math.exp(-Math.max(0, elapsedMs) / latencyDecayMs);
  return estimateMs * keep + sampleMs * (1 - keep);
}

/**
 * The estimate as seen `elapsedMs` after its last sample: it fades toward 0, so an endpoint
 * avoided for being slow is tried again after a while instead of never (tower's PeakEwma).
 */
export function decayedLatency(estimateMs: number, elapsedMs: number): number {
  return estimateMs * Math.exp(-Math.max(0, elapsedMs) / latencyDecayMs);
}
