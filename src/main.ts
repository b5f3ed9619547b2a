/**
 * The CLI, shared by the Node and Deno entry points: parse arguments, load the config (or start
 * the embedded demo), build the gateway, open the listeners through the runtime adapter, and
 * drain on SIGTERM/SIGINT. Exit codes: 0 clean stop, 2 bad invocation/config/descriptors, 1 other.
 */
import type { Context, Hono } from "hono";
import {
  ConfigError,
  loadConfigFile,
  parseHostPort,
  type GatewayConfig,
  type HostPort,
} from "./config/index.ts";
import { createGateway, type Gateway, type Logger } from "./gateway.ts";
import { DescriptorError } from "./schema/descriptors.ts";
import { RouteCompileError, type HeaderFields } from "./transcode/transcoder.ts";

export interface Listener {
  /** e.g. http://127.0.0.1:8080 (the real port when 0 was asked for). */
  readonly url: string;
  /** Stop accepting; resolve when in-flight requests have finished or `deadlineMs` passed. */
  close(deadlineMs: number): Promise<void>;
}

export interface RuntimeAdapter {
  readonly name: "node" | "deno";
  readonly args: readonly string[];
  listen(app: Hono, at: HostPort): Promise<Listener>;
  remoteAddress(c: Context): string | undefined;
  /** The request headers as the runtime parsed them, where it has them (a faster read). */
  headerFields?(c: Context): HeaderFields | undefined;
  onShutdownSignal(handler: (signal: string) => void): void;
  exit(code: number): never;
  /** Several gateway processes on the same listeners; absent where the runtime cannot share them. */
  readonly workers?: Workers;
}

/**
 * `workers: N`: a supervisor process starts N workers that each run this same command line as a
 * whole gateway (own discovery, pools and admin listener), all sharing the listening sockets.
 */
export interface Workers {
  /** Set in a worker: its number (1..N), for log lines. */
  readonly workerId: number | undefined;
  /** Supervisor: starts the workers, prints one listening line once all listen, forwards SIGTERM/SIGINT, exits when they have. */
  supervise(count: number, drainTimeoutMs: number): Promise<never>;
  /** Worker: hands its listening line to the supervisor instead of printing it. */
  reportListening(line: string): void;
}

const usage = `usage: grpc-edge [--config FILE]

  --config FILE   run the gateway from a YAML or JSON config file
  --listen H:P    override the config's public listener (e.g. 127.0.0.1:0 for any free port)
  --admin H:P     override the config's admin listener
  (no arguments)  run the embedded demo: three demo gRPC backends and the gateway on loopback
  --help          show this help`;

export async function main(runtime: RuntimeAdapter): Promise<void> {
  const worker = runtime.workers?.workerId === undefined ? "" : `worker ${runtime.workers.workerId}: `;
  const logger: Logger = {
    info: (m) => console.log(`grpc-edge: ${worker}${m}`),
    warn: (m) => console.error(`grpc-edge: ${worker}warning: ${m}`),
  };
  const args = parseArgs(runtime.args);
  if ("error" in args) {
    console.error(`grpc-edge: ${args.error}\n${usage}`);
    return runtime.exit(2);
  }
  if (args.help) {
    console.log(usage);
    return runtime.exit(0);
  }

  let config: GatewayConfig;
  let gateway: Gateway;
  let demo: { stop(): Promise<void>; banner(publicUrl: string, adminUrl: string): string } | undefined;
  try {
    if (args.config !== undefined) {
      config = await loadConfigFile(args.config);
      const workers = runtime.workers;
      if (workers !== undefined && workers.workerId === undefined && config.workers > 1) {
        return await workers.supervise(config.workers, config.shutdown.drainTimeoutMs);
      }
      gateway = await createGateway(config, { remoteAddress: runtime.remoteAddress, headerFields: runtime.headerFields, logger });
    } else {
      const { startDemo } = await import("./demo/demo.ts");
      const started = await startDemo();
      demo = started;
      config = started.config;
      gateway = await createGateway(config, { remoteAddress: runtime.remoteAddress, headerFields: runtime.headerFields, logger }, started.registry);
    }
  } catch (e) {
    if (e instanceof ConfigError || e instanceof DescriptorError || e instanceof RouteCompileError) {
      console.error(`grpc-edge: ${e.message}`);
      await demo?.stop();
      return runtime.exit(2);
    }
    throw e;
  }

  config = {
    ...config,
    listen: args.listen ?? config.listen,
    admin: args.admin ?? config.admin,
  };
  gateway.start();
  let publicListener: Listener;
  let adminListener: Listener;
  try {
    publicListener = await runtime.listen(gateway.publicApp, config.listen);
    adminListener = await runtime.listen(gateway.adminApp, config.admin);
  } catch (e) {
    console.error(`grpc-edge: cannot listen: ${(e as Error).message}`);
    await gateway.close(false);
    await demo?.stop();
    return runtime.exit(1);
  }
  // The banner comes first: the listening line is what scripts wait for.
  if (demo !== undefined) console.log(demo.banner(publicListener.url, adminListener.url));
  const listening = `listening on ${publicListener.url} (admin ${adminListener.url}), ${gateway.routes.length} routes, runtime ${runtime.name}`;
  if (runtime.workers?.workerId !== undefined) runtime.workers.reportListening(listening);
  else logger.info(listening);

  let stopping = false;
  runtime.onShutdownSignal(async (signal) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}: draining (readiness 503, no new connections, in-flight calls finish)`);
    gateway.beginShutdown();
    const deadline = Date.now() + config.shutdown.drainTimeoutMs;
    await publicListener.close(deadline);
    // Upstream streams still open at the deadline (a client that vanished mid-stream, a hung
    // backend) are cut: the drain timeout is the contract, not the slowest call.
    const drained = await Promise.race([
      gateway.close(true).then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))),
    ]);
    if (!drained) {
      logger.warn("drain timeout reached: cutting the upstream calls still open");
      await gateway.close(false);
    }
    await adminListener.close(deadline);
    await demo?.stop();
    logger.info("stopped");
    runtime.exit(0);
  });
}

interface Args {
  config?: string;
  listen?: HostPort;
  admin?: HostPort;
  help?: boolean;
}

function parseArgs(argv: readonly string[]): Args | { error: string } {
  const out: Args = {};
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value: string | undefined;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) [arg, value] = [arg.slice(0, eq), arg.slice(eq + 1)];
    if (arg === "--help" || arg === "-h") {
      out.help = true;
      continue;
    }
    if (!["--config", "--listen", "--admin"].includes(arg)) {
      return { error: `unknown argument ${JSON.stringify(argv[i])}` };
    }
    value ??= argv[++i];
    if (value === undefined || value === "") return { error: `${arg} needs a value` };
    try {
      if (arg === "--config") out.config = value;
      else if (arg === "--listen") out.listen = parseHostPort(value);
      else out.admin = parseHostPort(value);
    } catch (e) {
      return { error: `${arg}: ${(e as Error).message}` };
    }
  }
  return out;
}
