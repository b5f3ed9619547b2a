/**
 * HTTP request parts → the gRPC request message, by the rules of google/api/http.proto
 * ("Rules for HTTP mapping"), with grpc-gateway v2's choices where the spec leaves room:
 *
 * - path variables set their fields, and override the same fields in the body;
 * - `body: "*"`: the JSON body is the whole message and query parameters are not applied;
 * - `body: "field"`: the JSON body is that field's value; query parameters fill the rest;
 * - no body: query parameters fill everything not bound by the path;
 * - PATCH with a message body field: an unset FieldMask (`update_mask`, or the only FieldMask
 *   field) is filled with the paths present in the body.
 *
 * Everything is assembled as one protobuf-JSON tree and decoded by protobuf-es `fromJson`, which
 * owns the canonical JSON forms (int64 strings, enum names, base64, well-known types). A tree
 * already in canonical form with nothing to merge skips the message: json-wire.ts encodes it
 * to the same bytes directly, and hands everything else back to fromJson.
 */
import {
  create,
  fromJson,
  mergeFromJson,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonReadOptions,
  type JsonValue,
  type Message,
  type Registry,
} from "@bufbuild/protobuf";
import { compileFieldSetter, compileQueryParser, findField, newJsonObject, type FieldSetter, type QueryParser } from "./query.ts";
import { WireMessage } from "../upstream/call-info.ts";
import { compileJsonWireEncoder } from "./json-wire.ts";
import { Code, ConnectError } from "./status.ts";

export interface RequestMapperOptions {
  readonly registry: Registry;
}

export interface HttpRequestParts {
  /** "GET", "PATCH", ... */
  readonly httpMethod: string;
  /** From the router, already percent-decoded. */
  readonly variables: ReadonlyArray<readonly [fieldPath: readonly string[], value: string]>;
  /** The URL's query, after the `?`, undecoded. */
  readonly query: string;
  /** undefined or "" when there is no body. */
  readonly bodyText: string | undefined;
}

/**
 * A request message: a protobuf-es message, or already its bytes when the JSON tree was in the
 * canonical form json-wire.ts encodes directly (the transport sends those as they are).
 */
export type RequestMessage = Message | WireMessage;

export interface RequestMapper {
  /** The request message for one unary/server-streaming call. Throws ConnectError(InvalidArgument). */
  map(req: HttpRequestParts, strict: boolean): RequestMessage;
  /** One message of a client-streaming call: one NDJSON line, mapped like the body, plus path variables. */
  mapStreamItem(line: string, variables: HttpRequestParts["variables"], strict: boolean): RequestMessage;
}

interface PathVariable {
  readonly setter: FieldSetter;
  /** Lies in the body's part of the message, so it is merged after the body is decoded. */
  readonly insideBody: boolean;
}

/**
 * Compiles the mapping of one route at start-up. Throws a plain Error when `body` names no
 * field or a repeated field, or a path variable names a missing, repeated, map or message
 * (other than a well-known type with a string form) field.
 */
