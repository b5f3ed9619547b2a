/**
 * One HTTP request → one gRPC call → one HTTP response, on Web `Request` / `Response` only.
 *
 * Everything per route (matcher entry, request mapper, response renderer, upstream) is compiled
 * once by `createTranscoder`; `handle` only looks things up. The upstream is any Connect
 * `Transport`, so this module opens no sockets and starts no timers of its own.
 */
import { createRegistry, type DescMethod, type FileRegistry, type Message, type Registry } from "@bufbuild/protobuf";
import { createContextValues, type ContextValues, type Transport } from "@connectrpc/connect";
import type { RouteSpec } from "../schema/routes.ts";
import { Router, RouteConflictError } from "./router.ts";
import { compileRequestMapper, type RequestMapper, type RequestMessage } from "./request.ts";
import {
  compileResponseRenderer,
  renderStatus,
  streamErrorChunk,
  streamResultChunk,
  type ResponseRenderer,
} from "./response.ts";
import { incomingMetadataHeaders, outgoingMetadata, type ClientInfo, type HeaderFields, type OutgoingMetadata } from "./metadata.ts";
import { effectiveTimeoutMs } from "./timeout.ts";
import { asConnectError, Code, ConnectError, httpStatusOfError, withHttpStatus } from "./status.ts";
import { callInfoKey } from "../upstream/call-info.ts";
import { file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.ts";

export type { ClientInfo, HeaderFields };

export interface TranscoderUpstream {
  readonly name: string;
  /**
   * grpc-edge's (UpstreamPool / EndpointTransport): besides Connect's Transport contract it
   * sends a WireMessage input as it is and honours CallInfo.wireMessages, which is how requests
   * and responses skip protobuf-es messages on the hot path.
   */
  readonly transport: Transport;
  readonly timeoutMs: number;
}

export interface TranscoderOptions {
  readonly registry: FileRegistry;
  /** Routes with the upstream that serves their method. */
  readonly routes: ReadonlyArray<{ readonly spec: RouteSpec; readonly upstream: TranscoderUpstream }>;
  readonly emitUnpopulated: boolean;
  readonly useProtoNames: boolean;
  /** Reject unknown fields in JSON bodies (default: ignore them, as grpc-gateway v2). */
  readonly strict: boolean;
  /** Largest request body; for a client stream, largest NDJSON line (each is one message). */
  readonly maxRequestBytes: number;
}

export interface Transcoder {
  handle(request: Request, client: ClientInfo): Promise<Response>;
  /** A google.rpc.Status JSON response for any error, for failures outside `handle`. */
  errorResponse(reason: unknown, requestId?: string): Response;
  /** The compiled routes, for the admin view and start-up logs. */
  readonly routes: readonly RouteSpec[];
}

/** A route that could not be compiled: reported at start-up with the method and the rule. */
export interface RouteCompileProblem {
  readonly method: string;
  readonly rule: string;
  readonly reason: string;
}

export class RouteCompileError extends Error {
  override readonly name = "RouteCompileError";
  readonly problems: readonly RouteCompileProblem[];
  constructor(problems: readonly RouteCompileProblem[]) {
    super(
      "invalid HTTP rules:\n" +
        problems.map((p) => `  ${p.method}: ${p.rule}: ${p.reason}`).join("\n"),
    );
    this.problems = problems;
  }
}

interface CompiledRoute {
  readonly spec: RouteSpec;
  readonly method: DescMethod;
  readonly mapper: RequestMapper;
  readonly renderer: ResponseRenderer;
  readonly upstream: TranscoderUpstream;
  /**
   * What the upstream learns about the call (the retry policy reads `idempotent`: the HTTP
   * method promises it). Built once per route: the transports only read it.
   */
  readonly contextValues: ContextValues;
}

const idempotentMethods = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);
const jsonType = "application/json";

