/**
 * A Connect `Transport` for one endpoint, speaking gRPC directly on node:http2 streams.
 *
 * Why not connect-node's client: it runs every call through an async-iterable pipeline and a
 * linked AbortController, and costs ~3x what the wire does (DESIGN §3). Here a unary call is
 * one stream, one frame written, listeners that decode as data arrives, one timer for the
 * deadline, and a single `finish` that every exit path goes through.
 *
 * Failures are ConnectErrors. Those that happened before the request could reach the backend
 * (connect refused, REFUSED_STREAM, session gone before the stream was sent) are marked so
 * that `isNeverSent(error)` is true: the pool retries them on another endpoint.
 */
import type { ClientHttp2Stream, IncomingHttpHeaders } from "node:http2";
import {
  create,
  fromBinary,
  isMessage,
  toBinary,
  type DescMessage,
  type DescMethodStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  type StreamResponse,
  type Transport,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  codeFromHttpStatus,
  defaultMaxMessageBytes,
  encodeFrame,
  errorFromRstCode,
  formatGrpcTimeout,
  FrameDecoder,
  grpcStatusOf,
  http2ErrorCode,
  isNeverSent,
  neverSentError,
} from "./grpc-wire.ts";
import { callInfoKey, WireMessage } from "./call-info.ts";
import { FieldHeaders } from "./field-headers.ts";

export { isNeverSent };

/** What the transport needs from a session (see session.ts). */
export interface StreamSession {
  /** `headers`: a flat name/value list, as node:http2 takes it without copying. */
  request(headers: readonly string[]): ClientHttp2Stream;
  /** The connection is closing or gone (a stream ending without status was cut by it). */
  readonly connectionGone: boolean;
}

export interface SessionSource {
  /** The session for a new call; throws a never-sent ConnectError when there is none. */
  acquire(): StreamSession;
}

/** How one call ended, for balancing and the endpoint view. */
export interface CallOutcome {
  /** 0 for OK. */
  readonly code: Code | 0;
  /** The request never reached the backend. */
  readonly neverSent: boolean;
  /** From the start of the call to the response headers (or to the failure). */
  readonly latencyMs: number;
}

/** Told synchronously when a call starts and once when it ends, whichever way. */
export interface CallObserver {
  callStarted(): void;
  callEnded(outcome: CallOutcome): void;
}

export interface EndpointTransportOptions {
  readonly sessions: SessionSource;
  /** Largest response message accepted (default 4 MiB); bigger is ResourceExhausted. */
  readonly maxMessageBytes?: number;
  readonly observer?: CallObserver;
}

/** setTimeout's largest delay (about 24.8 days); longer ones would fire at once. */
const maxTimerMs = 2 ** 31 - 1;

/** Response messages queued beyond this pause the HTTP/2 stream (flow control does the rest). */
const streamHighWater = 16;

/** Request headers the transport owns, or that HTTP/2 forbids; user metadata cannot set them. */
const reservedHeaders = new Set([
  "connection",
  "content-length",
  "content-type",
  "grpc-accept-encoding",
  "grpc-encoding",
  "grpc-timeout",
  "host",
  "keep-alive",
  "proxy-connection",
  "te",
  "transfer-encoding",
  "upgrade",
]);

export class EndpointTransport implements Transport {
  readonly sessions: SessionSource;
  readonly maxMessageBytes: number;
  readonly observer: CallObserver | undefined;

  constructor(options: EndpointTransportOptions) {
    this.sessions = options.sessions;
    this.maxMessageBytes = options.maxMessageBytes ?? defaultMaxMessageBytes;
    this.observer = options.observer;
  }

  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    input: MessageInitShape<I>,
    contextValues?: ContextValues,
  ): Promise<UnaryResponse<I, O>> {
    return new Promise((resolve, reject) => {
      const call = new UnaryCall<I, O>(this, wantsWire(contextValues), method, resolve, reject);
      const payload = call.start(method, signal, timeoutMs, header, () => encodeMessage(method.input, input));
      if (payload !== undefined) call.stream!.end(payload);
    });
  }

  stream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodStreaming<I, O>,
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    input: AsyncIterable<MessageInitShape<I>>,
    contextValues?: ContextValues,
  ): Promise<StreamResponse<I, O>> {
    return new Promise((resolve, reject) => {
      const call = new StreamingCall<I, O>(this, wantsWire(contextValues), method, resolve, reject);
      if (call.start(method, signal, timeoutMs, header, () => true) !== undefined) {
        void call.pump(input);
      }
    });
  }
}

