/**
 * The config file: YAML (JSON is YAML too) → a validated, defaulted, path-resolved
 * GatewayConfig. Nothing else in grpc-edge knows the file format. Structure and messages come
 * from one zod schema; every error names the key path it is about.
 */
import { readFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { dirname, isAbsolute, resolve } from "node:path";
import { parseDocument } from "yaml";
import { z } from "zod";
import { parseByteSize, parseDuration, parseHostPort, parseNameServer, type HostPort } from "./units.ts";

export { parseByteSize, parseDuration, parseHostPort, type HostPort };

export type BalancerName = "pick_first" | "round_robin" | "least_request" | "peak_ewma";

export type DiscoveryConfig =
  | { readonly kind: "static"; readonly endpoints: readonly { address: string; port: number }[] }
  | {
      readonly kind: "dns";
      readonly host: string;
      readonly port: number;
      readonly refreshMs: number;
      readonly srv: string | undefined;
      /** Name servers to ask instead of the system's (`10.96.0.10`, `127.0.0.1:5353`, `[::1]:53`). */
      readonly servers: readonly string[] | undefined;
    }
  | {
      readonly kind: "kubernetes";
      /** undefined: the pod's namespace in a cluster, else the kubeconfig context's, else `default`. */
      readonly namespace: string | undefined;
      readonly service: string;
      readonly port: string | number;
      readonly kubeconfig: string | undefined;
      readonly api: "endpointslices" | "endpoints";
      readonly zone: string | undefined;
    };

export interface RetryConfig {
  /** Total tries including the first (gRPC service config `maxAttempts` semantics). */
  readonly attempts: number;
  /** gRPC code names in lower_snake case: `unavailable`, `resource_exhausted`, ... */
  readonly on: readonly string[];
  readonly methods: "idempotent" | "all";
  /** Retries may add at most this share of the requests (a retry budget, as Linkerd's). */
  readonly budgetPercent: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export interface HealthConfig {
  readonly service: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
}

export interface OutlierConfig {
  readonly consecutiveFailures: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
}

export interface KeepaliveConfig {
  readonly intervalMs: number;
  readonly timeoutMs: number;
}

export interface UpstreamConfig {
  readonly name: string;
  readonly services: readonly string[];
  readonly discovery: DiscoveryConfig;
  readonly balancer: BalancerName;
  readonly timeoutMs: number;
  readonly warm: boolean;
  readonly idleTimeoutMs: number;
  readonly keepalive: KeepaliveConfig;
  readonly retry: RetryConfig;
  readonly health: HealthConfig | undefined;
  readonly outlier: OutlierConfig;
}

export interface JsonConfig {
  readonly emitUnpopulated: boolean;
  readonly useProtoNames: boolean;
  readonly strict: boolean;
}

export interface CorsConfig {
  readonly allowOrigins: readonly string[];
  readonly allowHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds: number;
}

export interface GatewayConfig {
  readonly listen: HostPort;
  readonly admin: HostPort;
  /** Absolute paths. */
  readonly descriptors: readonly string[];
  readonly upstreams: readonly UpstreamConfig[];
  readonly json: JsonConfig;
  readonly limits: { readonly maxRequestBytes: number; readonly maxResponseBytes: number };
  readonly cors: CorsConfig | undefined;
  readonly shutdown: { readonly drainTimeoutMs: number };
  /** Gateway processes sharing the listeners (Node: node:cluster); "auto" in the file = the CPU count. */
  readonly workers: number;
}

/** Every default, in one place (file keys as users write them). */
export const defaults = {
  listen: "127.0.0.1:8080",
  admin: "127.0.0.1:9901",
  json: { emitUnpopulated: true, useProtoNames: false, strict: false },
  limits: { maxRequestBytes: "4MiB", maxResponseBytes: "4MiB" },
  shutdown: { drainTimeout: "30s" },
  workers: "auto" as number | "auto",
  cors: { allowHeaders: [] as string[], exposeHeaders: [] as string[], maxAge: "10m" },
  upstream: {
    balancer: "round_robin" as BalancerName,
    timeout: "15s",
    warm: false,
    idleTimeout: "5m",
    keepalive: { interval: "30s", timeout: "10s" },
    retry: { attempts: 2, on: ["unavailable"], methods: "idempotent" as const, budget: 20, backoff: { base: "25ms", max: "250ms" } },
    outlier: { consecutiveFailures: 5, baseEjectionTime: "30s", maxEjectionTime: "300s", maxEjectionPercent: 50 },
    health: { service: "", interval: "5s", timeout: "1s", healthyThreshold: 1, unhealthyThreshold: 3 },
  },
  dns: { refresh: "5s" },
  kubernetes: { api: "endpointslices" as const },
} as const;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  /** The offending key, e.g. `upstreams[0].discovery.static[1]`; `(file)` for the file itself. */
  readonly key: string;
  constructor(key: string, reason: string) {
    super(`config: ${key}: ${reason}`);
    this.key = key;
  }
}

const grpcCodeNames = [
  "cancelled", "unknown", "invalid_argument", "deadline_exceeded", "not_found", "already_exists",
  "permission_denied", "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
  "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated",
] as const;

/** A string turned into another type, with the converter's message as the zod issue. */
function converted<T>(convert: (text: string) => T) {
  return z.string().transform((text, ctx) => {
    try {
      return convert(text);
    } catch (e) {
      ctx.addIssue({ code: "custom", message: (e as Error).message });
      return z.NEVER;
    }
  });
}

const duration = converted(parseDuration);
const positiveDuration = duration.refine((ms) => ms > 0, "must be greater than zero");
const hostPort = converted(parseHostPort);
const byteSize = z.union([z.number().int().positive(), converted(parseByteSize)]);
const count = (min: number) => z.number().int().min(min);
const serviceName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/, "must be a fully-qualified service name such as pkg.v1.Service");

