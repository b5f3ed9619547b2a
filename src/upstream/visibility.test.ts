/** The admin view of the pools: /debug/endpoints and the grpc_edge_upstream_* metrics. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAdminApp } from "../http/admin-app.ts";
import { UpstreamPool } from "./pool.ts";
import { startRawBackend } from "./testing/raw-backend.ts";
import { until } from "../../tests/support/wait.ts";
import { freePort, mirrorMethods } from "../../tests/backends/mirror-connect.ts";

test("/debug/endpoints and /metrics show every endpoint's state, in-flight, totals, errors, latency, sessions", { timeout: 15_000 }, async () => {
  const backend = await startRawBackend({ delayMs: 5 });
  const dead = await freePort();
  const p = new UpstreamPool({
    name: "mirror",
    balancer: "round_robin",
    timeoutMs: 5000,
    random: () => 0,
    outlier: { baseEjectionMs: 60_000 },
  });
  const app = createAdminApp({
    ready: () => true,
    shuttingDown: () => false,
    upstreamReadiness: () => ({ mirror: p.hasEndpoints }),
    endpoints: () => ({ mirror: p.snapshot() }),
  });
  try {
    const ep = (port: number) => ({ address: "127.0.0.1", port, ready: true, serving: true, terminating: false });
    p.update([ep(dead), ep(backend.port)]);
    for (let i = 0; i < 4; i++) await p.unary(mirrorMethods.whoAmI, undefined, 5000, undefined, {} as never);
    await until(() => p.snapshot().endpoints.every((e) => e.inFlight === 0), "the calls to end");

    const debug = (await (await app.request("/debug/endpoints")).json()) as {
      upstreams: { mirror: { requests: number; retries: { transparent: number }; endpoints: Array<Record<string, unknown>> } };
    };
    const view = debug.upstreams.mirror;
    assert.equal(view.requests, 4);
    assert.equal(view.retries.transparent, 1, "the one call to the dead endpoint went on to the live one");
    const [deadView, liveView] = view.endpoints;
    assert.equal(deadView.state, "ejected");
    assert.ok(Date.parse(String(deadView.ejectedUntil)) > Date.now() + 50_000);
    assert.deepEqual([deadView.calls, deadView.errors, deadView.neverSent, deadView.ejections], [1, 1, 1, 1]);
    assert.equal(liveView.state, "ready");
    assert.deepEqual([liveView.calls, liveView.errors, liveView.inFlight], [4, 0, 0]);
    assert.ok(Number(liveView.latencyMs) > 0);
    assert.equal((liveView.sessions as unknown[]).length, 1);

    const metrics = await (await app.request("/metrics")).text();
    const sample = (name: string, endpointPort: number, extra = "") =>
      metrics.match(new RegExp(`^${name}\\{upstream="mirror",endpoint="127\\.0\\.0\\.1:${endpointPort}"${extra}\\} (\\S+)$`, "m"))?.[1];
    assert.equal(sample("grpc_edge_upstream_calls_total", backend.port), "4");
    assert.equal(sample("grpc_edge_upstream_calls_total", dead), "1");
    assert.equal(sample("grpc_edge_upstream_errors_total", dead), "1");
    assert.equal(sample("grpc_edge_upstream_never_sent_total", dead), "1");
    assert.equal(sample("grpc_edge_upstream_ejections_total", dead), "1");
    assert.equal(sample("grpc_edge_upstream_in_flight", backend.port), "0");
    assert.equal(sample("grpc_edge_upstream_sessions", backend.port), "1");
    assert.ok(Number(sample("grpc_edge_upstream_latency_ewma_seconds", backend.port)) > 0);
    assert.equal(sample("grpc_edge_upstream_endpoint_state", dead, ',state="ejected"'), "1");
    assert.equal(sample("grpc_edge_upstream_endpoint_state", dead, ',state="ready"'), "0");
    assert.equal(sample("grpc_edge_upstream_endpoint_state", backend.port, ',state="ready"'), "1");
    assert.match(metrics, /^grpc_edge_upstream_requests_total\{upstream="mirror"\} 4$/m);
    assert.match(metrics, /^grpc_edge_upstream_retries_total\{upstream="mirror",kind="transparent"\} 1$/m);
    assert.match(metrics, /^grpc_edge_upstream_ready\{upstream="mirror"\} 1$/m, "the existing metrics stay");
  } finally {
    await p.close(false);
    await backend.stop();
  }
});