export function createTranscoder(options: TranscoderOptions): Transcoder {
  const { registry, strict, maxRequestBytes } = options;
  // Backends attach google.rpc.* details whether or not the user's descriptor sets import
  // error_details.proto; the user's own types take precedence.
  const statusRegistry: Registry = createRegistry(file_google_rpc_error_details, registry);
  const router = new Router<CompiledRoute>();
  const problems: RouteCompileProblem[] = [];
  const jsonOptions = {
    registry,
    emitUnpopulated: options.emitUnpopulated,
    useProtoNames: options.useProtoNames,
  };
  for (const { spec, upstream } of options.routes) {
    const method = spec.method;
    const name = `/${method.parent.typeName}/${method.name}`;
    try {
      const renderer = compileResponseRenderer(method.output, spec.responseBody, jsonOptions);
      const compiled: CompiledRoute = {
        spec,
        method,
        mapper: compileRequestMapper(
          method.input,
          spec.body,
          spec.template.variables.map((v) => v.fieldPath),
          { registry },
        ),
        renderer,
        upstream,
        contextValues: createContextValues().set(callInfoKey, {
          idempotent: idempotentMethods.has(spec.httpMethod),
          route: spec.rule,
          // The renderer reads response bytes itself: no protobuf-es message per response.
          wireMessages: renderer.rendersWire,
        }),
      };
      router.add(spec.httpMethod, spec.template, compiled);
    } catch (e) {
      const reason =
        e instanceof RouteConflictError
          ? `conflicts with ${describeExisting(e.existing)}`
          : (e as Error).message;
      problems.push({ method: name, rule: spec.rule, reason });
    }
  }
  if (problems.length > 0) throw new RouteCompileError(problems);

  const errorResponse = (
    reason: unknown,
    requestId: string = crypto.randomUUID(),
    extraHeaders: Record<string, string> = {},
  ): Response => {
    const error = asConnectError(reason);
    return new Response(renderStatus(error, statusRegistry), {
      status: httpStatusOfError(error),
      headers: responseHeaders({ "content-type": jsonType, "x-request-id": requestId, ...extraHeaders }, error.metadata),
    });
  };

  async function handle(request: Request, client: ClientInfo): Promise<Response> {
    const requestId = request.headers.get("x-request-id") || crypto.randomUUID();
    try {
      const { path, query } = splitUrl(request.url);
      const match = router.match(request.method, path);
      if (match.kind === "not-found") {
        throw new ConnectError(`no route for ${request.method} ${path}`, Code.NotFound);
      }
      if (match.kind === "method-not-allowed") {
        const error = withHttpStatus(
          new ConnectError(`method ${request.method} not allowed for ${path}`, Code.Unimplemented),
          405,
        );
        return errorResponse(error, requestId, { allow: match.allow.join(", ") });
      }
      const route = match.value;
      const timeoutMs = effectiveTimeoutMs(
        route.upstream.timeoutMs,
        request.headers.get("grpc-timeout"),
      );
      const metadata = outgoingMetadata(request.headers, client);
      metadata["x-request-id"] = requestId;
      const kind = route.method.methodKind;
      const call = { route, request, query, variables: match.variables, timeoutMs, metadata, requestId };
      if (kind === "unary") return await unary(call);
      return await streaming(call);
    } catch (e) {
      return errorResponse(e, requestId);
    }
  }

  interface Call {
    readonly route: CompiledRoute;
    readonly request: Request;
    readonly query: string;
    readonly variables: ReadonlyArray<readonly [readonly string[], string]>;
    readonly timeoutMs: number;
    readonly metadata: OutgoingMetadata;
    readonly requestId: string;
  }

  async function requestMessage(call: Call): Promise<RequestMessage> {
    const { route, request } = call;
    const bodyText = route.spec.body === undefined ? undefined : await readBody(request, maxRequestBytes);
    return route.mapper.map(
      {
        httpMethod: request.method,
        variables: call.variables,
        query: call.query,
        bodyText,
      },
      strict,
    );
  }

  async function unary(call: Call): Promise<Response> {
    const { route } = call;
    const input = await requestMessage(call);
    const method = route.method as DescMethod & { methodKind: "unary" };
    const result = await route.upstream.transport.unary(
      method,
      call.request.signal,
      call.timeoutMs,
      call.metadata,
      input as Message, // a WireMessage is sent as it is (see TranscoderUpstream)
      call.route.contextValues,
    );
    const headers = responseHeaders({ "content-type": jsonType, "x-request-id": call.requestId }, result.header, result.trailer);
    return new Response(route.renderer.render(result.message as Message), { status: 200, headers });
  }

  async function streaming(call: Call): Promise<Response> {
    const { route, request } = call;
    const kind = route.method.methodKind;
    const clientStreams = kind === "client_streaming" || kind === "bidi_streaming";
    // A bad NDJSON line fails the call with its own 400, not with whatever the transport makes
    // of an input stream that threw.
    let inputError: unknown;
    const input: AsyncIterable<RequestMessage> = clientStreams
      ? recordingFailure(
          ndjsonMessages(request, maxRequestBytes, (line) => route.mapper.mapStreamItem(line, call.variables, strict)),
          (e) => (inputError = e),
        )
      : single(await requestMessage(call));
    try {
      return await streamingCall(call, input);
    } catch (e) {
      throw inputError ?? e;
    }
  }

  async function streamingCall(call: Call, input: AsyncIterable<RequestMessage>): Promise<Response> {
    const { route, request } = call;
    const kind = route.method.methodKind;
    const method = route.method as DescMethod & { methodKind: "server_streaming" };
    const result = await route.upstream.transport.stream(
      method,
      request.signal,
      call.timeoutMs,
      call.metadata,
      input as AsyncIterable<Message>, // WireMessages are sent as they are (see TranscoderUpstream)
      call.route.contextValues,
    );
    const iterator = result.message[Symbol.asyncIterator]();
    // Wait for the first message so that a call failing before any output still gets a real
    // HTTP status instead of a 200 with an error line.
    const first = await iterator.next();

    if (kind === "client_streaming") {
      if (first.done) throw new ConnectError("upstream sent no response message", Code.Internal);
      await drain(iterator);
      const headers = responseHeaders({ "content-type": jsonType, "x-request-id": call.requestId }, result.header, result.trailer);
      return new Response(route.renderer.render(first.value as Message), { status: 200, headers });
    }

    const format = wantsEventStream(request) ? "sse" : "ndjson";
    const headers = responseHeaders(
      {
        "content-type": format === "sse" ? "text/event-stream" : "application/x-ndjson",
        "cache-control": "no-cache",
        "x-request-id": call.requestId,
        // Proxies such as nginx buffer responses unless told not to; streams must flow.
        "x-accel-buffering": "no",
      },
      result.header,
    );
    const encoder = new TextEncoder();
    // Rendered before answering, so that a first message that does not decode is still a real
    // HTTP status rather than a 200 with an error line.
    let pending: string | undefined;
    try {
      if (!first.done) pending = streamResultChunk(route.renderer.render(first.value as Message), format);
    } catch (e) {
      await iterator.return?.(); // the upstream stream is not left open
      throw e;
    }
    const ended = first.done === true;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          if (pending !== undefined) {
            controller.enqueue(encoder.encode(pending));
            pending = undefined;
            return;
          }
          const next = ended ? { done: true as const, value: undefined } : await iterator.next();
          if (next.done) {
            controller.close();
            return;
          }
          const json = route.renderer.render(next.value as Message);
          controller.enqueue(encoder.encode(streamResultChunk(json, format)));
        } catch (e) {
          const status = renderStatus(asConnectError(e), statusRegistry);
          controller.enqueue(encoder.encode(streamErrorChunk(status, format)));
          controller.close();
        }
      },
      async cancel() {
        await iterator.return?.();
      },
    });
    return new Response(body, { status: 200, headers });
  }

  return { handle, errorResponse, routes: options.routes.map((r) => r.spec) };
}