const staticDiscovery = z.array(hostPort).min(1, "needs at least one host:port");

const dnsDiscovery = z.strictObject({
  host: z.string().min(1).optional(),
  port: count(1).max(65535).optional(),
  refresh: positiveDuration.prefault(defaults.dns.refresh),
  srv: z.string().min(1).optional(),
  servers: z.array(converted(parseNameServer)).min(1).optional(),
});

const kubernetesDiscovery = z.strictObject({
  namespace: z.string().min(1).optional(),
  service: z.string().min(1),
  port: z.union([count(1).max(65535), z.string().min(1)]),
  kubeconfig: z.string().min(1).optional(),
  api: z.enum(["endpointslices", "endpoints"]).default(defaults.kubernetes.api),
  zone: z.string().min(1).optional(),
});

const discovery = z.strictObject({
  static: staticDiscovery.optional(),
  dns: dnsDiscovery.optional(),
  kubernetes: kubernetesDiscovery.optional(),
});

const u = defaults.upstream;
const upstream = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, "must match [A-Za-z0-9_.-]+"),
  services: z.array(serviceName).min(1, "needs at least one service"),
  discovery,
  balancer: z.enum(["pick_first", "round_robin", "least_request", "peak_ewma"]).default(u.balancer),
  timeout: positiveDuration.prefault(u.timeout),
  warm: z.boolean().default(u.warm),
  idleTimeout: positiveDuration.prefault(u.idleTimeout),
  keepalive: z
    .strictObject({
      interval: positiveDuration.prefault(u.keepalive.interval),
      timeout: positiveDuration.prefault(u.keepalive.timeout),
    })
    .prefault({}),
  retry: z
    .strictObject({
      attempts: count(1).max(10).default(u.retry.attempts),
      on: z.array(z.enum(grpcCodeNames)).default([...u.retry.on]),
      methods: z.enum(["idempotent", "all"]).default(u.retry.methods),
      budget: z
        .union([
          z.number().min(0).max(100),
          z
            .string()
            .regex(/^\d+(\.\d+)?%$/, 'must be a percentage such as "20%"')
            .transform((s) => Number(s.slice(0, -1))),
        ])
        .prefault(u.retry.budget),
      backoff: z
        .strictObject({
          base: positiveDuration.prefault(u.retry.backoff.base),
          max: positiveDuration.prefault(u.retry.backoff.max),
        })
        .prefault({}),
    })
    .prefault({}),
  health: z
    .strictObject({
      service: z.string().default(u.health.service),
      interval: positiveDuration.prefault(u.health.interval),
      timeout: positiveDuration.prefault(u.health.timeout),
      healthyThreshold: count(1).default(u.health.healthyThreshold),
      unhealthyThreshold: count(1).default(u.health.unhealthyThreshold),
    })
    .optional(),
  outlier: z
    .strictObject({
      consecutiveFailures: count(1).default(u.outlier.consecutiveFailures),
      baseEjectionTime: positiveDuration.prefault(u.outlier.baseEjectionTime),
      maxEjectionTime: positiveDuration.prefault(u.outlier.maxEjectionTime),
      maxEjectionPercent: z.number().min(0).max(100).default(u.outlier.maxEjectionPercent),
    })
    .prefault({}),
});

