/**
 * Deno entry point: listeners only, on Deno.serve (HTTP/1.1; HTTP/2 where TLS ALPN offers it).
 * Everything else is the same src/ the Node entry runs.
 */
import type { Hono } from "hono";
import type { HostPort } from "./config/index.ts";
import { main, type Listener } from "./main.ts";

interface DenoServeInfo {
  readonly remoteAddr: { readonly hostname: string; readonly port: number };
}
interface DenoServer {
  readonly addr: { readonly hostname: string; readonly port: number };
  shutdown(): Promise<void>;
  readonly finished: Promise<void>;
}
interface DenoApi {
  readonly args: string[];
  serve(
    options: { hostname: string; port: number; onListen?: (addr: unknown) => void },
    handler: (request: Request, info: DenoServeInfo) => Response | Promise<Response>,
  ): DenoServer;
  addSignalListener(signal: "SIGTERM" | "SIGINT", handler: () => void): void;
  exit(code: number): never;
}
declare const Deno: DenoApi;

async function listen(app: Hono, at: HostPort): Promise<Listener> {
  const server = Deno.serve({ hostname: at.host, port: at.port, onListen: () => {} }, (request, info) =>
    app.fetch(request, info),
  );
  const { hostname, port } = server.addr;
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    url: `http://${host}:${port}`,
    async close(deadlineMs) {
      // shutdown() stops accepting and waits for in-flight requests; bound it by the deadline.
      await Promise.race([
        server.shutdown(),
        new Promise((resolve) => setTimeout(resolve, Math.max(0, deadlineMs - Date.now()))),
      ]);
    },
  };
}

await main({
  name: "deno",
  args: Deno.args,
  listen,
  remoteAddress: (c) => (c.env as DenoServeInfo | undefined)?.remoteAddr?.hostname,
  onShutdownSignal(handler) {
    Deno.addSignalListener("SIGTERM", () => handler("SIGTERM"));
    Deno.addSignalListener("SIGINT", () => handler("SIGINT"));
  },
  exit: (code) => Deno.exit(code),
});
