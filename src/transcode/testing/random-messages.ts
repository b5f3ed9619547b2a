/**
 * Random protobuf-es messages of any schema, for the differential tests of the JSON ↔ wire
 * renderers (wire-json.test.ts, json-wire.test.ts): every field kind, edge values, unknown enum
 * numbers, well-known types. Deterministic for a seed.
 */
import { create, ScalarType, type DescField, type DescMessage, type Message } from "@bufbuild/protobuf";
import { anyPack, isWrapperDesc } from "@bufbuild/protobuf/wkt";

/**
 * A small deterministic PRNG (mulberry32): failures reproduce. WIRE_JSON_SEED=n explores other
 * inputs (the default keeps CI deterministic).
 */
export const seedBase = Number(process.env.WIRE_JSON_SEED ?? 0) * 1000;
export function prng(seed: number): () => number {
  let a = (seedBase + seed) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomScalar(scalar: ScalarType, r: () => number): unknown {
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  switch (scalar) {
    case ScalarType.DOUBLE:
      return pick([0, -0, 1.5, -2.25e300, 5e-324, NaN, Infinity, -Infinity, r() * 1e6]);
    case ScalarType.FLOAT:
      return Math.fround(pick([0, -0, 0.1, 3.4e38, -1.5, NaN, Infinity, r() * 1000]));
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return pick([0, 1, -1, 2147483647, -2147483648, Math.floor(r() * 1e6) - 5e5]);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return pick([0, 1, 4294967295, Math.floor(r() * 1e9)]);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return pick([0n, 1n, -1n, 9223372036854775807n, -9223372036854775808n, BigInt(Math.floor(r() * 1e15))]);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return pick([0n, 1n, 18446744073709551615n, BigInt(Math.floor(r() * 1e15))]);
    case ScalarType.BOOL:
      return r() < 0.5;
    case ScalarType.STRING:
      return pick(["", "a", "héllo wörld", "emoji \u{1f600}", "quote \" and \\ and \n", "x".repeat(Math.floor(r() * 200))]);
    case ScalarType.BYTES:
      return Uint8Array.from({ length: Math.floor(r() * 7) }, () => Math.floor(r() * 256));
  }
}

function randomEnum(field: DescField, r: () => number): number {
  const values = field.enum!.values;
  if (field.enum!.open && r() < 0.15) return 42; // unknown to the schema: written as a number
  return values[Math.floor(r() * values.length)].number;
}

/** What an Any packs: a type the test's registry knows (it must be set before Any is used). */
export const randomOptions: { anyPayload: DescMessage } = { anyPayload: undefined as unknown as DescMessage };

export function randomWkt(desc: DescMessage, r: () => number, depth: number): Message | undefined {
  switch (desc.typeName) {
    case "google.protobuf.Timestamp":
      return create(desc, { seconds: BigInt(Math.floor(r() * 4e9)), nanos: Math.floor(r() * 1e9) } as never);
    case "google.protobuf.Duration":
      return create(desc, { seconds: BigInt(Math.floor(r() * 1e6)), nanos: Math.floor(r() * 1e9) } as never);
    case "google.protobuf.Value":
      return create(desc, { kind: r() < 0.5 ? { case: "stringValue", value: "v" } : { case: "numberValue", value: 2.5 } } as never);
    case "google.protobuf.Struct":
      return create(desc, { fields: { k: randomWkt(desc.fields[0].message!, r, depth) } } as never);
    case "google.protobuf.Any":
      return anyPack(randomOptions.anyPayload, randomMessage(randomOptions.anyPayload, r, depth + 1));
    default:
      return undefined;
  }
}

function randomValue(field: DescField, kind: "scalar" | "enum" | "message", r: () => number, depth: number): unknown {
  if (kind === "scalar") return randomScalar(field.scalar!, r);
  if (kind === "enum") return randomEnum(field, r);
  const desc = field.message!;
  // A singular wrapper field holds its plain value in protobuf-es.
  if (field.fieldKind === "message" && isWrapperDesc(desc)) return randomScalar(desc.fields[0].scalar!, r);
  return randomWkt(desc, r, depth) ?? randomMessage(desc, r, depth + 1);
}

export function randomMessage(desc: DescMessage, r: () => number, depth = 0): Message {
  const init: Record<string, unknown> = {};
  for (const field of desc.fields) {
    if (r() < 0.4 && field.presence !== 3 /* LEGACY_REQUIRED */) continue;
    if (depth > 2 && (field.fieldKind === "message" || field.message !== undefined)) continue;
    switch (field.fieldKind) {
      case "scalar":
      case "enum":
      case "message": {
        const value = randomValue(field, field.fieldKind, r, depth);
        if (field.oneof !== undefined) init[field.oneof.localName] = { case: field.localName, value };
        else init[field.localName] = value;
        break;
      }
      case "list":
        init[field.localName] = Array.from({ length: Math.floor(r() * 4) }, () => randomValue(field, field.listKind, r, depth));
        break;
      case "map": {
        const map: Record<string, unknown> = {};
        for (let i = Math.floor(r() * 4); i > 0; i--) {
          const key = randomScalar(field.mapKey, r);
          map[String(key)] = randomValue(field, field.mapKind, r, depth);
        }
        init[field.localName] = map;
        break;
      }
    }
  }
  return create(desc, init as never);
}

