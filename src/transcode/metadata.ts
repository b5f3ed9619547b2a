/**
 * HTTP headers ↔ gRPC metadata, grpc-gateway style: only `Grpc-Metadata-<Key>` headers and
 * `Authorization` travel upstream (plus the X-Forwarded-* trio the gateway adds); upstream
 * headers and trailers come back as `Grpc-Metadata-<Key>` response headers.
 */
import { bareBase64 } from "./query.ts";
import { Code, ConnectError } from "./status.ts";

export interface ClientInfo {
  readonly remoteAddress: string | undefined;
  readonly host: string | undefined;
  readonly protocol: "http" | "https";
  /**
   * The request's headers as the runtime already parsed them (Node's `IncomingMessage.headers`),
   * when it has them: reading these skips building a Web `Headers` just to look at each name.
   */
  readonly headerFields?: HeaderFields;
}

/** Lower-case names; a repeated header joined with ", " or listed (Node's IncomingHttpHeaders). */
export type HeaderFields = Readonly<Record<string, string | readonly string[] | undefined>>;

/** Metadata for the upstream call: lower-case keys, each a single wire value (a HeadersInit). */
export type OutgoingMetadata = Record<string, string>;

const metadataPrefix = "grpc-metadata-";

/** Connection-level headers (RFC 9110 §7.6.1) that describe one hop, never the call. */
const hopByHop = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/**
 * Names the gRPC transport owns: letting a client set them would corrupt the call
 * (content-type, te), fake the protocol (grpc-*), or duplicate what the transport sends.
 */
const transportOwned = new Set([
  "content-type",
  "content-length",
  "content-encoding",
  "accept-encoding",
  "user-agent",
  "host",
  "date",
]);

/** gRPC metadata keys: lower-case letters, digits, `-`, `_` and `.`. */
const validKey = /^[0-9a-z_.-]+$/;
/** gRPC ASCII metadata values: printable ASCII and space. */
const validTextValue = /^[\x20-\x7e]*$/;

function isReserved(key: string): boolean {
  return key.startsWith(":") || key.startsWith("grpc-") || transportOwned.has(key) || hopByHop.has(key);
}

/**
 * The metadata sent upstream for one request.
 * Throws ConnectError(InvalidArgument) for a `-bin` header that is not base64.
 */
export function outgoingMetadata(headers: Headers, client: ClientInfo): OutgoingMetadata {
  const out: OutgoingMetadata = {};
  const fields = client.headerFields;
  const connectionListed = listedInConnection(headers.get("connection"));
  const add = (name: string, value: string): void => {
    if (connectionListed.has(name)) return;
    if (name === "authorization") {
      if (validTextValue.test(value)) append(out, "authorization", value);
      return;
    }
    if (!name.startsWith(metadataPrefix)) return;
    const key = name.slice(metadataPrefix.length);
    if (!validKey.test(key) || isReserved(key) || connectionListed.has(key)) return;
    if (key.endsWith("-bin")) append(out, key, binaryValue(name, value));
    else if (validTextValue.test(value)) append(out, key, value);
  };
  if (fields === undefined) {
    for (const [name, value] of headers) add(name, value);
  } else {
    for (const name in fields) {
      const value = fields[name];
      if (typeof value === "string") add(name, value);
      else if (value !== undefined) add(name, value.join(", "));
    }
  }

  const forwardedFor = headers.get("x-forwarded-for");
  const remote = client.remoteAddress;
  if (remote !== undefined && remote !== "") {
    out["x-forwarded-for"] = forwardedFor ? `${forwardedFor}, ${remote}` : remote;
  } else if (forwardedFor) {
    out["x-forwarded-for"] = forwardedFor;
  }
  const forwardedHost = headers.get("x-forwarded-host") || headers.get("host") || client.host;
  if (forwardedHost) out["x-forwarded-host"] = forwardedHost;
  out["x-forwarded-proto"] = headers.get("x-forwarded-proto") || client.protocol;
  return out;
}

/** A repeated name is one comma-joined value, as `Headers.append` would make it. */
function append(out: OutgoingMetadata, key: string, value: string): void {
  const seen = out[key];
  out[key] = seen === undefined ? value : `${seen}, ${value}`;
}

/** Header names a `Connection` header declares hop-by-hop for this request. */
function listedInConnection(connection: string | null): ReadonlySet<string> {
  if (!connection) return emptySet;
  const names = new Set<string>();
  for (const token of connection.split(",")) {
    const name = token.trim().toLowerCase();
    if (name !== "") names.add(name);
  }
  return names;
}
const emptySet: ReadonlySet<string> = new Set();

/**
 * A `-bin` value as gRPC wants it on the wire: standard base64 without padding (gRPC accepts
 * padded and unpadded input, and several values joined by commas).
 */
function binaryValue(header: string, value: string): string {
  const parts = value.split(",");
  for (let i = 0; i < parts.length; i++) {
    const bare = bareBase64(parts[i].trim());
    if (bare === undefined) {
      throw new ConnectError(`invalid binary header ${header}: not base64`, Code.InvalidArgument);
    }
    parts[i] = bare;
  }
  return parts.join(",");
}

/** Response-side names that are about the HTTP/2 exchange with the upstream, not metadata. */
function isTransportHeader(key: string): boolean {
  return isReserved(key) || key === "server";
}

/**
 * Upstream headers, then trailers, as `Grpc-Metadata-<key>` HTTP response headers.
 * Transport-level names (pseudo-headers, grpc-*, content-type, hop-by-hop) are left out.
 */
export function incomingMetadataHeaders(
  header: Headers | undefined,
  trailer: Headers | undefined,
): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const source of [header, trailer]) {
    if (source === undefined) continue;
    for (const [key, value] of source) {
      if (isTransportHeader(key)) continue;
      out.push([`Grpc-Metadata-${key}`, value]);
    }
  }
  return out;
}
