/**
 * gRPC status ↔ HTTP status: the one table every error response goes through.
 *
 * Errors everywhere in grpc-edge are `ConnectError` (a gRPC `Code`, a message, metadata and
 * details); only this module turns a code into an HTTP status.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/** The grpc-gateway v2 / google.rpc table (DESIGN §1). */
const httpStatusByCode: Readonly<Record<Code, number>> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/** HTTP status for a gRPC code; 200 for OK (0), 500 for a code outside the table. */
export function httpStatusOf(code: number): number {
  if (code === 0) return 200;
  return httpStatusByCode[code as Code] ?? 500;
}

/**
 * A few HTTP-level failures have a better HTTP status than their code's (405 Method Not
 * Allowed is Unimplemented in gRPC terms; 413 for an oversized body is ResourceExhausted).
 * As grpc-gateway's HTTPStatusError does, the override travels with the error.
 */
const httpStatusOverride = new WeakMap<ConnectError, number>();

export function withHttpStatus(error: ConnectError, httpStatus: number): ConnectError {
  httpStatusOverride.set(error, httpStatus);
  return error;
}

/** The HTTP status of an error response: its override, else the table. */
export function httpStatusOfError(error: ConnectError): number {
  return httpStatusOverride.get(error) ?? httpStatusOf(error.code);
}

/** Any thrown value as a ConnectError; unknown failures become code 2 (Unknown). */
export function asConnectError(reason: unknown): ConnectError {
  return ConnectError.from(reason, Code.Unknown);
}

export { Code, ConnectError };
