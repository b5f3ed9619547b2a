/**
 * Assembles a gateway from a validated config: registry and routes, one upstream pool per
 * upstream fed by its discovery, the public and admin apps, and the lifecycle the entry
 * points drive (start → ready → shutting down → closed). Runtime-free.
 */
import type { FileRegistry } from "@bufbuild/protobuf";
import type { Context, Hono } from "hono";
import type { GatewayConfig, UpstreamConfig } from "./config/index.ts";
import { ConfigError } from "./config/index.ts";
import { discoveryFor, type Discovery } from "./discovery/index.ts";
import { createAdminApp } from "./http/admin-app.ts";
import { createPublicApp } from "./http/public-app.ts";
import { loadDescriptorFiles } from "./schema/descriptors.ts";
import { routeSpecsFor, type RouteSpec } from "./schema/routes.ts";
import { createTranscoder, RouteCompileError, type HeaderFields, type TranscoderUpstream } from "./transcode/transcoder.ts";
import { UpstreamPool, type UpstreamOptions } from "./upstream/pool.ts";
import { codeFromName } from "./upstream/retry.ts";

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export interface GatewayRuntime {
  /** The peer address of the connection a request came in on. */
  readonly remoteAddress: (c: Context) => string | undefined;
  readonly headerFields?: (c: Context) => HeaderFields | undefined;
  readonly logger: Logger;
}

export interface Gateway {
  readonly publicApp: Hono;
  readonly adminApp: Hono;
  readonly routes: readonly RouteSpec[];
  /** Starts discovery; calls flow as soon as an upstream has endpoints. */
  start(): void;
  ready(): boolean;
  /** Readiness goes 503 from here on. */
  beginShutdown(): void;
  /** Stops discovery and closes the pools (graceful: in-flight calls finish first). */
  close(graceful: boolean): Promise<void>;
}

/**
 * Builds the gateway. Throws ConfigError, DescriptorError or RouteCompileError — all
 * start-up failures the CLI reports with exit code 2.
 */
export async function createGateway(
  config: GatewayConfig,
  runtime: GatewayRuntime,
  registry?: FileRegistry,
): Promise<Gateway> {
  const reg = registry ?? (await loadDescriptorFiles(config.descriptors));
  checkServicesExist(config, reg);

  const pools = new Map<string, UpstreamPool>();
  const discoveries = new Map<string, Discovery>();
  const routes: Array<{ spec: RouteSpec; upstream: TranscoderUpstream }> = [];
  const routeProblems: Array<{ method: string; rule: string; reason: string }> = [];
  for (const upstream of config.upstreams) {
    const pool = new UpstreamPool({
      ...poolOptions(upstream, config.limits.maxResponseBytes),
      onStarved: () => discoveries.get(upstream.name)?.refresh?.(),
    });
    pools.set(upstream.name, pool);
    const specs = routeSpecsFor(reg, upstream.services);
    routeProblems.push(...specs.problems);
    const target = { name: upstream.name, transport: pool, timeoutMs: upstream.timeoutMs };
    for (const spec of specs.routes) routes.push({ spec, upstream: target });
    if (specs.routes.length === 0 && specs.problems.length === 0) {
      runtime.logger.warn(
        `upstream ${upstream.name}: no google.api.http rules in ${upstream.services.join(", ")}; nothing is routed to it`,
      );
    }
  }
  if (routeProblems.length > 0) throw new RouteCompileError(routeProblems);

  const transcoder = createTranscoder({
    registry: reg,
    routes,
    emitUnpopulated: config.json.emitUnpopulated,
    useProtoNames: config.json.useProtoNames,
    strict: config.json.strict,
    maxRequestBytes: config.limits.maxRequestBytes,
  });

  const stop = new AbortController();
  let shuttingDown = false;
  const upstreamReadiness = () =>
    Object.fromEntries([...pools].map(([name, pool]) => [name, pool.hasEndpoints]));
  const ready = () => [...pools.values()].every((p) => p.hasEndpoints);

  return {
    publicApp: createPublicApp({
      transcoder,
      cors: config.cors,
      remoteAddress: runtime.remoteAddress,
      headerFields: runtime.headerFields,
    }),
    adminApp: createAdminApp({
      ready,
      shuttingDown: () => shuttingDown,
      upstreamReadiness,
      endpoints: () => Object.fromEntries([...pools].map(([name, pool]) => [name, pool.snapshot()])),
    }),
    routes: transcoder.routes,
    start() {
      for (const upstream of config.upstreams) {
        const pool = pools.get(upstream.name)!;
        discoveryFor(upstream.discovery).then(
          (discovery) => {
            discoveries.set(upstream.name, discovery);
            discovery.start(
              {
                onEndpoints: (endpoints) => pool.update(endpoints),
                onError: (error) =>
                  runtime.logger.warn(`upstream ${upstream.name}: discovery: ${error.message}`),
              },
              stop.signal,
            );
          },
          (error: Error) =>
            runtime.logger.warn(`upstream ${upstream.name}: discovery failed to start: ${error.message}`),
        );
      }
    },
    ready,
    beginShutdown() {
      shuttingDown = true;
    },
    async close(graceful) {
      shuttingDown = true;
      stop.abort();
      await Promise.all([...pools.values()].map((p) => p.close(graceful)));
    },
  };
}

/** The pool's options from the upstream's config keys (their defaults live in config/). */
function poolOptions(upstream: UpstreamConfig, maxResponseBytes: number): UpstreamOptions {
  const { retry, keepalive } = upstream;
  return {
    name: upstream.name,
    balancer: upstream.balancer,
    timeoutMs: upstream.timeoutMs,
    maxMessageBytes: maxResponseBytes,
    warm: upstream.warm,
    session: {
      idleTimeoutMs: upstream.idleTimeoutMs,
      keepaliveIntervalMs: keepalive.intervalMs,
      keepaliveTimeoutMs: keepalive.timeoutMs,
    },
    retry: {
      attempts: retry.attempts,
      on: new Set(retry.on.map(codeFromName)),
      methods: retry.methods,
      backoffBaseMs: retry.backoffBaseMs,
      backoffMaxMs: retry.backoffMaxMs,
    },
    retryBudget: { percent: retry.budgetPercent },
    outlier: upstream.outlier,
    health: upstream.health,
  };
}

function checkServicesExist(config: GatewayConfig, registry: FileRegistry): void {
  for (const [i, upstream] of config.upstreams.entries()) {
    for (const [j, name] of upstream.services.entries()) {
      if (registry.getService(name) === undefined) {
        throw new ConfigError(
          `upstreams[${i}].services[${j}]`,
          `service ${name} is not in the descriptor sets (${config.descriptors.join(", ")})`,
        );
      }
    }
  }
}
