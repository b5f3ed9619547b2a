/**
 * The admin listener: liveness, readiness (the contract's rule), Prometheus metrics and the
 * endpoint view. Kept off the public port so probes and scrapes never compete with traffic
 * and are never exposed by the public Service.
 */
import { Hono } from "hono";
import { Registry as MetricsRegistry, Gauge, collectDefaultMetrics } from "prom-client";

export interface AdminState {
  /** Descriptors loaded and every upstream has received its first endpoint set. */
  ready(): boolean;
  shuttingDown(): boolean;
  /** Per upstream: has a first endpoint set arrived. */
  upstreamReadiness(): Record<string, boolean>;
  /** The pools' JSON-able snapshots, keyed by upstream name. */
  endpoints(): Record<string, unknown>;
}

export function createAdminApp(state: AdminState): Hono {
  const app = new Hono();
  const metrics = createMetrics(state);

  app.get("/healthz", (c) => c.text("ok\n"));
  app.get("/readyz", (c) => {
    const upstreams = state.upstreamReadiness();
    if (state.shuttingDown()) return c.json({ ready: false, reason: "shutting down", upstreams }, 503);
    const ready = state.ready();
    return c.json(
      ready ? { ready, upstreams } : { ready, reason: "waiting for endpoint sets", upstreams },
      ready ? 200 : 503,
    );
  });
  app.get("/debug/endpoints", (c) => c.json({ upstreams: state.endpoints() }));
  app.get("/metrics", async (c) =>
    c.text(await metrics.metrics(), 200, { "content-type": metrics.contentType }),
  );
  return app;
}

function createMetrics(state: AdminState): MetricsRegistry {
  const registry = new MetricsRegistry();
  collectDefaultMetrics({ register: registry, prefix: "grpc_edge_process_" });
  new Gauge({
    name: "grpc_edge_ready",
    help: "1 when the gateway is ready to serve (readyz would answer 200).",
    registers: [registry],
    collect() {
      this.set(state.ready() && !state.shuttingDown() ? 1 : 0);
    },
  });
  new Gauge({
    name: "grpc_edge_upstream_ready",
    help: "1 when the upstream's discovery has delivered its first endpoint set.",
    labelNames: ["upstream"],
    registers: [registry],
    collect() {
      for (const [upstream, ready] of Object.entries(state.upstreamReadiness())) {
        this.set({ upstream }, ready ? 1 : 0);
      }
    },
  });
  return registry;
}
