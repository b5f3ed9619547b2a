/**
 * Strings from the URL (path variables, query parameters) → protobuf-JSON values placed in a
 * JSON tree that `fromJson` later decodes into the request message.
 *
 * The tree is keyed by proto field names only, so one field can never appear twice under its
 * two JSON spellings. Field paths are resolved against the descriptors once (at start-up for
 * path variables, on first sight for query keys) and then only looked up.
 *
 * Accepted forms follow grpc-gateway v2: dotted paths of proto or JSON names, repeated fields by
 * repetition, map entries as `field[key]=value`, enums by name or declared number, bools as Go's
 * ParseBool, bytes as base64 or base64url with or without padding, well-known types in their
 * JSON string forms (Duration also as a Go duration such as `1m30s`), Struct/Value as JSON text.
 */
import {
  fromJson,
  ScalarType,
  type DescEnum,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import { protoCamelCase } from "@bufbuild/protobuf/reflect";
import { isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "./status.ts";

/** A field by proto name (preferred) or JSON name; indexes are built once per message type. */
export function findField(message: DescMessage, name: string): DescField | undefined {
  let index = fieldIndexes.get(message);
  if (index === undefined) {
    index = new Map();
    for (const field of message.fields) index.set(field.jsonName, field);
    for (const field of message.fields) index.set(field.name, field);
    fieldIndexes.set(message, index);
  }
  return index.get(name);
}
const fieldIndexes = new WeakMap<DescMessage, Map<string, DescField>>();

/**
 * A JSON object with nothing above it but an empty, frozen object, so that a key such as
 * `__proto__` or `constructor` is just a key. Not `Object.create(null)`: V8 keeps those in
 * dictionary mode, where building a tree and walking its keys costs ~6× as much.
 */
export function newJsonObject(): JsonObject {
  return new (JsonTreeObject as unknown as new () => JsonObject)();
}

function JsonTreeObject(): void {}
JsonTreeObject.prototype = Object.freeze(Object.create(null));

/** A path variable's field, compiled once: `set` writes the converted value into a tree. */
export interface FieldSetter {
  readonly fields: readonly DescField[];
  set(tree: JsonObject, value: string): void;
}

/**
 * Compiles the setter of one path variable. Throws a plain Error (reported at start-up) when
 * the path names no field, or a repeated, map, or message field without a string form.
 */
export function compileFieldSetter(root: DescMessage, path: readonly string[]): FieldSetter {
  const resolved = resolvePath(root, path);
  const shown = path.join(".");
  if (resolved.kind === "unknown") throw new Error(`path variable "${shown}" names no field of ${root.typeName}`);
  if (resolved.kind === "bad") throw new Error(`path variable "${shown}": ${resolved.reason}`);
  const { fields } = resolved;
  const leaf = fields[fields.length - 1];
  if (leaf.fieldKind === "list" || leaf.fieldKind === "map") {
    throw new Error(`path variable "${shown}" names a ${leaf.fieldKind === "list" ? "repeated" : "map"} field`);
  }
  const convert = converterOf(leaf);
  if (convert === undefined) {
    throw new Error(`path variable "${shown}" names a message field (${typeLabel(leaf)})`);
  }
  const label = fieldLabel(fields);
  return {
    fields,
    set(tree, value) {
      containerOf(tree, fields)[leaf.name] = convertOrThrow(convert, value, label, leaf);
    },
  };
}

export interface QueryParser {
  /**
   * Adds every query parameter that names a field (and is not bound elsewhere) to `tree`.
   * `query` is the URL's query, after the `?`, as the client sent it.
   */
  apply(query: string, tree: JsonObject): void;
}

/**
 * Compiles the query parameter parser of one route. Parameters naming a field in (or under)
 * one of `bound` (path variables, the body field) are ignored, as are unknown names.
 */
export function compileQueryParser(root: DescMessage, bound: ReadonlyArray<readonly DescField[]>): QueryParser {
  const cache = sharedTargetCache(root, bound);
  const targetOf = (key: string): QueryTarget => {
    let target = cache.get(key);
    if (target === undefined) {
      target = compileQueryTarget(root, key, bound);
      // Only names that resolve to a field are remembered: those are the schema's, whereas
      // unknown and invalid names are whatever clients send. And a bounded number even so
      // (a recursive message has endless valid paths).
      if (target.remembered && cache.size < maxCachedKeys) cache.set(key, target);
    }
    return target;
  };
  return {
    apply(query, tree) {
      forEachQueryParameter(query, (key, value) => {
        const bracket = mapKeySyntax.exec(key);
        if (bracket === null) {
          targetOf(key).set(tree, value, undefined);
          return;
        }
        const target = targetOf(`${bracket[1]}[]`);
        // `field[x]` only means a map entry when `field` is a map; otherwise it names nothing.
        if (target.isMap) target.set(tree, value, bracket[2]);
        else targetOf(key).set(tree, value, undefined);
      });
    },
  };
}

/**
 * The name/value pairs of a query, in order, exactly as `new URLSearchParams(query)` lists them
 * (application/x-www-form-urlencoded: `+` is a space, percent-escapes are UTF-8, a malformed one
 * stays as it is). URLSearchParams costs ~0.5 µs per request to build and iterate; most parameters
 * need no decoding at all, and those that decode strictly decode the same either way.
 */
export function forEachQueryParameter(query: string, visit: (name: string, value: string) => void): void {
  const length = query.length;
  let i = query.charCodeAt(0) === 63 /* "?" */ ? 1 : 0; // URLSearchParams drops one leading "?"
  while (i < length) {
    const start = i;
    let eq = -1;
    let plain = true; // ASCII without "%" and "+": means itself
    for (; i < length; i++) {
      const c = query.charCodeAt(i);
      if (c === 38 /* "&" */) break;
      if (c === 61 /* "=" */) {
        if (eq === -1) eq = i;
      } else if (c === 37 /* "%" */ || c === 43 /* "+" */ || c > 127) {
        plain = false;
      }
    }
    if (i > start) {
      const name = query.slice(start, eq === -1 ? i : eq);
      const value = eq === -1 ? "" : query.slice(eq + 1, i);
      if (plain) visit(name, value);
      else visit(formDecoded(name), formDecoded(value));
    }
    i++;
  }
}

function formDecoded(text: string): string {
  if (!nonAscii.test(text)) {
    try {
      return decodeURIComponent(text.replaceAll("+", " "));
    } catch {
      // A malformed escape or invalid UTF-8: URLSearchParams keeps or replaces it, below.
    }
  }
  // Non-ASCII text (to be UTF-8 encoded first, lone surrogates replaced) or a malformed escape:
  // decoded as the value of an unnamed parameter, so that "?", "=" and "&" in it mean nothing.
  for (const [, value] of new URLSearchParams(`&=${text}`)) return value;
  return "";
}

const nonAscii = /[^\x00-\x7f]/;

const maxCachedKeys = 512;

/**
 * Routes over the same message with the same bound fields resolve names alike, so they share
 * one cache: a table of 10,000 routes keeps one per distinct (message, bound fields).
 */
const targetCaches = new WeakMap<DescMessage, Map<string, Map<string, QueryTarget>>>();

/** How many names the routes over `root` with these bound fields remember (for tests). */
export function rememberedQueryNames(root: DescMessage, bound: ReadonlyArray<readonly DescField[]>): number {
  return sharedTargetCache(root, bound).size;
}

function sharedTargetCache(root: DescMessage, bound: ReadonlyArray<readonly DescField[]>): Map<string, QueryTarget> {
  let byBound = targetCaches.get(root);
  if (byBound === undefined) targetCaches.set(root, (byBound = new Map()));
  const key = bound.map((fields) => fields.map((f) => f.number).join(".")).sort().join(",");
  let cache = byBound.get(key);
  if (cache === undefined) byBound.set(key, (cache = new Map()));
  return cache;
}
const mapKeySyntax = /^(.*)\[(.*)\]$/s;

interface QueryTarget {
  readonly isMap: boolean;
  /** Worth a cache entry: the name resolved to a field of the schema. */
  readonly remembered: boolean;
  set(tree: JsonObject, value: string, mapKey: string | undefined): void;
}

/** A name bound elsewhere (path variable, body field). */
const ignored: QueryTarget = { isMap: false, remembered: true, set() {} };
/** A name that is no field. */
const unknownName: QueryTarget = { isMap: false, remembered: false, set() {} };

function failing(message: string, remembered = false): QueryTarget {
  return {
    isMap: false,
    remembered,
    set() {
      throw new ConnectError(message, Code.InvalidArgument);
    },
  };
}

/** `cacheKey` is a dotted path, or a dotted path + `[]` for the map-entry form. */
function compileQueryTarget(root: DescMessage, cacheKey: string, bound: ReadonlyArray<readonly DescField[]>): QueryTarget {
  const mapForm = cacheKey.endsWith("[]");
  const dotted = mapForm ? cacheKey.slice(0, -2) : cacheKey;
  const resolved = resolvePath(root, dotted.split("."));
  if (resolved.kind === "unknown") return unknownName;
  if (resolved.kind === "bad") return failing(`invalid query parameter "${dotted}": ${resolved.reason}`);
  const { fields } = resolved;
  if (bound.some((b) => isPrefix(b, fields))) return ignored;
  const leaf = fields[fields.length - 1];
  const label = fieldLabel(fields);

  if (leaf.fieldKind === "map") {
    if (!mapForm) return failing(`field "${label}" is a map: set entries as ${dotted}[key]=value`, true);
    const convertKey = scalarConverter(leaf.mapKey);
    const convertValue = converterOf(leaf);
    if (convertValue === undefined) return failing(unsupported(label, leaf), true);
    return {
      isMap: true,
      remembered: true,
      set(tree, value, mapKey) {
        const key = convertKey(mapKey ?? "");
        if (key === undefined) {
          throw new ConnectError(
            `invalid map key "${mapKey}" for field "${label}" (${scalarNames[leaf.mapKey]})`,
            Code.InvalidArgument,
          );
        }
        const container = containerOf(tree, fields);
        let entries = container[leaf.name] as JsonObject | undefined;
        if (entries === undefined) container[leaf.name] = entries = newJsonObject();
        entries[String(key)] = convertOrThrow(convertValue, value, label, leaf);
      },
    };
  }
  if (mapForm) return ignored;

  const convert = converterOf(leaf);
  if (convert === undefined) return failing(unsupported(label, leaf), true);
  if (leaf.fieldKind === "list") {
    return {
      isMap: false,
      remembered: true,
      set(tree, value) {
        const container = containerOf(tree, fields);
        let items = container[leaf.name] as JsonValue[] | undefined;
        if (items === undefined) container[leaf.name] = items = [];
        items.push(convertOrThrow(convert, value, label, leaf));
      },
    };
  }
  return {
    isMap: false,
    remembered: true,
    set(tree, value) {
      const container = containerOf(tree, fields);
      // Also catches the same field given by its proto name and its JSON name.
      if (Object.hasOwn(container, leaf.name)) {
        throw new ConnectError(`too many values for field "${label}"`, Code.InvalidArgument);
      }
      container[leaf.name] = convertOrThrow(convert, value, label, leaf);
    },
  };
}

function unsupported(label: string, leaf: DescField): string {
  return `field "${label}" (${typeLabel(leaf)}) cannot be set from a query parameter`;
}

function isPrefix(prefix: readonly DescField[], fields: readonly DescField[]): boolean {
  if (prefix.length > fields.length) return false;
  for (let i = 0; i < prefix.length; i++) if (prefix[i] !== fields[i]) return false;
  return true;
}

type Resolved =
  | { readonly kind: "ok"; readonly fields: readonly DescField[] }
  | { readonly kind: "unknown" }
  | { readonly kind: "bad"; readonly reason: string };

/** Walks a dotted path: every part but the last must be a singular, plain message field. */
function resolvePath(root: DescMessage, path: readonly string[]): Resolved {
  const fields: DescField[] = [];
  let message = root;
  for (let i = 0; i < path.length; i++) {
    const field = findField(message, path[i]);
    if (field === undefined) return { kind: "unknown" };
    fields.push(field);
    if (i === path.length - 1) break;
    if (field.fieldKind !== "message" || hasStringForm(field.message)) {
      return { kind: "bad", reason: `"${fieldLabel(fields)}" is not a message field` };
    }
    message = field.message;
  }
  if (fields.length === 0) return { kind: "unknown" };
  return { kind: "ok", fields };
}

/** The object that holds the last field of `fields`, created on the way as needed. */
function containerOf(tree: JsonObject, fields: readonly DescField[]): JsonObject {
  let node = tree;
  for (let i = 0; i < fields.length - 1; i++) {
    const key = fields[i].name;
    let next = node[key];
    if (next === undefined) {
      next = newJsonObject();
      node[key] = next;
    } else if (next === null || typeof next !== "object" || Array.isArray(next)) {
      throw new ConnectError(`field "${fieldLabel(fields.slice(0, i + 1))}" is set twice`, Code.InvalidArgument);
    }
    node = next;
  }
  return node;
}

function fieldLabel(fields: readonly DescField[]): string {
  return fields.map((f) => f.name).join(".");
}

// ---------------------------------------------------------------------------------------------
// String → JSON value converters. `undefined` means "not a valid value of this type".

type Converter = (value: string) => JsonValue | undefined;

function convertOrThrow(convert: Converter, value: string, label: string, field: DescField): JsonValue {
  const json = convert(value);
  if (json === undefined) {
    throw new ConnectError(
      `invalid value "${value}" for field "${label}" (${typeLabel(field)})`,
      Code.InvalidArgument,
    );
  }
  return json;
}

/** The converter for one value of the field (an element for lists, a value for maps). */
function converterOf(field: DescField): Converter | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return scalarConverter(field.scalar);
    case "enum":
      return enumConverter(field.enum);
    case "message":
      return messageConverter(field.message);
    case "list":
    case "map": {
      const kind = field.fieldKind === "list" ? field.listKind : field.mapKind;
      if (kind === "scalar") return scalarConverter(field.scalar as ScalarType);
      if (kind === "enum") return enumConverter(field.enum as DescEnum);
      return messageConverter(field.message as DescMessage);
    }
  }
}