function wantsWire(contextValues: ContextValues | undefined): boolean {
  return contextValues?.get(callInfoKey).wireMessages === true;
}

/**
 * A response message: decoded, or left as its bytes for a caller that asked for them (the
 * transcoder renders those straight to JSON; see CallInfo.wireMessages). The cast keeps
 * Connect's Transport signature: only a caller that set the flag ever sees a WireMessage.
 */
function decodeMessage<O extends DescMessage>(schema: O, payload: Uint8Array, wire: boolean): MessageShape<O> {
  return wire ? (new WireMessage(payload) as unknown as MessageShape<O>) : fromBinary(schema, payload);
}

function encodeMessage<I extends DescMessage>(schema: I, input: MessageInitShape<I>): Uint8Array {
  // A request already encoded by the caller (the transcoder's json-wire.ts) goes as it is.
  if (input instanceof WireMessage) return encodeFrame(input.bytes);
  const message = isMessage(input, schema) ? input : create(schema, input);
  return encodeFrame(toBinary(schema, message as MessageShape<I>));
}

/** The call a stream belongs to, set when the stream is opened. */
const callOfStream = Symbol("grpc-edge.call");
type CallStream = ClientHttp2Stream & { [callOfStream]: Call };

function callOf(stream: ClientHttp2Stream): Call {
  return (stream as CallStream)[callOfStream];
}

/**
 * One exchange on one HTTP/2 stream: request headers, deadline, abort, response headers,
 * frames, trailers, and the final status. Unary and streaming calls differ only in what they
 * do with messages and when they answer, so they override the three `on*` hooks.
 */
abstract class Call {
  stream: ClientHttp2Stream | undefined;
  done = false;
  protected readonly transport: EndpointTransport;
  protected responseHeaders: IncomingHttpHeaders | undefined;
  protected trailers: IncomingHttpHeaders | undefined;
  /** The same blocks as node:http2 received them (name, value, …): iterated far faster. */
  protected responseFieldList: readonly string[] | undefined;
  protected trailerFieldList: readonly string[] | undefined;
  /** Headers that carried the status (trailers-only response). */
  protected trailersOnly = false;
  #session: StreamSession | undefined;
  #decoder: FrameDecoder | undefined;
  #early: Uint8Array[] | undefined;
  #streamError: Error | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #signal: AbortSignal | undefined;
  #started = 0;
  #latencyMs = -1;

  /** Response messages are handed over as WireMessage (see decodeMessage). */
  protected readonly wire: boolean;

  constructor(transport: EndpointTransport, wire: boolean) {
    this.transport = transport;
    this.wire = wire;
  }

  /** A complete response message arrived (not called after `finish`). */
  protected abstract onMessage(payload: Uint8Array): void;
  /** Valid response headers arrived and carry no status (not called for trailers-only). */
  protected abstract onResponseStart(): void;
  /** The call is over: `error` undefined means grpc-status 0. Called exactly once. */
  protected abstract onEnd(error: ConnectError | undefined): void;

