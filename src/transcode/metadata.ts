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
}

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
export function outgoingMetadata(headers: Headers, client: ClientInfo): Headers {
  const out = new Headers();
  const connectionListed = listedInConnection(headers.get("connection"));
  for (const [name, value] of headers) {
    if (connectionListed.has(name)) continue;
    if (name === "authorization") {
      if (validTextValue.test(value)) out.append("authorization", value);
      continue;
    }
    if (!name.startsWith(metadataPrefix)) continue;
    const key = name.slice(metadataPrefix.length);
    if (!validKey.test(key) || isReserved(key) || connectionListed.has(key)) continue;
    if (key.endsWith("-bin")) out.append(key, binaryValue(name, value));
    else if (validTextValue.test(value)) out.append(key, value);
  }

  const forwardedFor = headers.get("x-forwarded-for");
  const remote = client.remoteAddress;
  if (remote !== undefined && remote !== "") {
    out.set("x-forwarded-for", forwardedFor ? `${forwardedFor}, ${remote}` : remote);
  } else if (forwardedFor) {
    out.set("x-forwarded-for", forwardedFor);
  }
  const forwardedHost = headers.get("x-forwarded-host") || headers.get("host") || client.host;
  if (forwardedHost) out.set("x-forwarded-host", forwardedHost);
  out.set("x-forwarded-proto", headers.get("x-forwarded-proto") || client.protocol);
  return out;
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
