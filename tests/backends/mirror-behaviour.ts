/**
 * What a mirror.v1.Mirror backend does, independent of the server library: the Go reference
 * backend's behaviour (echo, streams that fail on request, failures with details, slow calls,
 * WhoAmI) plus the response metadata the tests look for. mirror-connect.ts and mirror-grpcjs.ts
 * only translate between their library and these functions.
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
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
import { Code, ConnectError } from "@connectrpc/connect";
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

/** One call as the behaviour sees it. */
export interface MirrorCall {
  /** Aborts when the call is cancelled: client cancel, deadline, connection cut. */
  readonly signal: AbortSignal;
  /** The request headers as received (any case, a key may repeat). */
  readonly headers: ReadonlyArray<readonly [string, string]>;
}

export interface MirrorBehaviourOptions {
  /** WhoAmI's `backend` and the `x-backend` header. */
  readonly id: string;
  /** WhoAmI answers after this long (a slow backend for the balancing tests). */
  readonly whoAmIDelayMs?: number;
  /** WhoAmI lists the gRPC protocol's own headers too (te, content-type, grpc-timeout…), for
   * tests that check what a client put on the wire. */
  readonly whoAmIShowsProtocolHeaders?: boolean;
}

/** Headers of the gRPC protocol itself, not metadata an application sent. */
const protocolHeaders = new Set([
  "content-type",
  "te",
  "user-agent",
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "accept-encoding",
]);

const everything = mirrorRegistry.getMessage("mirror.v1.Everything")!;
const identity = mirrorRegistry.getMessage("mirror.v1.Identity")!;
const empty = mirrorRegistry.getMessage("google.protobuf.Empty")!;

interface StreamRequest {
  count: number;
  failAfter: number;
  failCode: number;
  intervalMs: number;
}
interface FailRequest {
  code: number;
  message: string;
}
interface SlowRequest {
  millis: number;
}

/** Started and cancelled calls per method name. */
export class CallLedger {
  readonly started = new Map<string, number>();
  /** Calls whose signal aborted before their handler finished. */
  readonly cancelled = new Map<string, number>();
  readonly #waiters = new Map<string, Array<() => void>>();