  /**
   * Opens the stream. `body` builds what is written first (so encoding errors fail the call);
   * returns it, or undefined when the call already failed.
   */
  start<T>(
    method: { readonly name: string; readonly parent: { readonly typeName: string } },
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    body: () => T,
  ): T | undefined {
    this.#started = performance.now();
    this.transport.observer?.callStarted();
    if (signal?.aborted) {
      this.finish(abortError(signal));
      return undefined;
    }
    let first: T;
    let stream: ClientHttp2Stream;
    try {
      first = body();
      const session = this.transport.sessions.acquire();
      this.#session = session;
      stream = session.request(requestHeaders(`/${method.parent.typeName}/${method.name}`, timeoutMs, header));
    } catch (e) {
      this.finish(ConnectError.from(e, Code.Internal));
      return undefined;
    }
    this.stream = stream;
    (stream as CallStream)[callOfStream] = this;
    const on = Call.#streamListeners;
    stream.on("response", on.response);
    stream.on("data", on.data);
    stream.on("trailers", on.trailers);
    stream.on("end", on.end);
    stream.on("error", on.error);
    stream.on("close", on.close);
    if (timeoutMs !== undefined && timeoutMs > 0) {
      this.#timer = setTimeout(Call.#deadlinePassed, Math.min(timeoutMs, maxTimerMs), this, timeoutMs);
    }
    if (signal !== undefined) {
      this.#signal = signal;
      signal.addEventListener("abort", this);
    }
    return first;
  }

  /**
   * Ends the call once: clears the timer and the abort listener. The stream is reset (CANCEL)
   * when we end the call ourselves (`reset`: deadline, abort, protocol error) or when the
   * server finished while we were still sending.
   */
  finish(error: ConnectError | undefined, reset = false): void {
    if (this.done) return;
    this.done = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#signal?.removeEventListener("abort", this);
    const stream = this.stream;
    if (stream !== undefined && !stream.closed && (reset || !stream.writableEnded)) {
      stream.close(http2ErrorCode.cancel);
      // A stream paused for backpressure keeps its readable side open, so it would never emit
      // 'close' and its slot on the session would leak; flowing, what is left is dropped
      // (`done` is set) and the stream ends.
      stream.resume();
    }
    const latencyMs = this.#latencyMs >= 0 ? this.#latencyMs : performance.now() - this.#started;
    this.transport.observer?.callEnded({
      code: error === undefined ? 0 : error.code,
      neverSent: error !== undefined && isNeverSent(error),
      latencyMs,
    });
    this.onEnd(error);
  }

  /** Header and trailer metadata for an error, as Connect reports them. */
  protected errorMetadata(): Headers {
    return toHeaders(this.trailers, toHeaders(this.responseHeaders, new Headers()));
  }

  /**
   * The stream's listeners, shared by every call: `this` is the stream, which points back at
   * its call, so no call binds closures of its own (it used to bind eight).
   */
  static readonly #streamListeners = {
    response(this: ClientHttp2Stream, headers: IncomingHttpHeaders, _flags: number, fieldList?: string[]): void {
      callOf(this).#onResponse(headers, fieldList);
    },
    data(this: ClientHttp2Stream, chunk: Uint8Array): void {
      callOf(this).#onData(chunk);
    },
    trailers(this: ClientHttp2Stream, trailers: IncomingHttpHeaders, _flags: number, fieldList?: string[]): void {
      const call = callOf(this);
      call.trailers = trailers;
      call.trailerFieldList = fieldList;
    },
    /** All data is read: with a status in hand the call is over, whatever our side is doing. */
    end(this: ClientHttp2Stream): void {
      const call = callOf(this);
      if (!call.done && call.trailers !== undefined) call.finish(call.#outcome());
    },
    error(this: ClientHttp2Stream, error: Error): void {
      callOf(this).#streamError = error;
    },
    close(this: ClientHttp2Stream): void {
      const call = callOf(this);
      if (!call.done) call.finish(call.#outcome());
    },
  };

  static #deadlinePassed(call: Call, timeoutMs: number): void {
    call.#timer = undefined;
    call.finish(new ConnectError(`deadline of ${timeoutMs}ms exceeded`, Code.DeadlineExceeded), true);
  }

