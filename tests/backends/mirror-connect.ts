/**
 * An in-process mirror.v1.Mirror backend (connect-node on node:http2) for the upstream tests
 * and the transport benchmark: echo, streams with an interval, failures with details, slow
 * calls, and hooks to send GOAWAY or cut every connection.
 */
import { readFileSync } from "node:fs";
import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import {
  create,
  createFileRegistry,
  fromBinary,
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  type DescService,
  type FileRegistry,
  type Message,
} from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";

/** The mirror descriptors, loaded from gen/mirror.binpb (the generated TS uses enums, which Node cannot strip). */
export const mirrorRegistry: FileRegistry = createFileRegistry(
  fromBinary(FileDescriptorSetSchema, readFileSync(new URL("../../gen/mirror.binpb", import.meta.url))),
);

export const mirrorService: DescService = mirrorRegistry.getService("mirror.v1.Mirror")!;

const methods = Object.fromEntries(mirrorService.methods.map((m) => [m.name, m]));

export const mirrorMethods = {
  echoPost: methods.EchoPost as DescMethodUnary,
  fail: methods.Fail as DescMethodUnary,
  slow: methods.Slow as DescMethodUnary,
  whoAmI: methods.WhoAmI as DescMethodUnary,
  stream: methods.Stream as DescMethodStreaming,
  collect: methods.Collect as DescMethodStreaming,
};

/** A message of the method's input type, from a JSON-like init object. */
export function input(method: { input: DescMessage }, init: Record<string, unknown> = {}): Message {
  return create(method.input, init as never) as Message;
}

export interface MirrorBackend {
  readonly address: string;
  readonly port: number;
  /** `host:port`. */
  readonly target: string;
  /** Calls that started, per method name. */
  readonly started: Map<string, number>;
  /** Calls whose handler saw its signal abort (client cancel, deadline, connection cut). */
  readonly aborted: Map<string, number>;
  /** Resolves the next time a handler of `method` sees its signal abort. */
  nextAbort(method: string): Promise<void>;
  /** Sends GOAWAY on every open connection (in-flight calls finish), keeps listening. */
  goaway(): void;
  /** Destroys every open connection, cutting in-flight calls. */
  cutConnections(): void;
  /** Stops listening; `graceful` lets in-flight calls finish, otherwise connections are cut. */
  stop(graceful?: boolean): Promise<void>;
}

interface BackendOptions {
  readonly port?: number;
  /** What WhoAmI reports; defaults to the listen address. */
  readonly name?: string;
  /** WhoAmI answers after this long (a slow backend for the balancing tests). */
  readonly whoAmIDelayMs?: number;
}

export async function startMirrorBackend(options: BackendOptions = {}): Promise<MirrorBackend> {
  const started = new Map<string, number>();
  const aborted = new Map<string, number>();
  const abortWaiters = new Map<string, Array<() => void>>();
  let name = options.name ?? "";

  /** Counts the call, and its abort if that comes before the handler is done (connect-node
   * aborts every handler's signal once the call is over). Returns the "handler done" mark. */
  const track = (method: string, ctx: HandlerContext): (() => void) => {
    started.set(method, (started.get(method) ?? 0) + 1);
    let done = false;
    ctx.signal.addEventListener("abort", () => {
      if (done) return;
      aborted.set(method, (aborted.get(method) ?? 0) + 1);
      for (const wake of abortWaiters.get(method) ?? []) wake();
      abortWaiters.delete(method);
    });
    return () => (done = true);
  };
  const echoMetadata = (ctx: HandlerContext): void => {
    ctx.responseHeader.set("x-backend", name);
    const echo = ctx.requestHeader.get("x-echo");
    if (echo !== null) {
      ctx.responseHeader.set("x-echo", echo);
      ctx.responseTrailer.set("x-echo-trailer", echo);
    }
  };
  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new ConnectError("aborted", Code.Canceled));
      });
    });

  const everything = mirrorRegistry.getMessage("mirror.v1.Everything")!;
  const identity = mirrorRegistry.getMessage("mirror.v1.Identity")!;
  type Req = Record<string, any>;
  const impl = {
    echoPost(req: Req, ctx: HandlerContext) {
      const done = track("EchoPost", ctx);
      echoMetadata(ctx);
      done();
      return req;
    },
    async slow(req: Req, ctx: HandlerContext) {
      const done = track("Slow", ctx);
      echoMetadata(ctx);
      try {
        await sleep(req.millis, ctx.signal);
        return create(everything, { s: `slept ${req.millis}` });
      } finally {
        done();
      }
    },
    fail(req: Req, ctx: HandlerContext) {
      const done = track("Fail", ctx);
      echoMetadata(ctx);
      done();
      throw new ConnectError(req.message, req.code, { "x-fail": "yes" }, [
        {
          desc: BadRequestSchema,
          value: { fieldViolations: [{ field: "code", description: `asked for ${req.code}` }] },
        },
      ]);
    },
    async whoAmI(_req: Req, ctx: HandlerContext) {
      const done = track("WhoAmI", ctx);
      const metadata: Record<string, string> = {};
      ctx.requestHeader.forEach((v, k) => (metadata[k] = v));
      if (options.whoAmIDelayMs) await sleep(options.whoAmIDelayMs, ctx.signal);
      done();
      return create(identity, { backend: name, metadata });
    },
    async *stream(req: Req, ctx: HandlerContext) {
      const done = track("Stream", ctx);
      echoMetadata(ctx);
      try {
        for (let i = 0; i < req.count; i++) {
          if (req.failAfter > 0 && i === req.failAfter) {
            throw new ConnectError(`failing after ${i}`, req.failCode || Code.Internal);
          }
          if (i > 0 && req.intervalMs > 0) await sleep(req.intervalMs, ctx.signal);
          yield create(everything, { i32: i, s: name });
        }
      } finally {
        done();
      }
    },
    async collect(reqs: AsyncIterable<Req>, ctx: HandlerContext) {
      const done = track("Collect", ctx);
      echoMetadata(ctx);
      try {
        const tags: string[] = [];
        for await (const r of reqs) tags.push(r.s);
        return create(everything, { tags, i32: tags.length });
      } finally {
        done();
      }
    },
  };

  const sessions = new Set<ServerHttp2Session>();
  const server: Http2Server = createServer(
    connectNodeAdapter({ routes: (router) => router.service(mirrorService, impl as never) }),
  );
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const target = `127.0.0.1:${port}`;
  if (name === "") name = target;

  return {
    address: "127.0.0.1",
    port,
    target,
    started,
    aborted,
    nextAbort(method) {
      return new Promise((resolve) => {
        const list = abortWaiters.get(method) ?? [];
        list.push(resolve);
        abortWaiters.set(method, list);
      });
    },
    goaway() {
      for (const s of sessions) s.close();
    },
    cutConnections() {
      for (const s of sessions) s.destroy();
    },
    stop(graceful = false) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sessions) {
        if (graceful) s.close();
        else s.destroy();
      }
      return closed;
    },
  };
}

/** A loopback port nothing listens on (connecting to it is refused). */
export async function freePort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
