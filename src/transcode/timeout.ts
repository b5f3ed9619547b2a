/**
 * The `Grpc-Timeout` request header (gRPC over HTTP/2: `TimeoutValue TimeoutUnit`, at most
 * 8 digits, units H M S m u n) and how it combines with the upstream's default deadline.
 */
import { Code, ConnectError } from "./status.ts";

/** Each unit as a fraction of a millisecond: [multiplier, divisor] keeps integer arithmetic exact. */
const unitToMillis: Readonly<Record<string, readonly [number, number]>> = {
  H: [3_600_000, 1],
  M: [60_000, 1],
  S: [1_000, 1],
  m: [1, 1],
  u: [1, 1_000],
  n: [1, 1_000_000],
};

const grpcTimeout = /^(\d{1,8})([HMSmun])$/;

/**
 * A `Grpc-Timeout` value in milliseconds; sub-millisecond values round up, so a non-zero
 * timeout never becomes "already expired".
 *
 * @example parseGrpcTimeout("100m") // 100
 * @example parseGrpcTimeout("2u")   // 1
 */
export function parseGrpcTimeout(value: string): number {
  const match = grpcTimeout.exec(value);
  if (match === null) {
    throw new ConnectError(
      `invalid grpc-timeout "${value}": expected up to 8 digits and a unit (H, M, S, m, u, n)`,
      Code.InvalidArgument,
    );
  }
  const [multiplier, divisor] = unitToMillis[match[2]];
  return Math.ceil((Number(match[1]) * multiplier) / divisor);
}

/** The call deadline: the request may shorten the upstream's default, never extend it. */
export function effectiveTimeoutMs(defaultMs: number, header: string | null | undefined): number {
  if (header === null || header === undefined) return defaultMs;
  return Math.min(defaultMs, parseGrpcTimeout(header));
}
