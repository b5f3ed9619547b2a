/** What the front tells the upstream pool about a call, through Connect's context values. */
import { createContextKey } from "@connectrpc/connect";

export interface CallInfo {
  /** The HTTP method promises idempotency (GET/HEAD/PUT/DELETE): a response-based retry is safe. */
  readonly idempotent: boolean;
  /** The matched HTTP rule, for logs and metrics. */
  readonly route: string;
}

export const callInfoKey = createContextKey<CallInfo>(
  { idempotent: false, route: "" },
  { description: "grpc-edge call info" },
);
