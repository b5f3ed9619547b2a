/**
 * Unary call throughput of gRPC clients against the same in-process server: raw node:http2
 * (the floor), grpc-edge's EndpointTransport alone and behind its UpstreamPool, and
 * connect-node's createGrpcTransport.
 * 5,000 sequential calls, then 5,000 calls 20 at a time; rps and the ratio to raw.
 *
 *   node bench/transport.ts [--server raw|connect|both] [--calls 5000] [--concurrency 20] [--rounds 3]
 *   deno run -A bench/transport.ts
 */
import { connect, createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { toBinary, type Message } from "@bufbuild/protobuf";
import type { Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EndpointTransport } from "../src/upstream/endpoint-transport.ts";
import { encodeFrame } from "../src/upstream/grpc-wire.ts";
import { UpstreamPool } from "../src/upstream/pool.ts";
import { EndpointSessions } from "../src/upstream/session.ts";
import { input, mirrorMethods, startMirrorBackend } from "../tests/backends/mirror-connect.ts";

const args = new Map<string, string>();
const argv = globalThis.process?.argv.slice(2) ?? [];
for (let i = 0; i + 1 < argv.length; i += 2) args.set(argv[i].replace(/^--/, ""), argv[i + 1]);
const calls = Number(args.get("calls") ?? 5000);
const concurrency = Number(args.get("concurrency") ?? 20);
const rounds = Number(args.get("rounds") ?? 3);
const servers = (args.get("server") ?? "both") === "both" ? ["raw", "connect"] : [args.get("server")!];

const method = mirrorMethods.echoPost;
const request = input(method, { s: "hello", i64: 42n, tags: ["a", "b"] });
const requestFrame = encodeFrame(toBinary(method.input, request as Message));
const path = `/${method.parent.typeName}/${method.name}`;

/** A gRPC echo server on bare node:http2: answers every call with the request frame. */
async function startRawServer(): Promise<{ port: number; stop(): Promise<void> }> {
  const server: Http2Server = createServer();
  server.on("stream", (stream) => {
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(Buffer.concat(chunks));
    });
    stream.on("error", () => {});
  });
  server.on("session", (s) => s.on("error", () => {}));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

type Client = { name: string; call(): Promise<unknown>; close(): Promise<void> };

function rawClient(port: number): Client {
  const session = connect(`http://127.0.0.1:${port}`);
  return {
    name: "raw node:http2",
    call: () =>
      new Promise<void>((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc+proto",
          te: "trailers",
        });
        let bytes = 0;
        let status: unknown;
        stream.on("data", (c: Buffer) => (bytes += c.length));
        stream.on("trailers", (t) => (status = t["grpc-status"]));
        stream.on("error", reject);
        stream.on("close", () =>
          status === "0" && bytes > 0 ? resolve() : reject(new Error(`rst ${stream.rstCode}`)),
        );
        stream.end(requestFrame);
      }),
    close: () => new Promise((resolve) => session.close(() => resolve())),
  };
}

function transportClient(name: string, transport: Transport, close: () => Promise<void>): Client {
  return {
    name,
    call: () => transport.unary(method, undefined, 10_000, undefined, request as never),
    close,
  };
}

function edgeClient(port: number): Client {
  const sessions = new EndpointSessions({ address: "127.0.0.1", port });
  return transportClient("grpc-edge EndpointTransport", new EndpointTransport({ sessions }), () =>
    sessions.close(true),
  );
}

function poolClient(port: number): Client {
  const pool = new UpstreamPool({ name: "bench", balancer: "round_robin", timeoutMs: 10_000 });
  pool.update([{ address: "127.0.0.1", port, ready: true, serving: true, terminating: false }]);
  return transportClient("grpc-edge UpstreamPool (1 endpoint)", pool, () => pool.close(true));
}

function connectClient(port: number): Client {
  const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` });
  return transportClient("connect-node createGrpcTransport", transport, async () => {});
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function sequential(client: Client, n: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < n; i++) await client.call();
  return n / ((performance.now() - start) / 1000);
}

async function concurrent(client: Client, n: number, width: number): Promise<number> {
  let left = n;
  const worker = async () => {
    while (left-- > 0) await client.call();
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: width }, worker));
  return n / ((performance.now() - start) / 1000);
}

const runtime = "Deno" in globalThis ? `Deno ${(globalThis as any).Deno.version.deno}` : `Node ${process.version}`;
console.log(`${runtime}, ${calls} unary calls sequential, then ${concurrency} at a time; median of ${rounds} rounds`);
for (const kind of servers) {
  const server =
    kind === "raw"
      ? await startRawServer()
      : await startMirrorBackend().then((b) => ({ port: b.port, stop: () => b.stop() }));
  console.log(`\nserver: ${kind === "raw" ? "raw node:http2 gRPC echo" : "connect-node (connectNodeAdapter)"}`);
  // Clients take turns over several rounds and the median is kept, so that JIT warm-up and
  // the noise of a shared 2-core machine do not favour whoever runs last.
  const clients = [rawClient, edgeClient, poolClient, connectClient].map((make) => make(server.port));
  for (const client of clients) await sequential(client, Math.min(1000, calls));
  const samples = clients.map(() => ({ seq: [] as number[], par: [] as number[] }));
  for (let round = 0; round < rounds; round++) {
    for (const [i, client] of clients.entries()) {
      samples[i].seq.push(await sequential(client, calls));
      samples[i].par.push(await concurrent(client, calls, concurrency));
    }
  }
  const rows = clients.map((c, i) => ({ name: c.name, seq: median(samples[i].seq), par: median(samples[i].par) }));
  for (const client of clients) await client.close();
  const raw = rows[0];
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(36)} sequential ${r.seq.toFixed(0).padStart(6)} rps (${(r.seq / raw.seq).toFixed(2)}x raw)` +
        `   ${concurrency}-way ${r.par.toFixed(0).padStart(6)} rps (${(r.par / raw.par).toFixed(2)}x raw)`,
    );
  }
  await server.stop();
}
