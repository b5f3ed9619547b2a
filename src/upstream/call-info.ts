/** What the front tells the upstream pool about a call, through Connect's context values. */
import { createContextKey } from "@connectrpc/connect";

export interface CallInfo {
  /** The HTTP method promises idempotency (GET/HEAD/PUT/DELETE): a response-based retry is safe. */
  readonly idempotent: boolean;
  /** The matched HTTP rule, for logs and metrics. */
  readonly route: string;
  /**
   * The caller renders response messages from their bytes (straight to JSON): the transport
   * hands each one over undecoded, as a WireMessage, instead of building a protobuf-es message.
   */
  readonly wireMessages?: boolean;
}

/**
 * A message as its protobuf bytes: a response as it came off the wire (see
 * CallInfo.wireMessages), or a request the caller encoded itself (sent as it is).
 */
export class WireMessage {
  readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }
}

export const callInfoKey = createContextKey<CallInfo>(
  { idempotent: false, route: "" },
  { description: "grpc-edge call info" },
);