function typeLabel(field: DescField): string {
  switch (field.fieldKind) {
    case "scalar":
      return scalarNames[field.scalar];
    case "enum":
      return field.enum.typeName;
    case "message":
      return field.message.typeName;
    case "list":
    case "map":
      if (field.enum !== undefined) return field.enum.typeName;
      if (field.message !== undefined) return field.message.typeName;
      return scalarNames[field.scalar as ScalarType];
  }
}

const scalarNames: Readonly<Record<ScalarType, string>> = {
  [ScalarType.DOUBLE]: "double",
  [ScalarType.FLOAT]: "float",
  [ScalarType.INT64]: "int64",
  [ScalarType.UINT64]: "uint64",
  [ScalarType.INT32]: "int32",
  [ScalarType.FIXED64]: "fixed64",
  [ScalarType.FIXED32]: "fixed32",
  [ScalarType.BOOL]: "bool",
  [ScalarType.STRING]: "string",
  [ScalarType.BYTES]: "bytes",
  [ScalarType.UINT32]: "uint32",
  [ScalarType.SFIXED32]: "sfixed32",
  [ScalarType.SFIXED64]: "sfixed64",
  [ScalarType.SINT32]: "sint32",
  [ScalarType.SINT64]: "sint64",
};

const signedInt = /^[+-]?\d+$/;
const unsignedInt = /^\+?\d+$/;
const decimalFloat = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const float32Max = 3.4028234663852886e38;