  /** Counts a call; returns the mark that its handler is done (later aborts are not cancellations:
   * connect-node aborts every handler's signal once the call is over). */
  begin(method: string, signal: AbortSignal): () => void {
    this.started.set(method, (this.started.get(method) ?? 0) + 1);
    let done = false;
    const onAbort = () => {
      if (done) return;
      this.cancelled.set(method, (this.cancelled.get(method) ?? 0) + 1);
      for (const wake of this.#waiters.get(method) ?? []) wake();
      this.#waiters.delete(method);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    return () => {
      done = true;
      signal.removeEventListener("abort", onAbort);
    };
  }

  /** Resolves the next time a call of `method` is cancelled. */
  nextCancel(method: string): Promise<void> {
    return new Promise((resolve) => {
      const list = this.#waiters.get(method) ?? [];
      list.push(resolve);
      this.#waiters.set(method, list);
    });
  }

  total(): number {
    let sum = 0;
    for (const n of this.cancelled.values()) sum += n;
    return sum;
  }
}

export interface ResponseMetadata {
  readonly header: Readonly<Record<string, string>>;
  readonly trailer: Readonly<Record<string, string>>;
}

export interface MirrorBehaviour {
  readonly id: string;
  readonly ledger: CallLedger;
  /** What every response of `method` carries: `x-backend`, the `x-echo` echo, WhoAmI's trailer. */
  responseMetadata(method: string, call: MirrorCall): ResponseMetadata;
  unary(method: string, request: Message, call: MirrorCall): Promise<Message>;
  serverStream(method: string, request: Message, call: MirrorCall): AsyncIterable<Message>;
  clientStream(method: string, requests: AsyncIterable<Message>, call: MirrorCall): Promise<Message>;
}

export function createMirrorBehaviour(options: MirrorBehaviourOptions): MirrorBehaviour {
  const { id } = options;
  const ledger = new CallLedger();

  const echo = async (request: Message) => request;
  // `never`: each handler names the request fields it reads.
  const unaryHandlers: Record<string, (request: never, call: MirrorCall) => Promise<Message>> = {
    EchoGet: echo,
    EchoPost: echo,
    EchoNested: echo,
    EchoPatch: echo,
    EchoVerb: echo,
    EchoResponseBody: echo,
    EchoDelete: async () => create(empty),
    async Fail({ code, message }: FailRequest) {
      if (code === 0) return create(everything);
      const details =
        code === Code.InvalidArgument
          ? [{ desc: BadRequestSchema, value: { fieldViolations: [{ field: "code", description: `asked for ${code}` }] } }]
          : [];
      throw new ConnectError(message, code, { "x-fail": "yes" }, details);
    },
    async Slow({ millis }: SlowRequest, call: MirrorCall) {
      await cancellable(sleep(millis, undefined, { signal: call.signal }), call.signal);
      return create(everything, { i32: millis, s: `slept ${millis}` });
    },
    async WhoAmI(_request: Message, call: MirrorCall) {
      if (options.whoAmIDelayMs) await cancellable(sleep(options.whoAmIDelayMs, undefined, { signal: call.signal }), call.signal);
      const shown = call.headers.filter(
        ([key]) => !key.startsWith(":") && (options.whoAmIShowsProtocolHeaders || !protocolHeaders.has(key.toLowerCase())),
      );
      return create(identity, { backend: id, metadata: joinByKey(shown) });
    },
  };

  async function* stream({ count, failAfter, failCode, intervalMs }: StreamRequest, call: MirrorCall) {
    const sent = failAfter > 0 ? Math.min(count, failAfter) : count;
    for (let i = 0; i < sent; i++) {
      if (i > 0 && intervalMs > 0) await cancellable(sleep(intervalMs, undefined, { signal: call.signal }), call.signal);
      if (call.signal.aborted) throw new ConnectError("cancelled", Code.Canceled);
      yield create(everything, { i32: i, s: `item-${i}` });
    }
    // Like Go's status.Error, code 0 is no error: the stream just ends.
    if (failAfter > 0 && failCode !== 0) throw new ConnectError("stream failed", failCode);
  }

  async function collect(requests: AsyncIterable<Message>) {
    const tags: string[] = [];
    for await (const r of requests) tags.push((r as unknown as { s: string }).s);
    return create(everything, { i32: tags.length, tags });
  }

  const tracked = async <T>(method: string, call: MirrorCall, run: () => Promise<T>): Promise<T> => {
    const done = ledger.begin(method, call.signal);
    try {
      return await run();
    } finally {
      done();
    }
  };

  return {
    id,
    ledger,
    responseMetadata(method, call) {
      const header: Record<string, string> = { "x-backend": id };
      const trailer: Record<string, string> = {};
      if (method === "WhoAmI") trailer["x-backend-trailer"] = id;
      const echoed = joinByKey(call.headers)["x-echo"];
      if (echoed !== undefined) {
        header["x-echo"] = echoed;
        trailer["x-echo-trailer"] = echoed;
      }
      return { header, trailer };
    },
    async unary(method, request, call) {
      const handler = unaryHandlers[method];
      if (handler === undefined) throw new ConnectError(`${method} is not unary`, Code.Unimplemented);
      return tracked(method, call, () => handler(request as never, call));
    },
    async *serverStream(method, request, call) {
      if (method !== "Stream") throw new ConnectError(`${method} is not server-streaming`, Code.Unimplemented);
      const done = ledger.begin(method, call.signal);
      try {
        yield* stream(request as unknown as StreamRequest, call);
      } finally {
        done();
      }
    },
    async clientStream(method, requests, call) {
      if (method !== "Collect") throw new ConnectError(`${method} is not client-streaming`, Code.Unimplemented);
      return tracked(method, call, () => collect(requests));
    },
  };
}

/** Lower-case key → its values joined by ",". */
function joinByKey(headers: ReadonlyArray<readonly [string, string]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of headers) {
    const k = key.toLowerCase();
    out[k] = k in out ? `${out[k]},${value}` : value;
  }
  return out;
}

/** A sleep that a cancelled call ends with Canceled (the status the client never sees anyway). */
/**
 * A wait cut short by the call's signal: the reason it carries when it is a status (connect-node
 * aborts with DeadlineExceeded when the call's own deadline passes, as gRPC servers answer then),
 * else Canceled (the client went away).
 */
async function cancellable(sleeping: Promise<unknown>, signal: AbortSignal): Promise<void> {
  try {
    await sleeping;
  } catch {
    throw signal.reason instanceof ConnectError ? signal.reason : new ConnectError("cancelled", Code.Canceled);
  }
}

/** A running mirror backend, whichever library serves it. */
export interface RunningMirror {
  /** What WhoAmI and `x-backend` report. */
  readonly id: string;
  /** `127.0.0.1:PORT`. */
  readonly address: string;
  readonly port: number;
  /** Calls whose handler saw cancellation (client cancel, deadline, connection cut) before finishing. */
  cancelledCalls(): number;
  /** Stops listening. `graceful` (default): in-flight calls finish (bounded by
   * `gracefulStopLimitMs`); otherwise connections are cut at once and in-flight calls see a reset. */
  stop(options?: { graceful?: boolean }): Promise<void>;
}

export interface StartMirrorOptions {
  /** Defaults to the listen address. */
  readonly id?: string;
}

/** A graceful stop cuts what is still open after this long, so a stuck client cannot hang a test. */
export const gracefulStopLimitMs = 10_000;
