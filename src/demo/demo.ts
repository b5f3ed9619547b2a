/**
 * The embedded demo: three library backends on loopback sharing one store, and a gateway
 * config that balances over them round-robin. `served_by` in every answer shows the rotation.
 */
import { join } from "node:path";
import type { FileRegistry } from "@bufbuild/protobuf";
import { parseConfig, type GatewayConfig } from "../config/index.ts";
import { packageRoot } from "../paths.ts";
import { loadDescriptorFiles } from "../schema/descriptors.ts";
import { startDemoBackends } from "./backends.ts";

export interface Demo {
  readonly config: GatewayConfig;
  readonly registry: FileRegistry;
  banner(publicUrl: string, adminUrl: string): string;
  stop(): Promise<void>;
}

export async function startDemo(): Promise<Demo> {
  const root = packageRoot();
  const backends = await startDemoBackends(3);
  try {
    const config = parseConfig(
      JSON.stringify({
        listen: "127.0.0.1:8080",
        admin: "127.0.0.1:9901",
        descriptors: [join(root, "gen", "demo.binpb")],
        upstreams: [
          {
            name: "library",
            services: ["demo.library.v1.Library"],
            discovery: { static: backends.addresses },
            balancer: "round_robin",
            timeout: "15s",
          },
        ],
      }),
      { baseDir: root, fileName: "(embedded demo)" },
    );
    const registry = await loadDescriptorFiles(config.descriptors);
    return {
      config,
      registry,
      banner: (publicUrl, adminUrl) => demoBanner(publicUrl, adminUrl, backends.addresses),
      stop: () => backends.stop(),
    };
  } catch (e) {
    await backends.stop();
    throw e;
  }
}

function demoBanner(url: string, admin: string, backends: readonly string[]): string {
  return `
Demo: the library API (proto/demo/library/v1/library.proto) on ${backends.length} backends
(${backends.join(", ")}), balanced per request. "servedBy" shows which backend answered.

  curl -s ${url}/v1/shelves/1/books
  curl -s ${url}/v1/shelves/1/books/1
  curl -s '${url}/v1/shelves/1/books?pageSize=1&tags=classic'
  curl -s -X POST ${url}/v1/shelves/1/books -d '{"title":"Dune","author":"Frank Herbert","pages":412}'
  curl -s -X PATCH ${url}/v1/shelves/1/books/1 -d '{"pages":300}'
  curl -s -X POST ${url}/v1/shelves/1/books/1:archive -d '{}'
  curl -s -X DELETE ${url}/v1/shelves/1/books/2
  curl -sN '${url}/v1/shelves/1/books:watch?maxEvents=3'
  curl -sN -H 'Accept: text/event-stream' '${url}/v1/shelves/1/books:watch?maxEvents=3'
  curl -s ${url}/v1/shelves/1/books/404            # a google.rpc.Status error, HTTP 404
  curl -s ${admin}/readyz ; curl -s ${admin}/debug/endpoints

Stop with Ctrl-C (SIGINT/SIGTERM drain in-flight calls first).`;
}
