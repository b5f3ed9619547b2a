/**
 * The load generators. HTTP front doors get `wrk` (HTTP/1.1 keep-alive, one thread so that it
 * takes as little as possible of the 2 cores from what is measured); the backend alone gets
 * `h2load` (nghttp2), which sends the same pre-encoded gRPC frame over h2c with the same number
 * of connections, one request in flight on each — the wrk-like load for the direct leg.
 */
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { BenchRequest } from "./requests.ts";

const run = promisify(execFile);

export interface LoadResult {
  readonly requests: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Socket errors, timeouts, and answers that were not 2xx. (h2load cannot see grpc-status: the
   * run checks each frame once through the minimal proxy, which answers 502 unless it is 0.) */
  readonly failures: number;
}

export interface LoadSpec {
  readonly request: BenchRequest;
  readonly connections: number;
  readonly seconds: number;
  /** A folder for the request files the tools read. */
  readonly workDir: string;
}

const luaScript = new URL("./wrk-report.lua", import.meta.url).pathname;

/** `wrk` against an HTTP front door at `baseUrl` (http://host:port). */
export async function runWrk(baseUrl: string, spec: LoadSpec): Promise<LoadResult> {
  const { request } = spec;
  const bodyFile = join(spec.workDir, `${request.name}.json`);
  if (request.body !== undefined) writeFileSync(bodyFile, request.body);
  const { stdout } = await run(
    "wrk",
    ["-t1", `-c${spec.connections}`, `-d${spec.seconds}s`, "--timeout", "10s", "-s", luaScript, baseUrl + request.path],
    {
      env: { ...process.env, BENCH_METHOD: request.method, BENCH_BODY_FILE: request.body === undefined ? "" : bodyFile },
      maxBuffer: 1 << 20,
    },
  );
  const line = stdout.split("\n").find((l) => l.startsWith("BENCH_JSON "));
  if (line === undefined) throw new Error(`wrk printed no summary:\n${stdout}`);
  const r = JSON.parse(line.slice("BENCH_JSON ".length)) as {
    requests: number;
    durationUs: number;
    errors: number;
    non2xx: number;
    p50Us: number;
    p99Us: number;
  };
  return {
    requests: r.requests,
    rps: r.requests / (r.durationUs / 1e6),
    p50Ms: r.p50Us / 1000,
    p99Ms: r.p99Us / 1000,
    failures: r.errors + r.non2xx,
  };
}

/** `h2load` sending the request's gRPC frame straight to a backend at host:port. */
export async function runH2load(backend: string, spec: LoadSpec): Promise<LoadResult> {
  const { request } = spec;
  const frameFile = join(spec.workDir, `${request.name}.frame`);
  const logFile = join(spec.workDir, `h2load-${request.name}-${spec.connections}.log`);
  writeFileSync(frameFile, request.frame);
  const { stdout } = await run(
    "h2load",
    [
      ...["-t1", `-c${spec.connections}`, "-m1", `-D${spec.seconds}`],
      ...["-d", frameFile, "-H", "content-type: application/grpc", "-H", "te: trailers"],
      `--log-file=${logFile}`,
      `http://${backend}${request.grpcPath}`,
    ],
    { maxBuffer: 1 << 22 },
  );
  const rps = Number(stdout.match(/finished in [\d.]+s, ([\d.]+) req\/s/)?.[1]);
  const counts = stdout.match(/requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded/);
  if (!Number.isFinite(rps) || counts === null) throw new Error(`h2load printed no summary:\n${stdout}`);
  // One line per request: start time (µs since the epoch), HTTP status, duration (µs).
  const durations = readFileSync(logFile, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => Number(l.split("\t")[2]))
    .sort((a, b) => a - b);
  rmSync(logFile, { force: true });
  return {
    requests: Number(counts[2]),
    rps,
    p50Ms: percentile(durations, 50) / 1000,
    p99Ms: percentile(durations, 99) / 1000,
    failures: Number(counts[2]) - Number(counts[3]),
  };
}

/** Nearest-rank percentile of ascending values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}
