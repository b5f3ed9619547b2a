/** Static discovery: a fixed list, delivered once, every endpoint ready. */
import type { DiscoveredEndpoint, Discovery } from "./types.ts";

export function staticDiscovery(endpoints: readonly { address: string; port: number }[]): Discovery {
  const set: DiscoveredEndpoint[] = endpoints.map((e) => ({
    address: e.address,
    port: e.port,
    ready: true,
    serving: true,
    terminating: false,
  }));
  return {
    start(events) {
      events.onEndpoints(set);
    },
  };
}