  /** The caller's signal aborted (the call is its own abort listener: no closure per call). */
  handleEvent(): void {
    this.finish(abortError(this.#signal!), true);
  }

  #onResponse(headers: IncomingHttpHeaders, fieldList: string[] | undefined): void {
    if (this.done) return;
    this.#latencyMs = performance.now() - this.#started;
    this.responseHeaders = headers;
    this.responseFieldList = fieldList;
    const status = Number(headers[":status"]);
    if (status !== 200) {
      const grpc = grpcStatusOf(headers);
      const code = grpc !== undefined && grpc.code !== 0 ? grpc.code : codeFromHttpStatus(status);
      this.finish(new ConnectError(`upstream answered HTTP ${status}`, code, toHeaders(headers, new Headers())), true);
      return;
    }
    const contentType = headers["content-type"] ?? "";
    if (!isGrpcProtoContentType(contentType)) {
      const code = contentType.startsWith("application/grpc") ? Code.Internal : Code.Unknown;
      this.finish(new ConnectError(`upstream answered with content-type "${contentType}"`, code), true);
      return;
    }
    if (headers["grpc-status"] !== undefined) {
      this.trailersOnly = true;
      this.trailers = headers;
      this.trailerFieldList = fieldList;
      return;
    }
    this.#decoder = new FrameDecoder(this.transport.maxMessageBytes);
    this.onResponseStart();
    const early = this.#early;
    if (early !== undefined) {
      this.#early = undefined;
      for (const chunk of early) this.#onData(chunk);
    }
  }

  #onData(chunk: Uint8Array): void {
    if (this.done) return;
    const decoder = this.#decoder;
    if (decoder === undefined) {
      if (this.responseHeaders === undefined) {
        // HTTP/2 sends HEADERS before DATA, but Deno's node:http2 emits 'data' before
        // 'response': keep the bytes for when the headers are seen.
        (this.#early ??= []).push(chunk);
        return;
      }
      this.finish(new ConnectError("upstream sent data in a trailers-only response", Code.Internal), true);
      return;
    }
    try {
      decoder.push(chunk, this.#onPayload);
    } catch (e) {
      this.finish(ConnectError.from(e, Code.Internal), true);
    }
  }

  readonly #onPayload = (payload: Uint8Array): void => {
    if (!this.done) this.onMessage(payload);
  };

  /** The status of a stream that closed on its own. */
  #outcome(): ConnectError | undefined {
    const stream = this.stream!;
    if (this.trailers !== undefined) {
      if (this.#decoder?.partial) {
        return new ConnectError("upstream ended the stream inside a message", Code.Internal);
      }
      const status = grpcStatusOf(this.trailers);
      if (status === undefined) {
        return new ConnectError("upstream trailers carry no grpc-status", Code.Internal, this.errorMetadata());
      }
      if (status.code === 0) return undefined;
      const error = new ConnectError(status.message, status.code, this.errorMetadata());
      error.details = status.details;
      return error;
    }
    const cause = this.#streamError;
    if (stream.pending || stream.id === undefined) {
      return neverSentError(`upstream connection failed: ${describe(cause)}`, cause);
    }
    if (stream.rstCode === http2ErrorCode.refusedStream) return errorFromRstCode(stream.rstCode);
    if (this.#session!.connectionGone) {
      return new ConnectError(`upstream connection lost: ${describe(cause)}`, Code.Unavailable, undefined, undefined, cause);
    }
    return errorFromRstCode(stream.rstCode ?? http2ErrorCode.noError);
  }
}

class UnaryCall<I extends DescMessage, O extends DescMessage> extends Call {
  readonly #method: DescMethodUnary<I, O>;
  readonly #resolve: (response: UnaryResponse<I, O>) => void;
  readonly #reject: (error: ConnectError) => void;
  #message: MessageShape<O> | undefined;

  constructor(
    transport: EndpointTransport,
    wire: boolean,
    method: DescMethodUnary<I, O>,
    resolve: (response: UnaryResponse<I, O>) => void,
    reject: (error: ConnectError) => void,
  ) {
    super(transport, wire);
    this.#method = method;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  protected onResponseStart(): void {}

  protected onMessage(payload: Uint8Array): void {
    if (this.#message !== undefined) {
      this.finish(new ConnectError("upstream sent more than one message for a unary method", Code.Internal), true);
      return;
    }
    try {
      this.#message = decodeMessage(this.#method.output, payload, this.wire);
    } catch (e) {
      this.finish(new ConnectError(`cannot decode the response: ${describe(e)}`, Code.Internal), true);
    }
  }

  protected onEnd(error: ConnectError | undefined): void {
    if (error !== undefined) {
      this.#reject(error);
      return;
    }
    if (this.#message === undefined) {
      this.#reject(new ConnectError("upstream sent no message for a unary method", Code.Internal));
      return;
    }
    const method = this.#method;
    this.#resolve({
      stream: false,
      service: method.parent,
      method,
      header: metadataOf(this.trailersOnly ? undefined : this.responseHeaders, this.responseFieldList),
      message: this.#message,
      trailer: metadataOf(this.trailers, this.trailerFieldList),
    });
  }
}

