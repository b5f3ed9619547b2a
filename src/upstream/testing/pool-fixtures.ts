/** What the pool tests share: a loopback endpoint as discovery reports it, and a pool with test timings. */
import type { DiscoveredEndpoint } from "../../discovery/types.ts";
import { UpstreamPool, type UpstreamOptions } from "../pool.ts";

export function loopbackEndpoint(target: { port: number }, state: Partial<DiscoveredEndpoint> = {}): DiscoveredEndpoint {
  return { address: "127.0.0.1", port: target.port, ready: true, serving: true, terminating: false, ...state };
}

/** A round-robin pool over loopback with fast reconnects and short ejections; `options` override. */
export function testPool(options: Partial<UpstreamOptions> = {}): UpstreamPool {
  return new UpstreamPool({
    name: "mirror",
    balancer: "round_robin",
    timeoutMs: 5000,
    session: { backoffInitialMs: 50, backoffJitter: 0 },
    outlier: { baseEjectionMs: 200, maxEjectionMs: 1000 },
    ...options,
  });
}
