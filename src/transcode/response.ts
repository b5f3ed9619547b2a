/**
 * gRPC responses and errors → JSON text: protobuf's canonical JSON mapping (protobuf-es
 * `toJson`), google.rpc.Status for errors, and the NDJSON / SSE framing of server streams.
 */
import {
  create,
  createRegistry,
  fromBinary,
  ScalarType,
  toBinary,
  toJson,
  type DescField,
  type DescMessage,
  type JsonValue,
  type JsonWriteOptions,
  type Message,
  type Registry,
} from "@bufbuild/protobuf";
import { base64Encode } from "@bufbuild/protobuf/wire";
import { AnySchema, anyPack, isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { WireMessage } from "../upstream/call-info.ts";
import { Code, ConnectError } from "./status.ts";
import { compileWireJsonWriter } from "./wire-json.ts";

export interface JsonOptions {
  readonly registry: Registry;
  /** Emit fields that hold their zero value (grpc-gateway v2's default). */
  readonly emitUnpopulated: boolean;
  /** proto field names instead of lowerCamelCase JSON names. */
  readonly useProtoNames: boolean;
}

export interface ResponseRenderer {
  /**
   * The JSON text of one response message (honours response_body). A WireMessage is rendered
   * from its bytes; a ConnectError(Internal) says when they do not decode.
   */
  render(message: Message | WireMessage): string;
  /** Renders WireMessages directly: the transport may leave response messages undecoded. */
  readonly rendersWire: boolean;
}

/** Compiled once per route. Throws a plain Error if `responseBody` names no field of `output`. */
export function compileResponseRenderer(
  output: DescMessage,
  responseBody: string | undefined,
  options: JsonOptions,
): ResponseRenderer {
  const write: Partial<JsonWriteOptions> = {
    registry: options.registry,
    alwaysEmitImplicit: options.emitUnpopulated,
    useProtoFieldName: options.useProtoNames,
    enumAsInteger: false,
  };
  if (responseBody === undefined) {
    const fromWire = compileWireJsonWriter(output, {
      registry: options.registry,
      alwaysEmitImplicit: options.emitUnpopulated,
      useProtoFieldName: options.useProtoNames,
    });
    if (fromWire === undefined) return decoded(output, (message) => JSON.stringify(toJson(output, message, write)));
    return {
      rendersWire: true,
      render(message) {
        if (!(message instanceof WireMessage)) return JSON.stringify(toJson(output, message, write));
        return JSON.stringify(undecodable(() => fromWire(message.bytes)));
      },
    };
  }
  const field = output.fields.find((f) => f.name === responseBody || f.jsonName === responseBody);
  if (field === undefined) throw new Error(`response_body "${responseBody}" names no field of ${output.typeName}`);

  if (field.fieldKind === "message" && field.oneof === undefined && !isWrapperDesc(field.message)) {
    // The common case renders only the field's message; an unset one is `{}`, as grpc-gateway
    // marshals a nil message. (Wrapper fields hold plain values locally: the general path.)
    const localName = field.localName;
    const desc = field.message;
    return decoded(output, (message) => {
      const value = (message as unknown as Record<string, Message | undefined>)[localName];
      return value === undefined ? "{}" : JSON.stringify(toJson(desc, value, write));
    });
  }
  const key = options.useProtoNames ? field.name : field.jsonName;
  const unset = unsetJson(field, options.emitUnpopulated);
  return decoded(output, (message) => {
    const json = toJson(output, message, write) as Record<string, JsonValue>;
    const value = json[key];
    return value === undefined ? unset : JSON.stringify(value);
  });
}

/** A renderer of decoded messages; a WireMessage (not asked for, but possible) is decoded first. */
function decoded(output: DescMessage, render: (message: Message) => string): ResponseRenderer {
  return {
    rendersWire: false,
    render: (message) =>
      render(message instanceof WireMessage ? undecodable(() => fromBinary(output, message.bytes)) : message),
  };
}

/** Response bytes that do not decode are the upstream's fault: Internal, as the transport says it. */
function undecodable<T>(decode: () => T): T {
  try {
    return decode();
  } catch (e) {
    throw new ConnectError(`cannot decode the response: ${(e as Error).message}`, Code.Internal);
  }
}

/** What grpc-gateway writes for a response_body field that the JSON of its message omits. */
function unsetJson(field: DescField, emitUnpopulated: boolean): string {
  switch (field.fieldKind) {
    case "message":
    case "map":
      return "{}";
    case "list":
      return emitUnpopulated ? "[]" : "null";
    case "enum":
      return JSON.stringify(field.enum.values[0].name);
    case "scalar":
      return zeroScalarJson[field.scalar];
  }
}

/** The canonical JSON of each scalar type's zero value. */
const zeroScalarJson: Readonly<Record<ScalarType, string>> = {
  [ScalarType.DOUBLE]: "0",
  [ScalarType.FLOAT]: "0",
  [ScalarType.INT32]: "0",
  [ScalarType.UINT32]: "0",
  [ScalarType.SINT32]: "0",
  [ScalarType.FIXED32]: "0",
  [ScalarType.SFIXED32]: "0",
  [ScalarType.INT64]: '"0"',
  [ScalarType.UINT64]: '"0"',
  [ScalarType.SINT64]: '"0"',
  [ScalarType.FIXED64]: '"0"',
  [ScalarType.SFIXED64]: '"0"',
  [ScalarType.BOOL]: "false",
  [ScalarType.STRING]: '""',
  [ScalarType.BYTES]: '""',
};

/**
 * google.rpc.Status as JSON text, for any error: `{"code":n,"message":"...","details":[...]}`.
 * Details are Any JSON when the registry knows their type; otherwise `{"@type", "value"}` with
 * the raw bytes in base64. Never throws.
 */
export function renderStatus(error: ConnectError, registry: Registry): string {
  const details: JsonValue[] = [];
  for (const detail of error.details) details.push(detailJson(detail, registry));
  return JSON.stringify({ code: error.code, message: error.rawMessage, details });
}

type Detail = ConnectError["details"][number];

function detailJson(detail: Detail, registry: Registry): JsonValue {
  let typeName: string;
  let bytes: Uint8Array;
  if ("desc" in detail) {
    typeName = detail.desc.typeName;
    bytes = new Uint8Array(0);
    try {
      const message = create(detail.desc, detail.value);
      bytes = toBinary(detail.desc, message);
      // The detail's own descriptor may be unknown to the registry: print with both.
      const known = registry.getMessage(typeName) === undefined ? createRegistry(registry, detail.desc) : registry;
      return toJson(AnySchema, anyPack(detail.desc, message), { registry: known });
    } catch {
      // Fall through to the opaque form.
    }
  } else {
    typeName = detail.type;
    bytes = detail.value;
    try {
      return toJson(AnySchema, create(AnySchema, { typeUrl: typeUrlOf(typeName), value: bytes }), { registry });
    } catch {
      // Unknown type or undecodable bytes: fall through to the opaque form.
    }
  }
  return { "@type": typeUrlOf(typeName), value: base64Encode(bytes) };
}

function typeUrlOf(typeName: string): string {
  return `type.googleapis.com/${typeName}`;
}

/**
 * One message of a server stream. NDJSON: `{"result":…}` per line; SSE: one `data:` event each.
 * The JSON text never holds a raw newline (JSON.stringify escapes them), so SSE needs no splitting.
 */
export function streamResultChunk(messageJson: string, format: "ndjson" | "sse"): string {
  return format === "sse" ? `data: {"result":${messageJson}}\n\n` : `{"result":${messageJson}}\n`;
}

/** The failure that ends a server stream: `{"error":<status>}` line, or an SSE `error` event. */
export function streamErrorChunk(statusJson: string, format: "ndjson" | "sse"): string {
  return format === "sse" ? `event: error\ndata: ${statusJson}\n\n` : `{"error":${statusJson}}\n`;
}
