/** The discovery source an upstream's config names. Heavy sources load only when used. */
import type { DiscoveryConfig } from "../config/index.ts";
import type { Discovery } from "./types.ts";
import { staticDiscovery } from "./static.ts";

export type { DiscoveredEndpoint, Discovery, DiscoveryEvents } from "./types.ts";
export { endpointKey } from "./types.ts";

export async function discoveryFor(config: DiscoveryConfig): Promise<Discovery> {
  switch (config.kind) {
    case "static":
      return staticDiscovery(config.endpoints);
    case "dns": {
      const { dnsDiscovery } = await import("./dns.ts");
      return dnsDiscovery({
        host: config.host,
        port: config.port,
        refreshMs: config.refreshMs,
        srv: config.srv,
        servers: config.servers,
      });
    }
    case "kubernetes": {
      // @kubernetes/client-node is large and needs Node >= 22.19: load it only when asked for.
      const { kubernetesDiscovery } = await import("./kubernetes.ts");
      return kubernetesDiscovery({
        namespace: config.namespace,
        service: config.service,
        port: config.port,
        kubeconfig: config.kubeconfig,
        api: config.api,
        zone: config.zone,
      });
    }
  }
}
