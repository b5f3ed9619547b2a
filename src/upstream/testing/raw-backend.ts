/**
 * A mirror.v1.Mirror stand-in on bare node:http2, for what the connect-node mirror backend
 * cannot show: the HTTP/2 settings it announces (MAX_CONCURRENT_STREAMS), the PINGs and
 * connections it sees, answering UNAVAILABLE on demand, and a grpc.health.v1 Health service
 * whose status the test sets. It answers WhoAmI (with its own address) and EchoPost (the
 * request back), each after `delayMs`; other methods are UNIMPLEMENTED.
 */
import { createServer, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream, type Settings } from "node:http2";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { HealthCheckResponseSchema } from "../../../gen/grpc/health/v1/health_pb.ts";
import { mirrorMethods } from "../../../tests/backends/mirror-connect.ts";
import { encodeFrame } from "../grpc-wire.ts";

export interface RawBackendOptions {
  readonly port?: number;
  readonly settings?: Settings;
  /** Mirror calls answer after this long. */
  readonly delayMs?: number;
}

export interface RawBackend {
  readonly address: string;
  readonly port: number;
  readonly target: string;
  /** While true, every mirror call answers UNAVAILABLE (trailers-only). */
  failing: boolean;
  /** What Health/Check answers (grpc.health.v1 ServingStatus number: 1 SERVING, 2 NOT_SERVING). */
  healthStatus: number;
  /** Mirror calls received (health checks not included). */
  readonly calls: number;
  readonly healthChecks: number;
  /** PING frames received from clients. */
  readonly pings: number;
  /** Connections accepted. */
  readonly connections: number;
  /** The most mirror calls one connection had open at once. */
  readonly maxConcurrentPerConnection: number;
  stop(): Promise<void>;
}

const identity = mirrorMethods.whoAmI.output;
const grpcHeaders = { ":status": 200, "content-type": "application/grpc+proto" };

export async function startRawBackend(options: RawBackendOptions = {}): Promise<RawBackend> {
  const sessions = new Set<ServerHttp2Session>();
  const open = new Map<object, number>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let target = "";
  const state = {
    failing: false,
    healthStatus: 1,
    calls: 0,
    healthChecks: 0,
    pings: 0,
    connections: 0,
    maxConcurrentPerConnection: 0,
  };

  const answer = (stream: ServerHttp2Stream, frame: Uint8Array | undefined, status: number, message = ""): void => {
    if (stream.destroyed) return;
    if (frame === undefined) {
      stream.respond({ ...grpcHeaders, "grpc-status": String(status), "grpc-message": message }, { endStream: true });
      return;
    }
    stream.respond(grpcHeaders, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(frame);
  };

  const server: Http2Server = createServer({ settings: options.settings ?? {} });
  server.on("session", (session) => {
    state.connections++;
    sessions.add(session);
    open.set(session, 0);
    session.on("ping", () => state.pings++);
    session.on("close", () => {
      sessions.delete(session);
      open.delete(session);
    });
    session.on("error", () => {});
  });
  server.on("stream", (stream, headers) => {
    const path = String(headers[":path"]);
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", () => {});
    stream.on("end", () => {
      if (path === "/grpc.health.v1.Health/Check") {
        state.healthChecks++;
        const response = create(HealthCheckResponseSchema, { status: state.healthStatus });
        answer(stream, encodeFrame(toBinary(HealthCheckResponseSchema, response)), 0);
        return;
      }
      state.calls++;
      const session = stream.session!;
      const now = (open.get(session) ?? 0) + 1;
      open.set(session, now);
      state.maxConcurrentPerConnection = Math.max(state.maxConcurrentPerConnection, now);
      const reply = () => {
        open.set(session, (open.get(session) ?? 1) - 1);
        if (state.failing) answer(stream, undefined, 14, "failing on purpose");
        else if (path.endsWith("/WhoAmI")) {
          const message = create(identity, { backend: target });
          answer(stream, encodeFrame(toBinary(identity, message)), 0);
        } else if (path.endsWith("/EchoPost")) answer(stream, Buffer.concat(chunks), 0);
        else answer(stream, undefined, 12, `${path} is not implemented here`);
      };
      if (!options.delayMs) return reply();
      const timer = setTimeout(() => {
        timers.delete(timer);
        reply();
      }, options.delayMs);
      timers.add(timer);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  target = `127.0.0.1:${port}`;

  return {
    address: "127.0.0.1",
    port,
    target,
    get failing() {
      return state.failing;
    },
    set failing(value: boolean) {
      state.failing = value;
    },
    get healthStatus() {
      return state.healthStatus;
    },
    set healthStatus(value: number) {
      state.healthStatus = value;
    },
    get calls() {
      return state.calls;
    },
    get healthChecks() {
      return state.healthChecks;
    },
    get pings() {
      return state.pings;
    },
    get connections() {
      return state.connections;
    },
    get maxConcurrentPerConnection() {
      return state.maxConcurrentPerConnection;
    },
    stop() {
      for (const t of timers) clearTimeout(t);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) s.destroy();
      return closed;
    },
  };
}
