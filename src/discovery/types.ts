/**
 * What discovery tells the upstream pool: the full current set of endpoints of one upstream.
 * Discovery never touches sessions; the pool diffs successive sets and drains what left.
 */

/** One backend address as discovery sees it (fields follow EndpointSlice conditions). */
export interface DiscoveredEndpoint {
  /** IPv4, IPv6 (no brackets) or host name. */
  readonly address: string;
  readonly port: number;
  /** Route new calls here (EndpointSlice `ready`). */
  readonly ready: boolean;
  /** Able to serve even if not ready (KEP-1672 `serving`); used when nothing is ready. */
  readonly serving: boolean;
  /** Going away: finish in-flight calls, start none. */
  readonly terminating: boolean;
  readonly zone?: string;
  /** Pod or host name, for display. */
  readonly name?: string;
  /** EndpointSlice `hints.forZones`. */
  readonly forZones?: readonly string[];
}

/** The key the pool identifies an endpoint by: `host:port`, IPv6 bracketed. */
export function endpointKey(e: { address: string; port: number }): string {
  return e.address.includes(":") ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

export interface DiscoveryEvents {
  /** A complete replacement set (not a diff). Called at least once when discovery is healthy. */
  onEndpoints(endpoints: readonly DiscoveredEndpoint[]): void;
  /** A non-fatal problem (lookup failed, watch cut); the last good set stays in force. */
  onError?(error: Error): void;
}

/** A source of endpoint sets. `start` returns at once; `signal` stops it. */
export interface Discovery {
  start(events: DiscoveryEvents, signal: AbortSignal): void;
  /** The pool asks for a fresh look, e.g. when every endpoint is failing. Optional. */
  refresh?(): void;
}