/**
 * A streaming call. Its promise resolves when the response starts; its messages are an
 * async iterator fed as frames arrive, pausing the HTTP/2 stream when the reader lags.
 */
class StreamingCall<I extends DescMessage, O extends DescMessage>
  extends Call
  implements AsyncIterableIterator<MessageShape<O>>
{
  readonly #method: DescMethodStreaming<I, O>;
  #resolve: ((response: StreamResponse<I, O>) => void) | undefined;
  #reject: ((error: ConnectError) => void) | undefined;
  readonly #trailer = new Headers();
  readonly #queue: MessageShape<O>[] = [];
  #paused = false;
  #error: ConnectError | undefined;
  #reader: { resolve(r: IteratorResult<MessageShape<O>>): void; reject(e: unknown): void } | undefined;
  #drainWaiter: (() => void) | undefined;

  constructor(
    transport: EndpointTransport,
    wire: boolean,
    method: DescMethodStreaming<I, O>,
    resolve: (response: StreamResponse<I, O>) => void,
    reject: (error: ConnectError) => void,
  ) {
    super(transport, wire);
    this.#method = method;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** Writes the input frame by frame, waiting for 'drain' when HTTP/2 flow control pushes back. */
  async pump(input: AsyncIterable<MessageInitShape<I>>): Promise<void> {
    const stream = this.stream!;
    const schema = this.#method.input;
    const iterator = input[Symbol.asyncIterator]();
    let exhausted = false;
    try {
      for (;;) {
        const next = await iterator.next();
        if (this.done) return;
        if (next.done === true) {
          exhausted = true;
          break;
        }
        if (!stream.write(encodeMessage(schema, next.value))) {
          await new Promise<void>((resolve) => {
            this.#drainWaiter = resolve;
            stream.once("drain", resolve);
          });
          this.#drainWaiter = undefined;
          if (this.done) return;
        }
      }
      stream.end();
    } catch (e) {
      exhausted = true;
      this.finish(ConnectError.from(e), true);
    } finally {
      if (!exhausted) Promise.resolve(iterator.return?.()).catch(() => {});
    }
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<MessageShape<O>>> {
    const queue = this.#queue;
    if (queue.length > 0) {
      const value = queue.shift()!;
      if (this.#paused && queue.length < streamHighWater / 2) {
        this.#paused = false;
        this.stream?.resume();
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.done) {
      return this.#error === undefined
        ? Promise.resolve({ value: undefined, done: true })
        : Promise.reject(this.#error);
    }
    return new Promise((resolve, reject) => (this.#reader = { resolve, reject }));
  }

  /** The reader stopped early: the call is canceled and the stream reset. */
  return(): Promise<IteratorResult<MessageShape<O>>> {
    this.#queue.length = 0;
    this.finish(new ConnectError("the response stream was abandoned by its reader", Code.Canceled), true);
    // The call may have ended already (the server finished) with messages queued and the
    // stream paused for backpressure: a paused stream never closes, so release it here.
    if (this.stream !== undefined && !this.stream.destroyed) this.stream.destroy();
    this.#error = undefined;
    return Promise.resolve({ value: undefined, done: true });
  }

  protected onResponseStart(): void {
    this.#answer();
  }

  protected onMessage(payload: Uint8Array): void {
    let message: MessageShape<O>;
    try {
      message = decodeMessage(this.#method.output, payload, this.wire);
    } catch (e) {
      this.finish(new ConnectError(`cannot decode a response message: ${describe(e)}`, Code.Internal), true);
      return;
    }
    const reader = this.#reader;
    if (reader !== undefined) {
      this.#reader = undefined;
      reader.resolve({ value: message, done: false });
      return;
    }
    this.#queue.push(message);
    if (!this.#paused && this.#queue.length >= streamHighWater) {
      this.#paused = true;
      this.stream?.pause();
    }
  }

  protected onEnd(error: ConnectError | undefined): void {
    this.#drainWaiter?.();
    if (error === undefined) toHeaders(this.trailers, this.#trailer);
    const reject = this.#reject;
    if (reject !== undefined) {
      // The call ended before the response started: the caller gets the error itself.
      if (error !== undefined) {
        this.#resolve = this.#reject = undefined;
        reject(error);
        return;
      }
      this.#answer();
    }
    this.#error = error;
    const reader = this.#reader;
    if (reader === undefined) return;
    this.#reader = undefined;
    if (error === undefined) reader.resolve({ value: undefined, done: true });
    else reader.reject(error);
  }

  #answer(): void {
    const resolve = this.#resolve;
    if (resolve === undefined) return;
    this.#resolve = this.#reject = undefined;
    const method = this.#method;
    resolve({
      stream: true,
      service: method.parent,
      method,
      header: metadataOf(this.trailersOnly ? undefined : this.responseHeaders, this.responseFieldList),
      message: this,
      trailer: this.#trailer,
    });
  }
}

/**
 * The request's header block as a flat name/value list: node:http2 takes a list as it is, where
 * an object is first copied into one of its own and walked again (~1.5 µs and ~1 KB per call).
 * A repeated name is sent once per value, as an object's array value would be.
 */
function requestHeaders(path: string, timeoutMs: number | undefined, header: HeadersInit | undefined): string[] {
  const out = [":method", "POST", ":path", path, "content-type", "application/grpc+proto", "te", "trailers"];
  if (timeoutMs !== undefined && timeoutMs > 0) out.push("grpc-timeout", formatGrpcTimeout(timeoutMs));
  if (header === undefined) return out;
  if (header instanceof Headers) {
    header.forEach((value, key) => {
      if (!reservedHeaders.has(key)) out.push(key, value);
    });
    return out;
  }
  if (Array.isArray(header)) {
    for (const [name, value] of header) addRequestHeader(out, name, value);
  } else {
    // A plain record: what the transcoder sends (its keys are lower-case already).
    const record = header as Record<string, string>;
    for (const name in record) addRequestHeader(out, name, record[name]);
  }
  return out;
}

function addRequestHeader(out: string[], name: string, value: string): void {
  const key = name.toLowerCase();
  if (key.charCodeAt(0) === 58 /* ":" */ || reservedHeaders.has(key)) return;
  out.push(key, value);
}

/** Response headers or trailers as Connect metadata, read lazily (see FieldHeaders). */
function metadataOf(fields: IncomingHttpHeaders | undefined, fieldList: readonly string[] | undefined): Headers {
  return fields === undefined ? new Headers() : new FieldHeaders(fields, fieldList);
}

/** Response headers or trailers copied into `into` (pseudo-headers left out). */
function toHeaders(fields: IncomingHttpHeaders | undefined, into: Headers): Headers {
  if (fields === undefined) return into;
  for (const key in fields) {
    if (key.charCodeAt(0) === 58 /* ":" */) continue;
    const value = fields[key];
    if (value === undefined) continue;
    try {
      if (Array.isArray(value)) for (const v of value) into.append(key, v);
      else into.append(key, String(value));
    } catch {
      // A value Headers refuses is dropped rather than failing the call.
    }
  }
  return into;
}

function isGrpcProtoContentType(value: string): boolean {
  return (
    value === "application/grpc" ||
    value === "application/grpc+proto" ||
    value.startsWith("application/grpc;") ||
    value.startsWith("application/grpc+proto;")
  );
}

function abortError(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the call was canceled", Code.Canceled, undefined, undefined, reason);
}

/** The message of the innermost cause: "connect ECONNREFUSED 127.0.0.1:1" rather than its wrappers. */
function describe(error: unknown): string {
  let inner = error;
  while (inner instanceof Error && inner.cause instanceof Error) inner = inner.cause;
  if (inner instanceof Error) return inner.message;
  return inner === undefined ? "no details" : String(inner);
}