export function compileRequestMapper(
  input: DescMessage,
  body: string | undefined,
  pathFieldPaths: readonly (readonly string[])[],
  options: RequestMapperOptions,
): RequestMapper {
  const lenient: Partial<JsonReadOptions> = { registry: options.registry, ignoreUnknownFields: true };
  const strictRead: Partial<JsonReadOptions> = { registry: options.registry, ignoreUnknownFields: false };
  const wholeBody = body === "*";
  const bodyField = body === undefined || wholeBody ? undefined : findBodyField(input, body);

  const variables = new Map<string, PathVariable>();
  for (const path of pathFieldPaths) {
    const setter = compileFieldSetter(input, path);
    variables.set(path.join("."), { setter, insideBody: wholeBody || setter.fields[0] === bodyField });
  }
  const query: QueryParser | undefined = wholeBody
    ? undefined
    : compileQueryParser(input, [
        ...[...variables.values()].map((v) => v.setter.fields),
        ...(bodyField === undefined ? [] : [[bodyField]]),
      ]);
  const patchMask = bodyField === undefined ? undefined : patchMaskField(input, bodyField);
  const encodeLenient = compileJsonWireEncoder(input, { ignoreUnknownFields: true });
  const encodeStrict = compileJsonWireEncoder(input, { ignoreUnknownFields: false });

  /**
   * Decodes `tree`, then merges the path variables that fall inside the client's JSON (so they
   * win over it). `ownTree`: the tree's top level is ours, not the client's. `asBytes`: the
   * caller takes the message as bytes (it does not read the fields afterwards).
   */
  function decode(tree: JsonValue, ownTree: boolean, vars: HttpRequestParts["variables"], strict: boolean, asBytes: true): RequestMessage;
  function decode(tree: JsonValue, ownTree: boolean, vars: HttpRequestParts["variables"], strict: boolean, asBytes: false): Message;
  function decode(tree: JsonValue, ownTree: boolean, vars: HttpRequestParts["variables"], strict: boolean, asBytes: boolean): RequestMessage {
    const read = strict ? strictRead : lenient;
    let insideBody: JsonObject | undefined;
    for (const [path, value] of vars) {
      const variable = variables.get(path.join("."));
      if (variable === undefined) {
        throw new ConnectError(`route has no path variable "${path.join(".")}"`, Code.Internal);
      }
      if (variable.insideBody || !ownTree) variable.setter.set((insideBody ??= newJsonObject()), value);
      else variable.setter.set(tree as JsonObject, value);
    }
    if (asBytes && insideBody === undefined) {
      // No merge to do: the canonical tree goes straight to bytes, anything else to protobuf-es.
      const bytes = (strict ? encodeStrict : encodeLenient)(tree);
      if (bytes !== undefined) return new WireMessage(bytes);
    }
    let message: Message;
    try {
      message = fromJson(input, tree, read);
    } catch (e) {
      throw decodeError(e, input, tree, read);
    }
    if (insideBody !== undefined) {
      try {
        mergeFromJson(input, message, insideBody, read);
      } catch (e) {
        throw decodeError(e, input, insideBody, read);
      }
    }
    return message;
  }

  /** The tree for a body-bound value: the whole message, or a tree holding the body field. */
  function bodyTree(bodyJson: JsonValue | undefined): JsonValue {
    if (bodyField === undefined) return bodyJson ?? newJsonObject();
    const tree = newJsonObject();
    if (bodyJson !== undefined) tree[bodyField.name] = bodyJson;
    return tree;
  }

  return {
    map(req, strict) {
      const bodyJson = body === undefined ? undefined : parseBody(req.bodyText);
      let tree: JsonValue;
      if (wholeBody) {
        tree = bodyJson ?? newJsonObject();
      } else {
        tree = bodyTree(bodyJson);
        query?.apply(req.query, tree as JsonObject);
      }
      if (patchMask === undefined || req.httpMethod.toUpperCase() !== "PATCH") {
        return decode(tree, !wholeBody, req.variables, strict, true);
      }
      const message = decode(tree, !wholeBody, req.variables, strict, false);
      fillPatchMask(message, patchMask, (bodyField as DescField & { fieldKind: "message" }).message, bodyJson);
      return message;
    },
    mapStreamItem(line, vars, strict) {
      return decode(bodyTree(parseBody(line)), bodyField !== undefined, vars, strict, true);
    },
  };
}

/**
 * protobuf-es's decoding error as InvalidArgument. Some of its messages (enums, well-known
 * types) do not say which field failed; then the field is found by decoding key by key.
 */
function decodeError(e: unknown, desc: DescMessage, json: JsonValue, read: Partial<JsonReadOptions>): ConnectError {
  const reason = e instanceof Error ? e.message : String(e);
  const path = reason.startsWith("cannot decode field ") ? undefined : failingField(desc, json, read, 0);
  return new ConnectError(path === undefined ? reason : `invalid value for field "${path}": ${reason}`, Code.InvalidArgument);
}