const fileSchema = z.strictObject({
  listen: hostPort.prefault(defaults.listen),
  admin: hostPort.prefault(defaults.admin),
  descriptors: z.array(z.string().min(1)).min(1, "needs at least one descriptor set file"),
  upstreams: z.array(upstream).min(1, "needs at least one upstream"),
  json: z
    .strictObject({
      emitUnpopulated: z.boolean().default(defaults.json.emitUnpopulated),
      useProtoNames: z.boolean().default(defaults.json.useProtoNames),
      strict: z.boolean().default(defaults.json.strict),
    })
    .prefault({}),
  limits: z
    .strictObject({
      maxRequestBytes: byteSize.prefault(defaults.limits.maxRequestBytes),
      maxResponseBytes: byteSize.prefault(defaults.limits.maxResponseBytes),
    })
    .prefault({}),
  cors: z
    .strictObject({
      allowOrigins: z.array(z.string().min(1)).min(1),
      allowHeaders: z.array(z.string().min(1)).default([...defaults.cors.allowHeaders]),
      exposeHeaders: z.array(z.string().min(1)).default([...defaults.cors.exposeHeaders]),
      maxAge: duration.prefault(defaults.cors.maxAge),
    })
    .optional(),
  shutdown: z
    .strictObject({ drainTimeout: duration.prefault(defaults.shutdown.drainTimeout) })
    .prefault({}),
  workers: z
    .union([count(1).max(256), z.literal("auto")], { error: 'must be a whole number from 1 to 256, or "auto"' })
    .default(defaults.workers)
    .transform((n) => (n === "auto" ? availableParallelism() : n)),
});

type FileConfig = z.output<typeof fileSchema>;

/** Parses and validates config text. Throws ConfigError naming the key. */
export function parseConfig(text: string, options: { baseDir: string; fileName?: string }): GatewayConfig {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const where = e.linePos?.[0] ? ` at line ${e.linePos[0].line}, column ${e.linePos[0].col}` : "";
    throw new ConfigError("(file)", `invalid YAML${where}: ${e.message.split("\n")[0]}`);
  }
  const raw: unknown = doc.toJS();
  const parsed = fileSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    // An unknown key is usually a typo that also explains the other issues (a misspelt required
    // key is "missing" too), so it is the one reported.
    const issues = parsed.error.issues;
    const issue = issues.find((i) => i.code === "unrecognized_keys") ?? issues[0];
    const path = issue.code === "unrecognized_keys" ? [...issue.path, issue.keys[0]] : issue.path;
    throw new ConfigError(keyPath(path), describeIssue(issue, raw));
  }
  return toGatewayConfig(parsed.data, options.baseDir);
}

/** Reads and parses a config file; relative paths in it resolve against its folder. */
export async function loadConfigFile(path: string): Promise<GatewayConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw new ConfigError("(file)", `cannot read ${path}: ${(e as Error).message}`);
  }
  return parseConfig(text, { baseDir: dirname(resolve(path)), fileName: path });
}

