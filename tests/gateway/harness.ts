/**
 * Runs the real gateway as a child process (the CLI users run, `bin/grpc-edge.js`, built into
 * dist/ by `npm run build`) against backends on loopback, with a config written to a temp dir.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startProcess } from "../support/process.ts";

export const root = join(import.meta.dirname, "..", "..");
export const mirrorDescriptors = join(root, "gen", "mirror.binpb");

export interface RunningGateway {
  /** http://127.0.0.1:PORT */
  readonly url: string;
  readonly admin: string;
  output(): string;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface UpstreamSpec {
  readonly name?: string;
  readonly services?: readonly string[];
  readonly static: readonly string[];
  readonly [key: string]: unknown;
}

/** A config object for the mirror API; `extra` is merged at the top level. */
export function mirrorConfig(upstream: UpstreamSpec, extra: Record<string, unknown> = {}) {
  const { static: endpoints, name, services, ...rest } = upstream;
  return {
    listen: "127.0.0.1:0",
    admin: "127.0.0.1:0",
    descriptors: [mirrorDescriptors],
    upstreams: [
      {
        name: name ?? "mirror",
        services: services ?? ["mirror.v1.Mirror"],
        discovery: { static: endpoints },
        ...rest,
      },
    ],
    ...extra,
  };
}

/** Writes `config` (object → JSON, string → as is) to a temp dir; returns its path and a cleanup. */
export function writeConfig(config: object | string, fileName = "grpc-edge.yaml") {
  const dir = mkdtempSync(join(tmpdir(), "grpc-edge-test-"));
  const path = join(dir, fileName);
  writeFileSync(path, typeof config === "string" ? config : JSON.stringify(config, null, 2));
  return { dir, path, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

const listeningLine = /listening on (http:\/\/\S+) \(admin (http:\/\/\S+)\)/;

/** Starts `node bin/grpc-edge.js <args>` and waits for its listening line. */
export async function startGateway(args: readonly string[], env: Record<string, string> = {}) {
  const proc = await startProcess(process.execPath, [join(root, "bin", "grpc-edge.js"), ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    ready: listeningLine,
    timeoutMs: 20_000,
  });
  return {
    url: proc.match[1],
    admin: proc.match[2],
    output: proc.output,
    stop: () => proc.stop("SIGTERM"),
  } satisfies RunningGateway;
}

/** Starts the gateway on a config object; the temp config is removed on stop. */
export async function startGatewayWithConfig(config: object): Promise<RunningGateway> {
  const file = writeConfig(config);
  try {
    const gw = await startGateway(["--config", file.path]);
    return {
      ...gw,
      stop: async () => {
        try {
          return await gw.stop();
        } finally {
          file.remove();
        }
      },
    };
  } catch (e) {
    file.remove();
    throw e;
  }
}

/** Polls `url` until it answers `status` (bounded). */
export async function waitForStatus(url: string, status: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 0;
  while (Date.now() < deadline) {
    try {
      last = (await fetch(url)).status;
      if (last === status) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms (last ${last})`);
}

/** `fetch` with a bounded wait; the body as text and, when it parses, as JSON. */
export async function call(url: string, init: RequestInit = {}) {
  const res = await fetch(url, { ...init, signal: init.signal ?? AbortSignal.timeout(10_000) });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}