function failingField(desc: DescMessage, json: JsonValue, read: Partial<JsonReadOptions>, depth: number): string | undefined {
  if (!isObject(json) || depth > maxErrorSearchDepth) return undefined;
  for (const key of Object.keys(json)) {
    const field = findField(desc, key);
    if (field === undefined) continue;
    try {
      fromJson(desc, { [key]: json[key] }, read);
    } catch {
      if (field.fieldKind !== "message" || isWellKnown(field.message)) return field.name;
      const inner = failingField(field.message, json[key], read, depth + 1);
      return inner === undefined ? field.name : `${field.name}.${inner}`;
    }
  }
  return undefined;
}
const maxErrorSearchDepth = 32;

function findBodyField(input: DescMessage, body: string): DescField {
  const field = findField(input, body);
  if (field === undefined) throw new Error(`body "${body}" names no field of ${input.typeName}`);
  if (field.fieldKind === "list") throw new Error(`body "${body}" names a repeated field`);
  return field;
}

/** The parsed JSON body; undefined when there is none. */
function parseBody(text: string | undefined): JsonValue | undefined {
  if (text === undefined || text.trim() === "") return undefined;
  try {
    return JSON.parse(text) as JsonValue;
  } catch (e) {
    throw new ConnectError(`invalid JSON body: ${(e as Error).message}`, Code.InvalidArgument);
  }
}

type FieldMaskField = DescField & { fieldKind: "message" };

/**
 * The field a PATCH fills from the body: `update_mask` (grpc-gateway v2), else the only
 * top-level FieldMask field (what grpc-gateway 1.x generates). Only for a plain message body.
 */
function patchMaskField(input: DescMessage, bodyField: DescField): FieldMaskField | undefined {
  if (bodyField.fieldKind !== "message" || isWellKnown(bodyField.message)) return undefined;
  const masks = input.fields.filter(
    (f): f is FieldMaskField =>
      f.fieldKind === "message" &&
      f.message.typeName === "google.protobuf.FieldMask" &&
      f.oneof === undefined &&
      f !== bodyField,
  );
  return masks.find((f) => f.name === "update_mask") ?? (masks.length === 1 ? masks[0] : undefined);
}

function fillPatchMask(message: Message, maskField: FieldMaskField, bodyMessage: DescMessage, bodyJson: JsonValue | undefined): void {
  const fields = message as unknown as Record<string, { paths: string[] } | undefined>;
  const current = fields[maskField.localName];
  if (current !== undefined && current.paths.length > 0) return;
  if (!isObject(bodyJson)) return;
  const paths: string[] = [];
  collectPaths(bodyMessage, bodyJson, "", paths);
  if (paths.length > 0) fields[maskField.localName] = create(maskField.message, { paths }) as unknown as { paths: string[] };
}

/**
 * The proto-name paths of the keys present in a body object, descending into non-empty objects
 * of plain message fields (not maps, lists or well-known types, whose value is replaced whole).
 */
function collectPaths(message: DescMessage, json: JsonObject, prefix: string, out: string[]): void {
  for (const key of Object.keys(json)) {
    const field = findField(message, key);
    if (field === undefined) continue;
    const path = prefix + field.name;
    const value = json[key];
    if (field.fieldKind === "message" && !isWellKnown(field.message) && isObject(value) && Object.keys(value).length > 0) {
      collectPaths(field.message, value, `${path}.`, out);
    } else {
      out.push(path);
    }
  }
}

function isWellKnown(message: DescMessage): boolean {
  return message.typeName.startsWith("google.protobuf.");
}

function isObject(json: JsonValue | undefined): json is JsonObject {
  return json !== null && typeof json === "object" && !Array.isArray(json);
}