function toGatewayConfig(file: FileConfig, baseDir: string): GatewayConfig {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const names = new Set<string>();
  const serviceOwner = new Map<string, string>();
  const upstreams = file.upstreams.map((up, i): UpstreamConfig => {
    if (names.has(up.name)) throw new ConfigError(`upstreams[${i}].name`, `duplicate upstream name "${up.name}"`);
    names.add(up.name);
    for (const [j, service] of up.services.entries()) {
      const owner = serviceOwner.get(service);
      if (owner !== undefined) {
        throw new ConfigError(`upstreams[${i}].services[${j}]`, `${service} is already served by upstream "${owner}"`);
      }
      serviceOwner.set(service, up.name);
    }
    if (up.retry.backoff.max < up.retry.backoff.base) {
      throw new ConfigError(`upstreams[${i}].retry.backoff.max`, "must not be less than backoff.base");
    }
    return {
      name: up.name,
      services: up.services,
      discovery: toDiscovery(up.discovery, `upstreams[${i}].discovery`, abs),
      balancer: up.balancer,
      timeoutMs: up.timeout,
      warm: up.warm,
      idleTimeoutMs: up.idleTimeout,
      keepalive: { intervalMs: up.keepalive.interval, timeoutMs: up.keepalive.timeout },
      retry: {
        attempts: up.retry.attempts,
        on: up.retry.on,
        methods: up.retry.methods,
        budgetPercent: up.retry.budget,
        backoffBaseMs: up.retry.backoff.base,
        backoffMaxMs: up.retry.backoff.max,
      },
      health:
        up.health === undefined
          ? undefined
          : {
              service: up.health.service,
              intervalMs: up.health.interval,
              timeoutMs: up.health.timeout,
              healthyThreshold: up.health.healthyThreshold,
              unhealthyThreshold: up.health.unhealthyThreshold,
            },
      outlier: {
        consecutiveFailures: up.outlier.consecutiveFailures,
        baseEjectionMs: up.outlier.baseEjectionTime,
        maxEjectionMs: up.outlier.maxEjectionTime,
        maxEjectionPercent: up.outlier.maxEjectionPercent,
      },
    };
  });
  return {
    listen: file.listen,
    admin: file.admin,
    descriptors: file.descriptors.map(abs),
    upstreams,
    json: file.json,
    limits: file.limits,
    cors:
      file.cors === undefined
        ? undefined
        : {
            allowOrigins: file.cors.allowOrigins,
            allowHeaders: file.cors.allowHeaders,
            exposeHeaders: file.cors.exposeHeaders,
            maxAgeSeconds: Math.round(file.cors.maxAge / 1000),
          },
    shutdown: { drainTimeoutMs: file.shutdown.drainTimeout },
    workers: file.workers,
  };
}

function toDiscovery(
  d: FileConfig["upstreams"][number]["discovery"],
  key: string,
  abs: (p: string) => string,
): DiscoveryConfig {
  const kinds = (["static", "dns", "kubernetes"] as const).filter((k) => d[k] !== undefined);
  if (kinds.length !== 1) {
    const why = kinds.length === 0 ? "none is set" : `${kinds.join(" and ")} are both set`;
    throw new ConfigError(key, `needs exactly one of static, dns, kubernetes (${why})`);
  }
  if (d.static !== undefined) {
    return { kind: "static", endpoints: d.static.map((hp) => ({ address: hp.host, port: hp.port })) };
  }
  if (d.dns !== undefined) {
    if (d.dns.host === undefined && d.dns.srv === undefined) throw new ConfigError(`${key}.dns.host`, "is required (or srv)");
    if (d.dns.srv === undefined && d.dns.port === undefined) throw new ConfigError(`${key}.dns.port`, "is required without srv");
    return {
      kind: "dns",
      host: d.dns.host ?? "",
      port: d.dns.port ?? 0,
      refreshMs: d.dns.refresh,
      srv: d.dns.srv,
      servers: d.dns.servers,
    };
  }
  const k = d.kubernetes!;
  return {
    kind: "kubernetes",
    namespace: k.namespace,
    service: k.service,
    port: k.port,
    kubeconfig: k.kubeconfig === undefined ? undefined : abs(k.kubeconfig),
    api: k.api,
    zone: k.zone,
  };
}

function keyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) out += typeof part === "number" ? `[${part}]` : out === "" ? String(part) : `.${String(part)}`;
  return out === "" ? "(top level)" : out;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  if (issue.code === "unrecognized_keys") {
    const more = issue.keys.length > 1 ? ` (also ${issue.keys.slice(1).join(", ")})` : "";
    return `unknown key${more}`;
  }
  const got = valueAt(raw, issue.path);
  if (issue.code === "invalid_value" && "values" in issue) {
    return `must be one of ${issue.values.join(", ")} (got ${JSON.stringify(got)})`;
  }
  if (issue.code === "invalid_type" && got === undefined) return "is required";
  const suffix = got === undefined || typeof got === "object" ? "" : ` (got ${JSON.stringify(got)})`;
  return `${issue.message}${suffix}`;
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let v = raw;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}
