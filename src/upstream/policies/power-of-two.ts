/**
 * Power of two choices: look at two random usable endpoints and take the cheaper one. One
 * mechanism, two decisions (the cost):
 * - least_request (Envoy): cost = calls in flight.
 * - peak_ewma (Linkerd / tower): cost = latency estimate × (calls in flight + 1), so a slow
 *   or busy endpoint loses, and one that has been idle for a while gets tried again (the
 *   pool's estimate decays with time).
 * Two random candidates instead of the global minimum avoid herding every gateway onto the
 * same "best" endpoint between two updates of its statistics.
 */
import type { BalancerPolicy, Endpoint, PickContext } from "../balancer.ts";

/** Latency assumed for an endpoint without a measurement yet. */
export const defaultLatencyMs = 30;

export function leastRequestCost(endpoint: Endpoint): number {
  return endpoint.inFlight;
}

export function peakEwmaCost(endpoint: Endpoint): number {
  const latency = endpoint.latencyMs > 0 ? endpoint.latencyMs : defaultLatencyMs;
  return latency * (endpoint.inFlight + 1);
}

export class PowerOfTwoChoices<E extends Endpoint> implements BalancerPolicy<E> {
  #endpoints: readonly E[] = [];
  readonly #cost: (endpoint: E) => number;
  readonly #random: () => number;

  constructor(cost: (endpoint: E) => number, random: () => number = Math.random) {
    this.#cost = cost;
    this.#random = random;
  }

  update(endpoints: readonly E[]): void {
    this.#endpoints = endpoints;
  }

  pick(ctx: PickContext): E | undefined {
    const endpoints = this.#endpoints;
    const exclude = ctx.exclude;
    const usable = (e: E) => e.healthy && (exclude === undefined || !exclude.has(e));
    // Usually every endpoint is usable: two random draws decide in O(1).
    if (endpoints.length >= 2) {
      const [a, b] = this.#two(endpoints);
      if (usable(a) && usable(b)) return this.#cheaper(a, b);
    }
    const candidates = endpoints.filter(usable);
    if (candidates.length <= 1) return candidates[0];
    const [a, b] = this.#two(candidates);
    return this.#cheaper(a, b);
  }

  /** Two distinct endpoints, uniformly at random. */
  #two(list: readonly E[]): [E, E] {
    const n = list.length;
    const i = Math.floor(this.#random() * n);
    let j = Math.floor(this.#random() * (n - 1));
    if (j >= i) j++;
    return [list[i], list[j]];
  }

  #cheaper(a: E, b: E): E {
    return this.#cost(b) < this.#cost(a) ? b : a;
  }
}
