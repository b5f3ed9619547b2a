/**
 * The mirror.v1.Mirror backend on connect-node (node:http2), in process. `startMirrorConnect` is
 * the reference behaviour the gateway tests use; `startMirrorBackend` is the same server with the
 * hooks the upstream tests and the transport benchmark need (call counts, GOAWAY, cut
 * connections, a slow WhoAmI) and the wire view they pin.
 */
import { createServer, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import type { DescService, Message } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  createMirrorBehaviour,
  gracefulStopLimitMs,
  mirrorService,
  type MirrorBehaviour,
  type MirrorBehaviourOptions,
  type MirrorCall,
  type RunningMirror,
  type StartMirrorOptions,
} from "./mirror-behaviour.ts";

export { freePort } from "../support/ports.ts";
export { input, mirrorMethods, mirrorRegistry, mirrorService } from "./mirror-behaviour.ts";

/** The reference mirror backend on connect-node, listening on 127.0.0.1:0. */
export async function startMirrorConnect(options: StartMirrorOptions = {}): Promise<RunningMirror> {
  const served = await serve(0, (address) => ({ id: options.id ?? address }));
  return {
    id: served.behaviour.id,
    address: served.target,
    port: served.port,
    cancelledCalls: () => served.behaviour.ledger.total(),
    stop: ({ graceful = true } = {}) => served.stop(graceful),
  };
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

/** The mirror backend with the upstream tests' hooks; WhoAmI shows every header on the wire. */
export async function startMirrorBackend(options: BackendOptions = {}): Promise<MirrorBackend> {
  const served = await serve(options.port ?? 0, (address) => ({
    id: options.name ?? address,
    whoAmIDelayMs: options.whoAmIDelayMs,
    whoAmIShowsProtocolHeaders: true,
  }));
  const { ledger } = served.behaviour;
  return {
    address: "127.0.0.1",
    port: served.port,
    target: served.target,
    started: ledger.started,
    aborted: ledger.cancelled,
    nextAbort: (method) => ledger.nextCancel(method),
    goaway: served.goaway,
    cutConnections: served.cutConnections,
    stop: (graceful = false) => served.stop(graceful),
  };
}

/** Listens on 127.0.0.1:`port`, then serves the behaviour made for the address it got. */
async function serve(port: number, behaviourFor: (address: string) => MirrorBehaviourOptions) {
  const server = createServer();
  const sessions = new Set<ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {});
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const target = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const behaviour = createMirrorBehaviour(behaviourFor(target));
  server.on("request", connectNodeAdapter({ routes: (router) => router.service(mirrorService, connectImpl(behaviour)) }));

  const goaway = () => {
    for (const s of sessions) s.close();
  };
  const cutConnections = () => {
    for (const s of sessions) s.destroy();
  };
  return {
    behaviour,
    target,
    port: (server.address() as AddressInfo).port,
    goaway,
    cutConnections,
    async stop(graceful: boolean) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      if (!graceful) {
        cutConnections();
        return closed;
      }
      goaway();
      const limit = setTimeout(cutConnections, gracefulStopLimitMs);
      try {
        await closed;
      } finally {
        clearTimeout(limit);
      }
    },
  };
}

/** A connect service implementation: each method hands its call to the behaviour. */
function connectImpl(behaviour: MirrorBehaviour): Partial<ServiceImpl<DescService>> {
  const impl: Record<string, unknown> = {};
  for (const method of mirrorService.methods) {
    const begin = (ctx: HandlerContext): MirrorCall => {
      const call: MirrorCall = { signal: ctx.signal, headers: [...ctx.requestHeader] };
      const { header, trailer } = behaviour.responseMetadata(method.name, call);
      for (const [key, value] of Object.entries(header)) ctx.responseHeader.set(key, value);
      for (const [key, value] of Object.entries(trailer)) ctx.responseTrailer.set(key, value);
      return call;
    };
    const name = method.name;
    switch (method.methodKind) {
      case "unary":
        impl[method.localName] = (req: Message, ctx: HandlerContext) => behaviour.unary(name, req, begin(ctx));
        break;
      case "server_streaming":
        impl[method.localName] = (req: Message, ctx: HandlerContext) => behaviour.serverStream(name, req, begin(ctx));
        break;
      case "client_streaming":
        impl[method.localName] = (reqs: AsyncIterable<Message>, ctx: HandlerContext) =>
          behaviour.clientStream(name, reqs, begin(ctx));
        break;
      case "bidi_streaming":
        break; // the mirror service has none; connect answers Unimplemented
    }
  }
  // Built by method name from the descriptors, so TypeScript cannot check the keys.
  return impl as Partial<ServiceImpl<DescService>>;
}