function integerIn(min: number, max: number, pattern: RegExp): Converter {
  return (value) => {
    if (!pattern.test(value)) return undefined;
    const n = Number(value) + 0; // + 0 turns -0 into 0
    return n >= min && n <= max ? n : undefined;
  };
}

/** 64-bit integers stay strings so that no digit is lost beyond 2^53. */
function bigIntegerIn(min: bigint, max: bigint, pattern: RegExp): Converter {
  return (value) => {
    if (!pattern.test(value)) return undefined;
    const n = BigInt(value);
    return n >= min && n <= max ? n.toString() : undefined;
  };
}

function floatConverter(max: number): Converter {
  return (value) => {
    const special = specialFloats.get(value.toLowerCase());
    if (special !== undefined) return special;
    if (!decimalFloat.test(value)) return undefined;
    const n = Number(value);
    return Math.abs(n) <= max ? n : undefined;
  };
}
const specialFloats = new Map([
  ["nan", "NaN"],
  ["inf", "Infinity"],
  ["+inf", "Infinity"],
  ["infinity", "Infinity"],
  ["+infinity", "Infinity"],
  ["-inf", "-Infinity"],
  ["-infinity", "-Infinity"],
]);

/** Go's strconv.ParseBool forms. */
const boolForms = new Map<string, boolean>([
  ["1", true], ["t", true], ["T", true], ["true", true], ["TRUE", true], ["True", true],
  ["0", false], ["f", false], ["F", false], ["false", false], ["FALSE", false], ["False", false],
]);