/**
 * Response headers as a plain object, upstream metadata added as `Grpc-Metadata-<key>` (repeated
 * keys joined with ", "): runtimes write a plain object without building a `Headers` first.
 */
function responseHeaders(
  fixed: Record<string, string>,
  header: Headers | undefined,
  trailer?: Headers,
): Record<string, string> {
  for (const [name, value] of incomingMetadataHeaders(header, trailer)) {
    const key = name.toLowerCase();
    fixed[key] = fixed[key] === undefined ? value : `${fixed[key]}, ${value}`;
  }
  return fixed;
}

function describeExisting(existing: unknown): string {
  const route = existing as CompiledRoute | undefined;
  if (route?.spec === undefined) return "another rule";
  return `/${route.method.parent.typeName}/${route.method.name} (${route.spec.rule})`;
}

/** Path and raw query of a request URL without building a URL object per request. */
function splitUrl(url: string): { path: string; query: string } {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return { path: "/", query: "" };
  const q = url.indexOf("?", start);
  const hash = url.indexOf("#", start);
  const end = hash < 0 ? url.length : hash;
  if (q < 0 || q > end) return { path: url.slice(start, end), query: "" };
  return { path: url.slice(start, q), query: url.slice(q + 1, end) };
}

function wantsEventStream(request: Request): boolean {
  return (request.headers.get("accept") ?? "").includes("text/event-stream");
}

