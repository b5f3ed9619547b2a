/**
 * round_robin: strict rotation over the healthy endpoints. With N healthy endpoints, M picks
 * give each M/N ± 1. A set update keeps the rotation going from the endpoint that was next
 * (or the nearest one after it that is still present); the very first set starts at a random
 * place so that gateways started together do not all hit the same backend first.
 */
import type { BalancerPolicy, Endpoint, PickContext } from "../balancer.ts";

export class RoundRobin<E extends Endpoint> implements BalancerPolicy<E> {
  #endpoints: readonly E[] = [];
  #next = 0;
  #started = false;
  readonly #random: () => number;

  constructor(random: () => number = Math.random) {
    this.#random = random;
  }

  update(endpoints: readonly E[]): void {
    const previous = this.#endpoints;
    this.#endpoints = endpoints;
    if (endpoints.length === 0) {
      this.#next = 0;
      return;
    }
    if (!this.#started) {
      this.#started = true;
      this.#next = Math.floor(this.#random() * endpoints.length);
      return;
    }
    const position = new Map<E, number>(endpoints.map((e, i) => [e, i]));
    for (let i = 0; i < previous.length; i++) {
      const candidate = position.get(previous[(this.#next + i) % previous.length]);
      if (candidate !== undefined) {
        this.#next = candidate;
        return;
      }
    }
    this.#next %= endpoints.length;
  }

  pick(ctx: PickContext): E | undefined {
    const endpoints = this.#endpoints;
    const n = endpoints.length;
    const exclude = ctx.exclude;
    for (let i = 0; i < n; i++) {
      const index = (this.#next + i) % n;
      const endpoint = endpoints[index];
      if (endpoint.healthy && (exclude === undefined || !exclude.has(endpoint))) {
        this.#next = index + 1 === n ? 0 : index + 1;
        return endpoint;
      }
    }
    return undefined;
  }
}