/**
 * Standard or URL-safe base64, padded or not, as unpadded standard base64; undefined when it
 * is not base64. A space is read as `+`: an unescaped `+` in a query string arrives as a space.
 */
export function bareBase64(value: string): string | undefined {
  const normalized = value.replace(/[ -]/g, "+").replace(/_/g, "/");
  const bare = normalized.replace(/={1,2}$/, "");
  if (!/^[A-Za-z0-9+/]*$/.test(bare) || bare.length % 4 === 1) return undefined;
  // Padding, when present, must complete the last quantum.
  if (bare.length !== normalized.length && normalized.length % 4 !== 0) return undefined;
  return bare;
}

function paddedBase64(value: string): string | undefined {
  const bare = bareBase64(value);
  return bare === undefined ? undefined : bare + "=".repeat((4 - (bare.length % 4)) % 4);
}

const scalarConverters: Readonly<Record<ScalarType, Converter>> = {
  [ScalarType.STRING]: (value) => value,
  [ScalarType.BOOL]: (value) => boolForms.get(value),
  [ScalarType.BYTES]: paddedBase64,
  [ScalarType.DOUBLE]: floatConverter(Number.MAX_VALUE),
  [ScalarType.FLOAT]: floatConverter(float32Max),
  [ScalarType.INT32]: integerIn(-0x8000_0000, 0x7fff_ffff, signedInt),
  [ScalarType.SINT32]: integerIn(-0x8000_0000, 0x7fff_ffff, signedInt),
  [ScalarType.SFIXED32]: integerIn(-0x8000_0000, 0x7fff_ffff, signedInt),
  [ScalarType.UINT32]: integerIn(0, 0xffff_ffff, unsignedInt),
  [ScalarType.FIXED32]: integerIn(0, 0xffff_ffff, unsignedInt),
  [ScalarType.INT64]: bigIntegerIn(-(2n ** 63n), 2n ** 63n - 1n, signedInt),
  [ScalarType.SINT64]: bigIntegerIn(-(2n ** 63n), 2n ** 63n - 1n, signedInt),
  [ScalarType.SFIXED64]: bigIntegerIn(-(2n ** 63n), 2n ** 63n - 1n, signedInt),
  [ScalarType.UINT64]: bigIntegerIn(0n, 2n ** 64n - 1n, unsignedInt),
  [ScalarType.FIXED64]: bigIntegerIn(0n, 2n ** 64n - 1n, unsignedInt),
};

