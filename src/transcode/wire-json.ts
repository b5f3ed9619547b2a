/**
 * Protobuf binary → the JSON value protobuf-es's `toJson` would give, without building the
 * message in between. A response is otherwise decoded into a protobuf-es message (every field
 * initialised, nested objects allocated) only to be walked once more into JSON and dropped.
 *
 * The output is the same JSON value as `toJson(desc, fromBinary(desc, bytes), options)`, key
 * order included (fields by number, map keys as a JS object orders them); the differential
 * tests in wire-json.test.ts hold it to that. Whatever this does not render itself goes to
 * protobuf-es: the well-known types with a JSON form of their own (Timestamp, Any, Struct, …)
 * per field, and the whole message when the wire holds something that needs the message model
 * (a message field sent twice, which protobuf merges; groups; a closed enum's unknown value;
 * extensions; proto2 required fields; a nesting deeper than protobuf-es allows).
 */
import {
  fromBinary,
  ScalarType,
  toJson,
  type DescField,
  type DescMessage,
  type JsonObject,
  type JsonValue,
  type JsonWriteOptions,
  type Registry,
} from "@bufbuild/protobuf";
import { base64Encode, BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { fieldPresence, leftToProtobufEs, scalarWireType } from "./scalar-wire.ts";

export interface WireJsonOptions {
  readonly registry: Registry | undefined;
  readonly alwaysEmitImplicit: boolean;
  readonly useProtoFieldName: boolean;
}

/** Renders one message's bytes. Throws what protobuf-es throws for bytes it cannot decode. */
export type WireJsonWriter = (bytes: Uint8Array) => JsonValue;

/**
 * The writer for `desc`, or undefined when the type as a whole is protobuf-es's to render
 * (a well-known type with its own JSON form, extensions, required fields, groups).
 */
export function compileWireJsonWriter(desc: DescMessage, options: WireJsonOptions): WireJsonWriter | undefined {
  const compiler = compilerFor(options);
  if (compiler.writers.has(desc)) return compiler.writers.get(desc);
  const writer = newWriter(desc, compiler);
  compiler.writers.set(desc, writer);
  return writer;
}

/**
 * One compiler per registry and option set, so that plans and writers are shared by every
 * route: a table of 10,000 routes over one message type compiles it once.
 */
const compilers = new WeakMap<object, Map<string, Compiler>>();
const noRegistry = {};

function compilerFor(options: WireJsonOptions): Compiler {
  let byOptions = compilers.get(options.registry ?? noRegistry);
  if (byOptions === undefined) compilers.set(options.registry ?? noRegistry, (byOptions = new Map()));
  const key = `${options.alwaysEmitImplicit}/${options.useProtoFieldName}`;
  let compiler = byOptions.get(key);
  if (compiler === undefined) {
    const write: Partial<JsonWriteOptions> = {
      registry: options.registry,
      alwaysEmitImplicit: options.alwaysEmitImplicit,
      useProtoFieldName: options.useProtoFieldName,
    };
    byOptions.set(key, (compiler = new Compiler(options, write)));
  }
  return compiler;
}

function newWriter(desc: DescMessage, compiler: Compiler): WireJsonWriter | undefined {
  const write = compiler.write;
  const plan = compiler.plan(desc);
  const viaMessage = (bytes: Uint8Array) => toJson(desc, fromBinary(desc, bytes), write);
  if (plan === undefined) return undefined;
  return (bytes) => {
    try {
      return readMessage(plan, new BinaryReader(bytes), bytes.byteLength, 0);
    } catch {
      // needsMessageModel, or bytes that do not decode: protobuf-es renders them or says why not.
      return viaMessage(bytes);
    }
  };
}

/** Thrown inside: these bytes need protobuf-es's message model; the caller starts over there. */
const needsMessageModel = Symbol("needsMessageModel");
/** Below protobuf-es's recursion limit (100): deeper messages are its call to accept or refuse. */
const maxDepth = 64;


/** How one field's values are read from the wire and written as JSON. */
interface FieldPlan {
  readonly field: DescField;
  readonly key: string;
  /** Index of the field in the message's plan (fields ordered by number). */
  readonly index: number;
  readonly kind: "singular" | "list" | "map";
  /** Singular fields: emitted only when present on the wire. */
  readonly explicitPresence: boolean;
  /** For fields of a oneof: the indexes of its other members, cleared when this one is set. */
  readonly oneofSiblings: readonly number[];
  readonly value: ValuePlan;
  /** Map fields: the key. */
  readonly mapKey?: ValuePlan & { type: "scalar" };
  /** What an implicit-presence field writes when absent or zero (alwaysEmitImplicit). */
  readonly zero: JsonValue;
}

type ValuePlan =
  | { readonly type: "scalar"; readonly scalar: ScalarType; readonly strictUtf8: boolean }
  | { readonly type: "enum"; readonly names: ReadonlyMap<number, string>; readonly open: boolean; readonly isNull: boolean; readonly zero: number }
  | { readonly type: "message"; readonly plan: () => MessagePlan }
  | { readonly type: "foreign"; readonly desc: DescMessage; readonly write: Partial<JsonWriteOptions> };

interface MessagePlan {
  readonly fields: readonly FieldPlan[];
  readonly byNumber: ReadonlyMap<number, FieldPlan>;
  readonly emitImplicit: boolean;
}

class Compiler {
  readonly #plans = new WeakMap<DescMessage, MessagePlan | undefined>();
  readonly writers = new WeakMap<DescMessage, WireJsonWriter | undefined>();
  readonly #options: WireJsonOptions;
  readonly write: Partial<JsonWriteOptions>;

  constructor(options: WireJsonOptions, write: Partial<JsonWriteOptions>) {
    this.#options = options;
    this.write = write;
  }

  /** The plan for a message, or undefined when it must go through protobuf-es as a whole. */
  plan(desc: DescMessage): MessagePlan | undefined {
    if (this.#plans.has(desc)) return this.#plans.get(desc);
    if (hasCustomJson(desc) || this.#hasExtensions(desc)) {
      this.#plans.set(desc, undefined);
      return undefined;
    }
    const fields: FieldPlan[] = [];
    const byNumber = new Map<number, FieldPlan>();
    const plan: MessagePlan = { fields, byNumber, emitImplicit: this.#options.alwaysEmitImplicit };
    this.#plans.set(desc, plan); // before the fields: recursive types find it
    const sorted = desc.fields.concat().sort((a, b) => a.number - b.number);
    for (const field of sorted) {
      const fieldPlan = this.#field(field, fields.length, sorted);
      if (fieldPlan === undefined) {
        this.#plans.set(desc, undefined);
        return undefined;
      }
      fields.push(fieldPlan);
      byNumber.set(field.number, fieldPlan);
    }
    return plan;
  }

  #field(field: DescField, index: number, sorted: readonly DescField[]): FieldPlan | undefined {
    if (leftToProtobufEs(field)) return undefined;
    const key = this.#options.useProtoFieldName ? field.name : field.jsonName;
    const oneofSiblings =
      field.oneof === undefined
        ? []
        : field.oneof.fields.filter((f) => f !== field).map((f) => sorted.indexOf(f));
    const base = { field, key, index, oneofSiblings };
    switch (field.fieldKind) {
      case "scalar":
        return {
          ...base,
          kind: "singular",
          explicitPresence: field.oneof !== undefined || field.presence !== fieldPresence.implicit,
          value: { type: "scalar", scalar: field.scalar, strictUtf8: field.utf8Validation },
          zero: scalarZeroJson(field.scalar),
        };
      case "enum": {
        const value = enumPlan(field.enum);
        return {
          ...base,
          kind: "singular",
          explicitPresence: field.oneof !== undefined || field.presence !== fieldPresence.implicit,
          value,
          zero: writeEnum(value, value.zero),
        };
      }
      case "message":
        return { ...base, kind: "singular", explicitPresence: true, value: this.#messageValue(field.message), zero: null };
      case "list": {
        let value: ValuePlan;
        if (field.listKind === "scalar") value = { type: "scalar", scalar: field.scalar, strictUtf8: field.utf8Validation };
        else if (field.listKind === "enum") value = enumPlan(field.enum);
        else value = this.#messageValue(field.message);
        return { ...base, kind: "list", explicitPresence: false, value, zero: null };
      }
      case "map": {
        let value: ValuePlan;
        if (field.mapKind === "scalar") value = { type: "scalar", scalar: field.scalar, strictUtf8: field.utf8Validation };
        else if (field.mapKind === "enum") value = enumPlan(field.enum);
        else value = this.#messageValue(field.message);
        const mapKey = { type: "scalar", scalar: field.mapKey, strictUtf8: field.utf8Validation } as const;
        return { ...base, kind: "map", explicitPresence: false, value, mapKey, zero: null };
      }
    }
  }

  #messageValue(desc: DescMessage): ValuePlan {
    if (hasCustomJson(desc) || this.#hasExtensions(desc)) return { type: "foreign", desc, write: this.write };
    // Resolved on first use: the message may be this one or contain it.
    let plan: MessagePlan | undefined;
    let resolved = false;
    return {
      type: "message",
      plan: () => {
        if (!resolved) {
          plan = this.plan(desc);
          resolved = true;
        }
        if (plan === undefined) throw needsMessageModel;
        return plan;
      },
    };
  }

  #hasExtensions(desc: DescMessage): boolean {
    const registry = this.#options.registry;
    if (registry === undefined || desc.proto.extensionRange.length === 0) return false;
    for (const type of registry) {
      if (type.kind === "extension" && type.extendee.typeName === desc.typeName) return true;
    }
    return false;
  }
}

/** The well-known types whose JSON is not their fields (Timestamp → string, Struct → object, …). */
function hasCustomJson(desc: DescMessage): boolean {
  if (!desc.typeName.startsWith("google.protobuf.")) return false;
  switch (desc.typeName) {
    case "google.protobuf.Any":
    case "google.protobuf.Timestamp":
    case "google.protobuf.Duration":
    case "google.protobuf.FieldMask":
    case "google.protobuf.Struct":
    case "google.protobuf.Value":
    case "google.protobuf.ListValue":
    case "google.protobuf.DoubleValue":
    case "google.protobuf.FloatValue":
    case "google.protobuf.Int64Value":
    case "google.protobuf.UInt64Value":
    case "google.protobuf.Int32Value":
    case "google.protobuf.UInt32Value":
    case "google.protobuf.BoolValue":
    case "google.protobuf.StringValue":
    case "google.protobuf.BytesValue":
      return true;
    default:
      return false;
  }
}

function enumPlan(desc: DescField["enum"] & object): ValuePlan & { type: "enum" } {
  return {
    type: "enum",
    names: new Map(desc.values.map((v) => [v.number, v.jsonName])),
    open: desc.open,
    isNull: desc.typeName === "google.protobuf.NullValue",
    zero: desc.values[0].number,
  };
}

function writeEnum(plan: ValuePlan & { type: "enum" }, value: number): JsonValue {
  if (plan.isNull) return null;
  return plan.names.get(value) ?? value;
}

function scalarZeroJson(scalar: ScalarType): JsonValue {
  switch (scalar) {
    case ScalarType.STRING:
      return "";
    case ScalarType.BOOL:
      return false;
    case ScalarType.BYTES:
      return "";
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return "0";
    default:
      return 0;
  }
}

/** One message from `reader` up to `end`, as JSON. */
function readMessage(plan: MessagePlan, reader: BinaryReader, end: number, depth: number): JsonObject {
  if (depth > maxDepth) throw needsMessageModel;
  const { fields, byNumber } = plan;
  // Per field (by index): the singular value, or the list / map being filled; undefined: absent.
  const slots: Array<JsonValue | undefined> = new Array(fields.length);
  while (reader.pos < end) {
    const [number, wireType] = reader.tag();
    if (wireType === WireType.StartGroup || wireType === WireType.EndGroup) throw needsMessageModel;
    const field = byNumber.get(number);
    if (field === undefined) {
      reader.skip(wireType, number);
      continue;
    }
    const index = field.index;
    const value = field.value;
    const expected = wireTypeOf(value);
    switch (field.kind) {
      case "singular": {
        if (wireType !== expected) throw needsMessageModel;
        // A message field sent twice is merged by protobuf, not replaced.
        if (expected === WireType.LengthDelimited && isMessage(value) && slots[index] !== undefined) throw needsMessageModel;
        for (const sibling of field.oneofSiblings) slots[sibling] = undefined;
        // An enum is kept as its number until written: the zero test is on the number.
        slots[index] = value.type === "enum" ? readEnumNumber(value, reader) : readValue(value, reader, depth);
        break;
      }
      case "list": {
        const list = (slots[index] ??= []) as JsonValue[];
        if (wireType === expected) {
          list.push(readValue(value, reader, depth));
        } else if (wireType === WireType.LengthDelimited) {
          // A packed run of numbers, enums or bools.
          const packedEnd = reader.uint32() + reader.pos;
          while (reader.pos < packedEnd) list.push(readValue(value, reader, depth));
          if (reader.pos !== packedEnd) throw needsMessageModel;
        } else {
          throw needsMessageModel;
        }
        break;
      }
      case "map": {
        const map = (slots[index] ??= {}) as JsonObject;
        readMapEntry(field, map, reader, depth);
        break;
      }
    }
  }

  if (reader.pos !== end) throw needsMessageModel;
  const json: JsonObject = {};
  const emitImplicit = plan.emitImplicit;
  for (let i = 0; i < fields.length; i++) {
    const field = fields[i];
    const value = slots[i];
    if (field.kind === "singular") {
      if (value !== undefined) {
        if (field.explicitPresence || emitImplicit || !isZero(field, value)) {
          const v = field.value;
          put(json, field.key, v.type === "enum" ? writeEnum(v, value as number) : value);
        }
      } else if (!field.explicitPresence && emitImplicit) {
        put(json, field.key, field.zero);
      }
    } else if (value !== undefined) {
      put(json, field.key, value);
    } else if (emitImplicit) {
      put(json, field.key, field.kind === "list" ? [] : {});
    }
  }
  return json;
}

function isZero(field: FieldPlan, value: JsonValue): boolean {
  const v = field.value;
  if (v.type === "enum") return value === v.zero;
  if (v.type === "scalar" && (v.scalar === ScalarType.DOUBLE || v.scalar === ScalarType.FLOAT)) {
    return Object.is(value, 0); // -0 is written, as protobuf-es writes it
  }
  return value === field.zero;
}

function isMessage(value: ValuePlan): boolean {
  return value.type === "message" || value.type === "foreign";
}

/** The wire type a value is sent with (lists of numbers may also come packed). */
function wireTypeOf(value: ValuePlan): WireType {
  if (value.type !== "scalar") return value.type === "enum" ? WireType.Varint : WireType.LengthDelimited;
  return scalarWireType(value.scalar);
}

function readValue(value: ValuePlan, reader: BinaryReader, depth: number): JsonValue {
  switch (value.type) {
    case "scalar":
      return readScalar(value, reader);
    case "enum":
      return writeEnum(value, readEnumNumber(value, reader));
    case "message": {
      const length = reader.uint32();
      const end = reader.pos + length;
      if (end > reader.len) throw needsMessageModel;
      return readMessage(value.plan(), reader, end, depth + 1);
    }
    case "foreign":
      return toJson(value.desc, fromBinary(value.desc, reader.bytes()), value.write);
  }
}

function readEnumNumber(value: ValuePlan & { type: "enum" }, reader: BinaryReader): number {
  const number = reader.int32();
  if (!value.open && !value.names.has(number)) throw needsMessageModel; // kept as an unknown field
  return number;
}

function readScalar({ scalar, strictUtf8 }: ValuePlan & { type: "scalar" }, reader: BinaryReader): JsonValue {
  switch (scalar) {
    case ScalarType.STRING:
      return reader.string(strictUtf8); // proto3 strings must be UTF-8: protobuf-es refuses others
    case ScalarType.BOOL:
      return reader.bool();
    case ScalarType.DOUBLE:
      return finite(reader.double());
    case ScalarType.FLOAT:
      return finite(reader.float());
    case ScalarType.INT32:
      return reader.int32();
    case ScalarType.UINT32:
      return reader.uint32();
    case ScalarType.SINT32:
      return reader.sint32();
    case ScalarType.FIXED32:
      return reader.fixed32();
    case ScalarType.SFIXED32:
      return reader.sfixed32();
    case ScalarType.INT64:
      return reader.int64().toString();
    case ScalarType.UINT64:
      return reader.uint64().toString();
    case ScalarType.SINT64:
      return reader.sint64().toString();
    case ScalarType.FIXED64:
      return reader.fixed64().toString();
    case ScalarType.SFIXED64:
      return reader.sfixed64().toString();
    case ScalarType.BYTES:
      return base64Encode(reader.bytes());
  }
}

function finite(value: number): JsonValue {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "Infinity";
  if (value === -Infinity) return "-Infinity";
  return value;
}

/** A map entry (key = 1, value = 2; either may be missing) into `map`; the last key wins. */
function readMapEntry(field: FieldPlan, map: JsonObject, reader: BinaryReader, depth: number): void {
  const end = reader.uint32() + reader.pos;
  const keyPlan = field.mapKey!;
  const keyType = keyPlan.scalar;
  let key: JsonValue | undefined;
  let value: JsonValue | undefined;
  while (reader.pos < end) {
    const [number, wireType] = reader.tag();
    if (wireType === WireType.StartGroup || wireType === WireType.EndGroup) throw needsMessageModel;
    if (number === 1) {
      if (wireType !== wireTypeOf(keyPlan)) throw needsMessageModel;
      key = readScalar(keyPlan, reader);
    } else if (number === 2) {
      if (wireType !== wireTypeOf(field.value)) throw needsMessageModel;
      if (isMessage(field.value) && value !== undefined) throw needsMessageModel; // merged
      value = readValue(field.value, reader, depth);
    } else {
      reader.skip(wireType, number);
    }
  }
  if (reader.pos !== end) throw needsMessageModel;
  const name = key === undefined ? mapKeyZero(keyType) : String(key);
  put(map, name, value ?? mapValueZero(field, depth));
}

function mapKeyZero(scalar: ScalarType): string {
  if (scalar === ScalarType.STRING) return "";
  if (scalar === ScalarType.BOOL) return "false";
  return "0";
}

function mapValueZero(field: FieldPlan, depth: number): JsonValue {
  const value = field.value;
  switch (value.type) {
    case "scalar":
      return scalarZeroJson(value.scalar);
    case "enum":
      return writeEnum(value, value.zero);
    case "message":
      return readMessage(value.plan(), new BinaryReader(new Uint8Array(0)), 0, depth + 1);
    case "foreign":
      return toJson(value.desc, fromBinary(value.desc, new Uint8Array(0)), value.write);
  }
}

/** An own property even for "__proto__", which plain assignment would route to the prototype. */
function put(json: JsonObject, key: string, value: JsonValue): void {
  if (key === "__proto__") Object.defineProperty(json, key, { value, enumerable: true, writable: true, configurable: true });
  else json[key] = value;
}

