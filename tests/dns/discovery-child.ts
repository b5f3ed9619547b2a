/**
 * DNS discovery in a process of its own, under Node or Deno, so a test can see what the other
 * runtime does and that an aborted discovery leaves nothing that keeps the process alive.
 *
 * argv[2]: DnsDiscoveryOptions as JSON. Prints one JSON line per event (`{"endpoints": [keys]}`,
 * `{"error": message}`) and `{"started": true}`. Reads lines from stdin: `refresh`, and `abort`,
 * after which it stops reading and should exit by itself.
 */
import { createInterface } from "node:readline";
import { dnsDiscovery } from "../../src/discovery/dns.ts";
import { endpointKey } from "../../src/discovery/types.ts";

const print = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);

const discovery = dnsDiscovery(JSON.parse(process.argv[2]));
const controller = new AbortController();
discovery.start(
  {
    onEndpoints: (endpoints) => print({ endpoints: endpoints.map(endpointKey) }),
    onError: (error) => print({ error: error.message }),
  },
  controller.signal,
);

const commands = createInterface({ input: process.stdin });
commands.on("line", (command) => {
  if (command === "refresh") discovery.refresh?.();
  if (command === "abort") {
    controller.abort();
    commands.close();
    process.stdin.destroy();
    print({ aborted: true });
  }
});
print({ started: true });