function scalarConverter(type: ScalarType): Converter {
  return scalarConverters[type];
}

/** By value name, or by the number of a declared value (as grpc-gateway v2). */
function enumConverter(desc: DescEnum): Converter {
  let converter = enumConverters.get(desc);
  if (converter === undefined) {
    const names = new Set(desc.values.map((v) => v.name));
    const numbers = new Set(desc.values.map((v) => v.number));
    converter = (value) => {
      if (names.has(value)) return value;
      if (!signedInt.test(value)) return undefined;
      const n = Number(value) + 0;
      return numbers.has(n) ? n : undefined;
    };
    enumConverters.set(desc, converter);
  }
  return converter;
}
const enumConverters = new WeakMap<DescEnum, Converter>();

/** Messages whose JSON form is not an object (or that we accept as JSON text). */
function hasStringForm(desc: DescMessage): boolean {
  return messageConverter(desc) !== undefined;
}

function messageConverter(desc: DescMessage): Converter | undefined {
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return (value) => (decodes(desc, value) ? value : undefined);
    case "google.protobuf.Duration":
      return durationJson;
    case "google.protobuf.FieldMask":
      return fieldMaskJson;
    case "google.protobuf.Struct":
      return jsonText((json) => json !== null && typeof json === "object" && !Array.isArray(json));
    case "google.protobuf.ListValue":
      return jsonText(Array.isArray);
    case "google.protobuf.Value":
      return jsonText(() => true);
  }
  if (isWrapperDesc(desc)) return scalarConverter(desc.fields[0].scalar);
  return undefined;
}