async function* single(message: RequestMessage): AsyncIterable<RequestMessage> {
  yield message;
}

async function drain(iterator: AsyncIterator<unknown>): Promise<void> {
  for (let i = 0; i < 1_000_000; i++) if ((await iterator.next()).done) return;
}

function bodyTooLarge(what: string, maxBytes: number): ConnectError {
  return withHttpStatus(new ConnectError(`${what} exceeds ${maxBytes} bytes`, Code.ResourceExhausted), 413);
}

/**
 * The whole body as text, refused with 413 as soon as it outgrows `maxBytes` (by its
 * Content-Length, or while it arrives when it has none), so an oversized body is never buffered.
 */
async function readBody(request: Request, maxBytes: number): Promise<string> {
  const declared = request.headers.get("content-length");
  if (declared !== null) {
    if (Number(declared) > maxBytes) throw bodyTooLarge("request body", maxBytes);
    return request.text(); // the server stops at Content-Length; text() has runtimes' fast path
  }
  if (request.body === null) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      void reader.cancel();
      throw bodyTooLarge("request body", maxBytes);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return utf8.decode(chunks[0]);
  const whole = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    whole.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return utf8.decode(whole);
}
const utf8 = new TextDecoder();

/** Passes `source` through, telling `onError` what it threw before rethrowing it. */
async function* recordingFailure<T>(source: AsyncIterable<T>, onError: (e: unknown) => void): AsyncIterable<T> {
  try {
    yield* source;
  } catch (e) {
    onError(e);
    throw e;
  }
}

/**
 * The request body as NDJSON, one message per non-empty line, read as it arrives: a client
 * stream may be long-lived, so the limit is per line (per message), not per body.
 */
async function* ndjsonMessages(
  request: Request,
  maxLineBytes: number,
  mapLine: (line: string) => RequestMessage,
): AsyncIterable<RequestMessage> {
  if (request.body === null) return;
  // A UTF-16 unit is at least one byte of UTF-8: more units than bytes allowed is too long.
  const checkLine = (units: number) => {
    if (units > maxLineBytes) throw bodyTooLarge("an NDJSON line of the request body", maxLineBytes);
  };
  const reader = request.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let newline: number;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline).trim();
        buffered = buffered.slice(newline + 1);
        checkLine(line.length);
        if (line !== "") yield mapLine(line);
      }
      checkLine(buffered.length);
    }
  } finally {
    reader.releaseLock();
  }
  const last = (buffered + decoder.decode()).trim();
  checkLine(last.length);
  if (last !== "") yield mapLine(last);
}
