/**
 * The gRPC-over-HTTP/2 wire rules the client side needs, as pure functions: message framing,
 * the status carried in trailers, HTTP status and RST_STREAM codes as gRPC codes, and the
 * `grpc-timeout` header. No I/O, no timers; `endpoint-transport.ts` does the talking.
 *
 * Spec: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md and
 * https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md
 */
import { fromBinary } from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { StatusSchema } from "../../gen/google/rpc/status_pb.ts";

/** Largest message accepted by default, as gRPC implementations do (4 MiB). */
export const defaultMaxMessageBytes = 4 * 1024 * 1024;

const frameHeaderBytes = 5;
const flagCompressed = 0b1;

/** One length-prefixed message: flags byte (0: not compressed), 4-byte big-endian length, payload. */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(frameHeaderBytes + payload.byteLength);
  const length = payload.byteLength;
  frame[1] = length >>> 24;
  frame[2] = (length >>> 16) & 0xff;
  frame[3] = (length >>> 8) & 0xff;
  frame[4] = length & 0xff;
  frame.set(payload, frameHeaderBytes);
  return frame;
}

/**
 * Splits a byte stream into message payloads, whatever the chunk boundaries. A payload that
 * arrives within one chunk is handed out as a view of that chunk, without copying.
 */
export class FrameDecoder {
  readonly #maxMessageBytes: number;
  readonly #header = new Uint8Array(frameHeaderBytes);
  #headerFilled = 0;
  /** The payload being assembled across chunks, once its header is known. */
  #body: Uint8Array | undefined;
  #bodyFilled = 0;

  constructor(maxMessageBytes: number = defaultMaxMessageBytes) {
    this.#maxMessageBytes = maxMessageBytes;
  }

  /** True while part of a frame is buffered: the stream must not end here. */
  get partial(): boolean {
    return this.#headerFilled > 0 || this.#body !== undefined;
  }

