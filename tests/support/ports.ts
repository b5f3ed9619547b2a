/** Loopback ports for tests. */
import { createServer, type AddressInfo } from "node:net";

/** A loopback port nothing listens on (connecting to it is refused), found by binding :0 and closing. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
