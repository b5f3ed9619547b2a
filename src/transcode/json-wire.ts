/**
 * A request's JSON tree → protobuf binary, without the protobuf-es message in between, for
 * the JSON the gateway itself builds most often (path variables and query parameters are
 * already in canonical form: numbers for 32-bit integers, decimal strings for 64-bit ones).
 *
 * The output equals `toBinary(desc, fromJson(desc, json, options))` byte for byte; the
 * differential tests in json-wire.test.ts hold it to that. Only the canonical forms are
 * encoded here. Anything else (a quoted number, "NaN", base64, a well-known type, null, an
 * unknown name, a field given twice, a oneof with two members, a non-string map key) answers
 * undefined, and the caller hands the tree to protobuf-es, which accepts it or says precisely
 * what is wrong. So this never decides what is valid: protobuf-es stays the one that does.
 */
import { ScalarType, type DescField, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { base64Decode, BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { fieldPresence, leftToProtobufEs, scalarWireType } from "./scalar-wire.ts";

/** The bytes, or undefined: protobuf-es must read this tree. */
export type JsonWireEncoder = (json: JsonValue) => Uint8Array | undefined;

export interface JsonWireOptions {
  /** fromJson's option: unknown keys are skipped (else they are protobuf-es's to refuse). */
  readonly ignoreUnknownFields: boolean;
}

/**
 * Plans depend on the schema only, so every route and option set shares them: a table of
 * 10,000 routes over one message type compiles it once.
 */
const sharedPlans = new WeakMap<DescMessage, MessagePlan | undefined>();
const encoders = [new WeakMap<DescMessage, JsonWireEncoder>(), new WeakMap<DescMessage, JsonWireEncoder>()];

export function compileJsonWireEncoder(desc: DescMessage, options: JsonWireOptions): JsonWireEncoder {
  const cache = encoders[options.ignoreUnknownFields ? 1 : 0];
  let encoder = cache.get(desc);
  if (encoder === undefined) {
    encoder = newEncoder(desc, options);
    cache.set(desc, encoder);
  }
  return encoder;
}

/**
 * One writer for every encoding: a fresh BinaryWriter allocates (and zero-fills) its buffer on
 * the first byte, once per request. Encoding is synchronous, so one at a time uses it; finish()
 * copies the bytes out and resets it, also after a refusal or a throw half-way.
 */
let sharedWriter = new BinaryWriter();
/** A writer that grew past this for one large message is not kept. */
const keptWriterBytes = 64 * 1024;

function newEncoder(desc: DescMessage, options: JsonWireOptions): JsonWireEncoder {
  const root = planOf(desc, sharedPlans);
  return (json) => {
    if (root === undefined) return undefined;
    const writer = sharedWriter;
    let written = false;
    try {
      written = writeMessage(root, json, writer, options.ignoreUnknownFields, 0);
    } catch {
      // e.g. a value BinaryWriter refuses: protobuf-es says what is wrong
    }
    const bytes = writer.finish();
    if (bytes.byteLength > keptWriterBytes) sharedWriter = new BinaryWriter();
    return written ? bytes : undefined;
  };
}

/** Deeper trees are protobuf-es's (its JSON reader has its own limits). */
const maxDepth = 32;

interface FieldPlan {
  readonly field: DescField;
  readonly number: number;
  readonly index: number;
  readonly kind: "singular" | "list" | "map";
  readonly value: ValuePlan;
  /** Implicit presence: a zero value is not written. */
  readonly implicit: boolean;
  readonly packed: boolean;
  readonly oneofIndex: number;
}

type ValuePlan =
  | { readonly type: "scalar"; readonly scalar: ScalarType }
  | { readonly type: "enum"; readonly numbers: ReadonlyMap<string, number>; readonly known: ReadonlySet<number>; readonly open: boolean; readonly zero: number }
  | { readonly type: "message"; readonly plan: () => MessagePlan | undefined };

interface MessagePlan {
  readonly fields: readonly FieldPlan[];
  /** JSON name and proto name → field. */
  readonly byName: ReadonlyMap<string, FieldPlan>;
  readonly oneofs: number;
}

function planOf(desc: DescMessage, plans: WeakMap<DescMessage, MessagePlan | undefined>): MessagePlan | undefined {
  if (plans.has(desc)) return plans.get(desc);
  // Well-known types have JSON forms of their own; proto2 extensions and groups: protobuf-es.
  if (desc.typeName.startsWith("google.protobuf.") || desc.proto.extensionRange.length > 0) {
    plans.set(desc, undefined);
    return undefined;
  }
  const fields: FieldPlan[] = [];
  const byName = new Map<string, FieldPlan>();
  const oneofIndexes = new Map<unknown, number>();
  const plan: MessagePlan = { fields, byName, oneofs: desc.oneofs.length };
  plans.set(desc, plan);
  const sorted = desc.fields.concat().sort((a, b) => a.number - b.number);
  for (const field of sorted) {
    if (leftToProtobufEs(field)) {
      plans.set(desc, undefined);
      return undefined;
    }
    let value: ValuePlan;
    let kind: FieldPlan["kind"];
    let packed = false;
    switch (field.fieldKind) {
      case "scalar":
        kind = "singular";
        value = { type: "scalar", scalar: field.scalar };
        break;
      case "enum":
        kind = "singular";
        value = enumPlan(field.enum);
        break;
      case "message":
        kind = "singular";
        value = messagePlan(field.message, plans);
        break;
      case "list":
        kind = "list";
        packed = field.packed;
        value =
          field.listKind === "scalar"
            ? { type: "scalar", scalar: field.scalar }
            : field.listKind === "enum"
              ? enumPlan(field.enum)
              : messagePlan(field.message, plans);
        break;
      case "map":
        if (field.mapKey !== ScalarType.STRING) {
          plans.set(desc, undefined); // keys from JSON strings: protobuf-es converts and checks them
          return undefined;
        }
        kind = "map";
        value =
          field.mapKind === "scalar"
            ? { type: "scalar", scalar: field.scalar }
            : field.mapKind === "enum"
              ? enumPlan(field.enum)
              : messagePlan(field.message, plans);
        break;
    }
    if (value.type === "enum" && field.enum?.typeName === "google.protobuf.NullValue") {
      plans.set(desc, undefined);
      return undefined;
    }
    let oneofIndex = -1;
    if (field.oneof !== undefined) {
      if (!oneofIndexes.has(field.oneof)) oneofIndexes.set(field.oneof, oneofIndexes.size);
      oneofIndex = oneofIndexes.get(field.oneof)!;
    }
    const fieldPlan: FieldPlan = {
      field,
      number: field.number,
      index: fields.length,
      kind,
      value,
      implicit: kind === "singular" && field.oneof === undefined && field.presence === fieldPresence.implicit,
      packed,
      oneofIndex,
    };
    fields.push(fieldPlan);
    byName.set(field.jsonName, fieldPlan);
    byName.set(field.name, fieldPlan);
  }
  return plan;
}

function enumPlan(desc: NonNullable<DescField["enum"]>): ValuePlan & { type: "enum" } {
  return {
    type: "enum",
    numbers: new Map(desc.values.map((v) => [v.name, v.number])),
    known: new Set(desc.values.map((v) => v.number)),
    open: desc.open,
    zero: desc.values[0].number,
  };
}

function messagePlan(desc: DescMessage, plans: WeakMap<DescMessage, MessagePlan | undefined>): ValuePlan {
  let plan: MessagePlan | undefined;
  let resolved = false;
  return {
    type: "message",
    plan: () => {
      if (!resolved) {
        plan = planOf(desc, plans);
        resolved = true;
      }
      return plan;
    },
  };
}

function isObject(json: JsonValue): json is { [key: string]: JsonValue } {
  return typeof json === "object" && json !== null && !Array.isArray(json);
}

/** Writes `json` as a message; false: protobuf-es must read it. */
function writeMessage(plan: MessagePlan, json: JsonValue, writer: BinaryWriter, ignoreUnknown: boolean, depth: number): boolean {
  if (depth > maxDepth || !isObject(json)) return false;
  const slots: Array<JsonValue | undefined> = new Array(plan.fields.length);
  const oneofSet = plan.oneofs > 0 ? new Array<boolean>(plan.oneofs).fill(false) : undefined;
  for (const key in json) {
    const field = plan.byName.get(key);
    if (field === undefined) {
      if (ignoreUnknown && !key.startsWith("[")) continue; // "[ext]" keys name extensions
      return false;
    }
    const value = json[key];
    if (value === null || slots[field.index] !== undefined) return false; // null, or a name given twice
    if (field.oneofIndex >= 0) {
      if (oneofSet![field.oneofIndex]) return false;
      oneofSet![field.oneofIndex] = true;
    }
    slots[field.index] = value;
  }
  for (let i = 0; i < slots.length; i++) {
    const value = slots[i];
    if (value === undefined) continue;
    const field = plan.fields[i];
    switch (field.kind) {
      case "singular":
        if (!writeSingular(field, field.value, value, writer, ignoreUnknown, depth)) return false;
        break;
      case "list":
        if (!Array.isArray(value) || !writeList(field, value, writer, ignoreUnknown, depth)) return false;
        break;
      case "map":
        if (!isObject(value) || !writeMap(field, value, writer, ignoreUnknown, depth)) return false;
        break;
    }
  }
  return true;
}

function writeSingular(field: FieldPlan, plan: ValuePlan, value: JsonValue, writer: BinaryWriter, ignoreUnknown: boolean, depth: number): boolean {
  if (plan.type === "message") {
    const child = plan.plan();
    if (child === undefined) return false;
    writer.tag(field.number, WireType.LengthDelimited).fork();
    if (!writeMessage(child, value, writer, ignoreUnknown, depth + 1)) return false;
    writer.join();
    return true;
  }
  const scalar = plan.type === "enum" ? ScalarType.INT32 : plan.scalar;
  const local = plan.type === "enum" ? enumNumber(plan, value) : scalarValue(plan.scalar, value);
  if (local === undefined) return false;
  if (field.implicit && isZero(scalar, local, plan)) return true;
  writer.tag(field.number, scalarWireType(scalar));
  writeScalar(writer, scalar, local);
  return true;
}

function writeList(field: FieldPlan, items: JsonValue[], writer: BinaryWriter, ignoreUnknown: boolean, depth: number): boolean {
  if (items.length === 0) return true;
  const plan = field.value;
  if (plan.type === "message") {
    for (const item of items) {
      if (item === null || !writeSingular(field, plan, item, writer, ignoreUnknown, depth)) return false;
    }
    return true;
  }
  const scalar = plan.type === "enum" ? ScalarType.INT32 : plan.scalar;
  const locals: Array<Local> = [];
  for (const item of items) {
    const local = plan.type === "enum" ? enumNumber(plan, item) : scalarValue(plan.scalar, item);
    if (local === undefined) return false;
    locals.push(local);
  }
  if (field.packed) {
    writer.tag(field.number, WireType.LengthDelimited).fork();
    for (const local of locals) writeScalar(writer, scalar, local);
    writer.join();
  } else {
    const wireType = scalarWireType(scalar);
    for (const local of locals) {
      writer.tag(field.number, wireType);
      writeScalar(writer, scalar, local);
    }
  }
  return true;
}

function writeMap(field: FieldPlan, record: { [key: string]: JsonValue }, writer: BinaryWriter, ignoreUnknown: boolean, depth: number): boolean {
  const plan = field.value;
  for (const key of Object.keys(record)) {
    const value = record[key];
    if (value === null || loneSurrogate.test(key)) return false;
    writer.tag(field.number, WireType.LengthDelimited).fork();
    writer.tag(1, WireType.LengthDelimited).string(key);
    if (plan.type === "message") {
      const child = plan.plan();
      if (child === undefined) return false;
      writer.tag(2, WireType.LengthDelimited).fork();
      if (!writeMessage(child, value, writer, ignoreUnknown, depth + 1)) return false;
      writer.join();
    } else {
      const scalar = plan.type === "enum" ? ScalarType.INT32 : plan.scalar;
      const local = plan.type === "enum" ? enumNumber(plan, value) : scalarValue(plan.scalar, value);
      if (local === undefined) return false;
      writer.tag(2, scalarWireType(scalar));
      writeScalar(writer, scalar, local);
    }
    writer.join();
  }
  return true;
}

function enumNumber(plan: ValuePlan & { type: "enum" }, value: JsonValue): number | undefined {
  if (typeof value === "string") return plan.numbers.get(value); // unknown names: protobuf-es decides
  if (typeof value === "number" && Number.isInteger(value) && value >= -2147483648 && value <= 2147483647) {
    return plan.open || plan.known.has(value) ? value + 0 : undefined;
  }
  return undefined;
}

/** Text UTF-8 cannot hold as it is (protobuf-es decides what becomes of it). */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const int64Text = /^-?[0-9]+$/;
const uint64Text = /^[0-9]+$/;
const int64Min = -(2n ** 63n);
const int64Max = 2n ** 63n - 1n;
const uint64Max = 2n ** 64n - 1n;

/** A scalar as BinaryWriter takes it. */
type Local = number | bigint | string | boolean | Uint8Array;

/** The canonical JSON form of a scalar as the value to write, or undefined. */
function scalarValue(scalar: ScalarType, value: JsonValue): Local | undefined {
  switch (scalar) {
    case ScalarType.STRING:
      return typeof value === "string" && !loneSurrogate.test(value) ? value : undefined;
    case ScalarType.BOOL:
      return typeof value === "boolean" ? value : undefined;
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return typeof value === "number" && Number.isInteger(value) && value >= -2147483648 && value <= 2147483647 ? value + 0 : undefined;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 4294967295 ? value + 0 : undefined;
    case ScalarType.DOUBLE:
      if (typeof value === "string") return specialFloats.get(value);
      return typeof value === "number" && Number.isFinite(value) ? value : undefined;
    case ScalarType.FLOAT:
      if (typeof value === "string") return specialFloats.get(value);
      return typeof value === "number" && Number.isFinite(value) && Math.abs(value) <= 3.4028234663852886e38 ? value : undefined;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64: {
      const n = bigintOf(value, int64Text);
      return n !== undefined && n >= int64Min && n <= int64Max ? n : undefined;
    }
    case ScalarType.UINT64:
    case ScalarType.FIXED64: {
      const n = bigintOf(value, uint64Text);
      return n !== undefined && n <= uint64Max ? n : undefined;
    }
    case ScalarType.BYTES:
      // Canonical base64 only (standard alphabet, padded); its other spellings: protobuf-es.
      return typeof value === "string" && value.length % 4 === 0 && paddedBase64.test(value) ? base64Decode(value) : undefined;
  }
}

const specialFloats = new Map([
  ["NaN", NaN],
  ["Infinity", Infinity],
  ["-Infinity", -Infinity],
]);
const paddedBase64 = /^[A-Za-z0-9+/]*={0,2}$/;

function bigintOf(value: JsonValue, pattern: RegExp): bigint | undefined {
  if (typeof value === "string") return pattern.test(value) ? BigInt(value) : undefined;
  if (typeof value === "number" && Number.isSafeInteger(value)) return BigInt(value);
  return undefined;
}

function isZero(scalar: ScalarType, value: Local, plan: ValuePlan): boolean {
  if (plan.type === "enum") return value === plan.zero;
  switch (scalar) {
    case ScalarType.STRING:
      return value === "";
    case ScalarType.BYTES:
      return (value as Uint8Array).byteLength === 0;
    case ScalarType.BOOL:
      return value === false;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return Object.is(value, 0);
    default:
      return value == 0; // 0 and 0n
  }
}

function writeScalar(writer: BinaryWriter, scalar: ScalarType, value: Local): void {
  switch (scalar) {
    case ScalarType.STRING:
      writer.string(value as string);
      break;
    case ScalarType.BYTES:
      writer.bytes(value as Uint8Array);
      break;
    case ScalarType.BOOL:
      writer.bool(value as boolean);
      break;
    case ScalarType.DOUBLE:
      writer.double(value as number);
      break;
    case ScalarType.FLOAT:
      writer.float(value as number);
      break;
    case ScalarType.INT32:
      writer.int32(value as number);
      break;
    case ScalarType.SINT32:
      writer.sint32(value as number);
      break;
    case ScalarType.SFIXED32:
      writer.sfixed32(value as number);
      break;
    case ScalarType.UINT32:
      writer.uint32(value as number);
      break;
    case ScalarType.FIXED32:
      writer.fixed32(value as number);
      break;
    case ScalarType.INT64:
      writer.int64(value as bigint);
      break;
    case ScalarType.SINT64:
      writer.sint64(value as bigint);
      break;
    case ScalarType.SFIXED64:
      writer.sfixed64(value as bigint);
      break;
    case ScalarType.UINT64:
      writer.uint64(value as bigint);
      break;
    case ScalarType.FIXED64:
      writer.fixed64(value as bigint);
      break;
  }
}