  /**
   * Feeds one chunk, calling `onMessage` for every payload it completes. Throws ConnectError:
   * ResourceExhausted for a message over the limit, Internal for a compressed one (we never
   * offer compression, so a compressed frame is a protocol violation).
   */
  push(chunk: Uint8Array, onMessage: (payload: Uint8Array) => void): void {
    let offset = 0;
    const end = chunk.byteLength;
    while (offset < end) {
      if (this.#body !== undefined) {
        const take = Math.min(this.#body.byteLength - this.#bodyFilled, end - offset);
        this.#body.set(chunk.subarray(offset, offset + take), this.#bodyFilled);
        this.#bodyFilled += take;
        offset += take;
        if (this.#bodyFilled === this.#body.byteLength) {
          const body = this.#body;
          this.#body = undefined;
          this.#bodyFilled = 0;
          onMessage(body);
        }
        continue;
      }
      let length: number;
      if (this.#headerFilled === 0 && end - offset >= frameHeaderBytes) {
        length = this.#readHeader(chunk, offset);
        offset += frameHeaderBytes;
        if (end - offset >= length) {
          onMessage(chunk.subarray(offset, offset + length));
          offset += length;
          continue;
        }
      } else {
        const take = Math.min(frameHeaderBytes - this.#headerFilled, end - offset);
        this.#header.set(chunk.subarray(offset, offset + take), this.#headerFilled);
        this.#headerFilled += take;
        offset += take;
        if (this.#headerFilled < frameHeaderBytes) return;
        this.#headerFilled = 0;
        length = this.#readHeader(this.#header, 0);
      }
      if (length === 0) {
        onMessage(new Uint8Array(0));
        continue;
      }
      this.#body = new Uint8Array(length);
      this.#bodyFilled = 0;
    }
  }

  #readHeader(bytes: Uint8Array, at: number): number {
    const flags = bytes[at];
    const length =
      ((bytes[at + 1] << 24) | (bytes[at + 2] << 16) | (bytes[at + 3] << 8) | bytes[at + 4]) >>> 0;
    if ((flags & flagCompressed) !== 0) {
      throw new ConnectError("received a compressed message, but no compression was negotiated", Code.Internal);
    }
    if (flags !== 0) {
      throw new ConnectError(`invalid message flags 0x${flags.toString(16)}`, Code.Internal);
    }
    if (length > this.#maxMessageBytes) {
      throw new ConnectError(
        `received a message of ${length} bytes, over the limit of ${this.#maxMessageBytes}`,
        Code.ResourceExhausted,
      );
    }
    return length;
  }
}

/** Response headers or trailers as node:http2 delivers them. */
export type HeaderFields = Readonly<Record<string, string | string[] | number | undefined>>;

/** A status detail in Connect's incoming form (what `ConnectError.details` holds). */
export interface IncomingDetail {
  readonly type: string;
  readonly value: Uint8Array;
}

export interface GrpcStatus {
  readonly code: Code | 0;
  readonly message: string;
  readonly details: IncomingDetail[];
}

/**
 * The gRPC status in trailers (or in the headers of a trailers-only response); undefined when
 * there is no `grpc-status`. An unparsable `grpc-status` is Internal, a number outside the
 * known codes is Unknown. A malformed `grpc-status-details-bin` is ignored: the status code
 * and message still stand.
 */
export function grpcStatusOf(fields: HeaderFields): GrpcStatus | undefined {
  const raw = fieldValue(fields, "grpc-status");
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) {
    return { code: Code.Internal, message: `malformed grpc-status: ${raw}`, details: [] };
  }
  const number = Number(raw);
  const code = (number <= Code.Unauthenticated ? number : Code.Unknown) as Code | 0;
  const message = decodeGrpcMessage(fieldValue(fields, "grpc-message") ?? "");
  return { code, message, details: code === 0 ? [] : statusDetails(fields) };
}

/** `grpc-message` is percent-encoded UTF-8; a malformed encoding is shown as received. */
export function decodeGrpcMessage(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function statusDetails(fields: HeaderFields): IncomingDetail[] {
  const bin = fieldValue(fields, "grpc-status-details-bin");
  if (bin === undefined) return [];
  try {
    const status = fromBinary(StatusSchema, base64Decode(bin));
    return status.details.map((any) => ({
      type: any.typeUrl.substring(any.typeUrl.lastIndexOf("/") + 1),
      value: any.value,
    }));
  } catch {
    return [];
  }
}

function fieldValue(fields: HeaderFields, name: string): string | undefined {
  const value = fields[name];
  if (typeof value === "string") return value;
  if (Array.isArray(value)) return value[0];
  return value === undefined ? undefined : String(value);
}

/** The gRPC code for a response that is not HTTP 200 (http-grpc-status-mapping.md). */
export function codeFromHttpStatus(httpStatus: number): Code {
  switch (httpStatus) {
    case 400:
      return Code.Internal;
    case 401:
      return Code.Unauthenticated;
    case 403:
      return Code.PermissionDenied;
    case 404:
      return Code.Unimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.Unavailable;
    default:
      return Code.Unknown;
  }
}

/** HTTP/2 error codes (RFC 9113 §7) that carry meaning for gRPC. */
export const http2ErrorCode = {
  noError: 0,
  flowControl: 3,
  refusedStream: 7,
  cancel: 8,
  enhanceYourCalm: 11,
  inadequateSecurity: 12,
} as const;

/**
 * Why a call failed, when the server reset the stream without a gRPC status (grpc-go's table).
 * REFUSED_STREAM means the server did not process the request at all, so the error is marked
 * never-sent and the call may go to another endpoint.
 */
export function errorFromRstCode(rstCode: number): ConnectError {
  switch (rstCode) {
    case http2ErrorCode.refusedStream:
      return neverSentError("stream refused by the server (REFUSED_STREAM)");
    case http2ErrorCode.cancel:
      return new ConnectError("stream canceled by the server (RST_STREAM CANCEL)", Code.Canceled);
    case http2ErrorCode.flowControl:
    case http2ErrorCode.enhanceYourCalm:
      return new ConnectError(`stream reset by the server (HTTP/2 error ${rstCode})`, Code.ResourceExhausted);
    case http2ErrorCode.inadequateSecurity:
      return new ConnectError("stream reset by the server (INADEQUATE_SECURITY)", Code.PermissionDenied);
    case http2ErrorCode.noError:
      return new ConnectError("server closed the stream without a gRPC status", Code.Internal);
    default:
      return new ConnectError(`stream reset by the server (HTTP/2 error ${rstCode})`, Code.Internal);
  }
}

/** Marks a failure that happened before the request could reach the backend's application. */
class RequestNotSent extends Error {
  override readonly name = "RequestNotSent";
}

/**
 * An Unavailable error for a call that never reached the backend (connection refused, stream
 * refused, session gone before the stream was sent): safe to retry anywhere.
 */
export function neverSentError(message: string, cause?: unknown): ConnectError {
  return new ConnectError(message, Code.Unavailable, undefined, undefined, new RequestNotSent(message, { cause }));
}

/** True when `error` says the request never reached the backend (see `neverSentError`). */
export function isNeverSent(error: unknown): boolean {
  return error instanceof ConnectError && error.cause instanceof RequestNotSent;
}

const maxTimeoutDigits = 99_999_999;

/**
 * A deadline as a `grpc-timeout` value: at most 8 digits, in the finest unit that fits,
 * rounded up so the server never sees a shorter deadline than ours.
 */
export function formatGrpcTimeout(ms: number): string {
  const millis = Math.max(0, Math.ceil(ms));
  if (millis <= maxTimeoutDigits) return `${millis}m`;
  const seconds = Math.ceil(millis / 1000);
  if (seconds <= maxTimeoutDigits) return `${seconds}S`;
  const minutes = Math.ceil(seconds / 60);
  if (minutes <= maxTimeoutDigits) return `${minutes}M`;
  return `${Math.min(Math.ceil(minutes / 60), maxTimeoutDigits)}H`;
}