function decodes(desc: DescMessage, json: JsonValue): boolean {
  try {
    fromJson(desc, json);
    return true;
  } catch {
    return false;
  }
}

function jsonText(accept: (json: JsonValue) => boolean): Converter {
  return (value) => {
    let json: JsonValue;
    try {
      json = JSON.parse(value) as JsonValue;
    } catch {
      return undefined;
    }
    return accept(json) ? json : undefined;
  };
}

/** `a,b_c.d` → the JSON form `a,bC.d` (protobuf JSON spells FieldMask paths in lowerCamelCase). */
function fieldMaskJson(value: string): string | undefined {
  const paths: string[] = [];
  for (const path of value.split(",")) {
    if (path === "") continue;
    const parts = path.split(".");
    for (let i = 0; i < parts.length; i++) {
      if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(parts[i])) return undefined;
      if (parts[i].includes("_")) parts[i] = protoCamelCase(parts[i]);
    }
    paths.push(parts.join("."));
  }
  return paths.join(",");
}

const nanosPerUnit: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  "µs": 1_000n,
  "μs": 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const durationPart = /(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/y;
const maxDurationSeconds = 315_576_000_000n;

/**
 * A Duration from its JSON form (`1.5s`) or a Go duration (`1h2m3.5s`, `300ms`), as grpc-gateway
 * reads it with time.ParseDuration, → the JSON form.
 */
function durationJson(value: string): string | undefined {
  let i = 0;
  let negative = false;
  if (value[0] === "-" || value[0] === "+") {
    negative = value[0] === "-";
    i = 1;
  }
  if (value.slice(i) === "0") return "0s";
  if (i === value.length) return undefined;
  let nanos = 0n;
  while (i < value.length) {
    durationPart.lastIndex = i;
    const part = durationPart.exec(value);
    if (part === null) return undefined;
    const [, whole, fraction = ""] = part;
    if (whole === "" && fraction === "") return undefined;
    const unit = nanosPerUnit[part[3]];
    nanos += BigInt(whole || "0") * unit;
    if (fraction !== "") nanos += (BigInt(fraction) * unit) / 10n ** BigInt(fraction.length);
    i = durationPart.lastIndex;
  }
  const seconds = nanos / 1_000_000_000n;
  if (seconds > maxDurationSeconds) return undefined;
  const rest = nanos % 1_000_000_000n;
  const sign = negative && nanos !== 0n ? "-" : "";
  return rest === 0n ? `${sign}${seconds}s` : `${sign}${seconds}.${rest.toString().padStart(9, "0")}s`;
}
