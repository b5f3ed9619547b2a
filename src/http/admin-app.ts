/**
 * The admin listener: liveness, readiness (the contract's rule), Prometheus metrics and the
 * endpoint view. Kept off the public port so probes and scrapes never compete with traffic
 * and are never exposed by the public Service.
 */
import { Hono } from "hono";
import { Registry as MetricsRegistry, Counter, Gauge, collectDefaultMetrics } from "prom-client";
import type { EndpointSnapshot, EndpointState, UpstreamSnapshot } from "../upstream/pool.ts";

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
  registerUpstreamMetrics(registry, () => upstreamSnapshots(state));
  return registry;
}

/** The pools' snapshots among `endpoints()` (anything else there is left out of the metrics). */
function upstreamSnapshots(state: AdminState): UpstreamSnapshot[] {
  return Object.values(state.endpoints()).filter(
    (u): u is UpstreamSnapshot => typeof u === "object" && u !== null && Array.isArray((u as UpstreamSnapshot).endpoints),
  );
}

const endpointStates: readonly EndpointState[] = ["ready", "ejected", "unhealthy", "backoff", "standby", "draining"];

/**
 * grpc_edge_upstream_* from the pools' snapshots at scrape time, labelled by upstream and
 * endpoint (host:port). An endpoint that is draining while its successor already takes calls
 * appears twice in a snapshot: its figures add up.
 */
function registerUpstreamMetrics(registry: MetricsRegistry, snapshots: () => UpstreamSnapshot[]): void {
  const labelNames = ["upstream", "endpoint"];
  const perEndpoint = (
    Metric: typeof Gauge | typeof Counter,
    name: string,
    help: string,
    value: (e: EndpointSnapshot) => number,
  ) =>
    new Metric({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const u of snapshots()) {
          for (const e of u.endpoints) this.inc({ upstream: u.name, endpoint: e.key }, value(e));
        }
      },
    });
  perEndpoint(Gauge, "grpc_edge_upstream_in_flight", "Calls started on the endpoint and not yet ended.", (e) => e.inFlight);
  perEndpoint(Counter, "grpc_edge_upstream_calls_total", "Calls (attempts) sent to the endpoint.", (e) => e.calls);
  perEndpoint(Counter, "grpc_edge_upstream_errors_total", "Calls that ended with a status other than OK or CANCELLED.", (e) => e.errors);
  perEndpoint(Counter, "grpc_edge_upstream_never_sent_total", "Calls that never reached the endpoint (retried elsewhere).", (e) => e.neverSent);
  perEndpoint(Counter, "grpc_edge_upstream_ejections_total", "Times outlier detection ejected the endpoint.", (e) => e.ejections);
  perEndpoint(Gauge, "grpc_edge_upstream_sessions", "Open HTTP/2 sessions to the endpoint.", (e) => e.sessions.length);
  new Gauge({
    name: "grpc_edge_upstream_latency_ewma_seconds",
    help: "Peak-EWMA response latency of the endpoint (decays while no response comes).",
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const u of snapshots()) {
        for (const e of u.endpoints) {
          if (e.state !== "draining") this.set({ upstream: u.name, endpoint: e.key }, e.latencyMs / 1000);
        }
      }
    },
  });
  new Gauge({
    name: "grpc_edge_upstream_endpoint_state",
    help: "1 for the endpoint's current state (ready, ejected, unhealthy, backoff, standby, draining).",
    labelNames: [...labelNames, "state"],
    registers: [registry],
    collect() {
      this.reset();
      for (const u of snapshots()) {
        for (const e of u.endpoints) {
          for (const s of endpointStates) this.inc({ upstream: u.name, endpoint: e.key, state: s }, e.state === s ? 1 : 0);
        }
      }
    },
  });
  const perUpstream = (name: string, help: string, extra: string[], values: (u: UpstreamSnapshot) => Array<[Record<string, string>, number]>) =>
    new Counter({
      name,
      help,
      labelNames: ["upstream", ...extra],
      registers: [registry],
      collect() {
        this.reset();
        for (const u of snapshots()) for (const [labels, v] of values(u)) this.inc({ upstream: u.name, ...labels }, v);
      },
    });
  perUpstream("grpc_edge_upstream_requests_total", "Calls made to the upstream (before retries).", [], (u) => [[{}, u.requests]]);
  perUpstream("grpc_edge_upstream_retries_total", "Retries: transparent (never sent) or policy (retry.on answers).", ["kind"], (u) => [
    [{ kind: "transparent" }, u.retries.transparent],
    [{ kind: "policy" }, u.retries.policy],
  ]);
  perUpstream(
    "grpc_edge_upstream_retry_budget_exhausted_total",
    "Answers the retry policy would have retried, refused by the retry budget.",
    [],
    (u) => [[{}, u.retries.budgetExhausted]],
  );
}
