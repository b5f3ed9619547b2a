// The demo overlay's backend pod: one demo Library server (src/demo/backends.ts) on
// DEMO_BACKEND_LISTEN (default 0.0.0.0:50051), reporting the pod's name in servedBy.
// Runs from the image's /app (node deploy/demo-backend.mjs); ../dist is the compiled src/.
//
// SIGTERM (after the pod's preStop sleep, when gateways already saw the pod terminating): GOAWAY
// to every connection, in-flight calls and watch streams finish, at most DEMO_BACKEND_DRAIN_MS,
// then exit 0.
import { hostname } from "node:os";
import { startDemoBackends } from "../dist/src/demo/backends.js";

const listen = process.env.DEMO_BACKEND_LISTEN || "0.0.0.0:50051";
const drainMs = Number(process.env.DEMO_BACKEND_DRAIN_MS || "10000");
const split = /^\[?([^\]]*)\]?:(\d+)$/.exec(listen);
if (split === null || !(drainMs >= 0)) {
  const got = JSON.stringify({ DEMO_BACKEND_LISTEN: listen, DEMO_BACKEND_DRAIN_MS: process.env.DEMO_BACKEND_DRAIN_MS });
  console.error(`demo backend: DEMO_BACKEND_LISTEN must be host:port, DEMO_BACKEND_DRAIN_MS a number (got ${got})`);
  process.exit(2);
}
const [, host, port] = split;

let backends;
try {
  backends = await startDemoBackends(1, { host, port: Number(port), name: hostname() });
} catch (e) {
  console.error(`demo backend: cannot listen on ${listen}: ${e.message}`);
  process.exit(1);
}
console.log(`demo backend: demo.library.v1.Library listening on ${backends.addresses[0]}`);

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`demo backend: ${signal}: draining, at most ${drainMs} ms`);
  const drained = backends.stop({ graceful: true });
  const timer = setTimeout(() => void backends.stop({ graceful: false }), drainMs);
  await drained;
  clearTimeout(timer);
  process.exit(0);
}
process.once("SIGTERM", () => void shutdown("SIGTERM"));
process.once("SIGINT", () => void shutdown("SIGINT"));
