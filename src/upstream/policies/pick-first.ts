/**
 * pick_first (grpc-go semantics): every call goes to one endpoint, the first healthy one of
 * the list, and stays there while it is healthy. When it fails, the next healthy endpoint in
 * list order takes over and keeps the calls even after the first one recovers. A set update
 * keeps the current endpoint if it is still in the set, else starts again from the top.
 */
import type { BalancerPolicy, Endpoint, PickContext } from "../balancer.ts";

export class PickFirst<E extends Endpoint> implements BalancerPolicy<E> {
  #endpoints: readonly E[] = [];
  #current = 0;

  update(endpoints: readonly E[]): void {
    const current = this.#endpoints[this.#current];
    this.#endpoints = endpoints;
    const index = current === undefined ? -1 : endpoints.indexOf(current);
    this.#current = index >= 0 ? index : 0;
  }

  pick(ctx: PickContext): E | undefined {
    const endpoints = this.#endpoints;
    const n = endpoints.length;
    // Failover: the sticky endpoint becomes the first healthy one from the current position.
    for (let i = 0; i < n; i++) {
      const index = (this.#current + i) % n;
      if (endpoints[index].healthy) {
        this.#current = index;
        break;
      }
    }
    // Endpoints this call already tried are skipped for this call only.
    const exclude = ctx.exclude;
    for (let i = 0; i < n; i++) {
      const endpoint = endpoints[(this.#current + i) % n];
      if (endpoint.healthy && (exclude === undefined || !exclude.has(endpoint))) return endpoint;
    }
    return undefined;
  }
}
