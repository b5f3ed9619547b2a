import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  createFileRegistry,
  fromBinary,
  toBinary,
  toJson,
  type DescMessage,
  type JsonWriteOptions,
  type Message,
} from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { compileWireJsonWriter, type WireJsonOptions } from "./wire-json.ts";
import { prng, randomMessage, randomOptions, randomWkt } from "./testing/random-messages.ts";

const load = (name: string) =>
  fromBinary(FileDescriptorSetSchema, readFileSync(new URL(`../../gen/${name}`, import.meta.url)));
const registry = createFileRegistry(load("testing.binpb"));
const mirror = createFileRegistry(load("mirror.binpb"));
const message = (reg: typeof registry, name: string): DescMessage => reg.getMessage(name)!;
const Shapes = message(registry, "testing.v1.Shapes");
const Scalars = message(registry, "testing.v1.Scalars");
const Legacy = message(registry, "testing.v1.Legacy");
const Holder = message(registry, "testing.v1.Holder");
const Everything = message(mirror, "mirror.v1.Everything");
randomOptions.anyPayload = Scalars;

const optionSets: WireJsonOptions[] = [
  { registry, alwaysEmitImplicit: false, useProtoFieldName: false },
  { registry, alwaysEmitImplicit: true, useProtoFieldName: false },
  { registry, alwaysEmitImplicit: true, useProtoFieldName: true },
];

/** What the renderer must equal: protobuf-es decoding then toJson, as JSON text (key order counts). */
function expected(desc: DescMessage, bytes: Uint8Array, options: WireJsonOptions): { json?: string; error?: true } {
  try {
    const write: Partial<JsonWriteOptions> = { ...options };
    return { json: JSON.stringify(toJson(desc, fromBinary(desc, bytes), write)) };
  } catch {
    return { error: true };
  }
}

function actual(desc: DescMessage, bytes: Uint8Array, options: WireJsonOptions): { json?: string; error?: true } {
  const writer = compileWireJsonWriter(desc, options);
  assert.ok(writer !== undefined, `${desc.typeName} renders directly`);
  try {
    return { json: JSON.stringify(writer(bytes)) };
  } catch {
    return { error: true };
  }
}

function agree(desc: DescMessage, bytes: Uint8Array, what: string): void {
  // WIRE_JSON_DEBUG=1 prints the bytes of a disagreement (and protobuf-es's error), to replay it.
  if (process.env.WIRE_JSON_DEBUG) {
    const a = actual(desc, bytes, optionSets[0]);
    const e = expected(desc, bytes, optionSets[0]);
    if (JSON.stringify(a) !== JSON.stringify(e)) {
      console.log(what, Buffer.from(bytes).toString("hex"));
      try { fromBinary(desc, bytes); } catch (x) { console.log(String(x)); }
    }
  }
  for (const options of optionSets) {
    assert.deepEqual(actual(desc, bytes, options), expected(desc, bytes, options), `${what} ${JSON.stringify({ ...options, registry: undefined })}`);
  }
}

/** The top-level fields of an encoding, each as its bytes (tag included). */
function splitFields(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[pos++];
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
      shift += 7;
    }
  };
  while (pos < bytes.length) {
    const start = pos;
    const tag = varint();
    switch (tag & 7) {
      case WireType.Varint:
        varint();
        break;
      case WireType.Bit64:
        pos += 8;
        break;
      case WireType.Bit32:
        pos += 4;
        break;
      case WireType.LengthDelimited: {
        const length = varint(); // before the +=, which would read pos first
        pos += length;
        break;
      }
      default:
        throw new Error(`unexpected wire type in ${tag} at ${start}: ${Buffer.from(bytes).toString("hex")}`);
    }
    out.push(bytes.subarray(start, pos));
  }
  return out;
}

const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

describe("wire → JSON equals protobuf-es fromBinary + toJson", () => {
  test("random messages of every field kind, three option sets", () => {
    const r = prng(1);
    for (let i = 0; i < 400; i++) {
      const desc = [Shapes, Everything, Scalars][i % 3];
      agree(desc, toBinary(desc, randomMessage(desc, r)), `#${i} ${desc.typeName}`);
    }
  });

  test("fields out of order, repeated scalars (last wins), merged encodings, unknown fields", () => {
    const r = prng(2);
    const unknown = new BinaryWriter().tag(999, WireType.Varint).uint32(5).tag(998, WireType.LengthDelimited).string("?").finish();
    for (let i = 0; i < 300; i++) {
      const desc = i % 2 === 0 ? Shapes : Everything;
      const a = toBinary(desc, randomMessage(desc, r));
      const b = toBinary(desc, randomMessage(desc, r));
      const shuffled = splitFields(a).sort(() => r() - 0.5);
      agree(desc, concat(...shuffled), `#${i} shuffled`);
      agree(desc, concat(a, b), `#${i} a+b (protobuf merges)`);
      agree(desc, concat(unknown, a, unknown), `#${i} unknown fields`);
    }
  });

  test("bytes that do not decode fail as protobuf-es fails, or render as it renders", () => {
    const r = prng(3);
    for (let i = 0; i < 200; i++) {
      const bytes = toBinary(Shapes, randomMessage(Shapes, r));
      if (bytes.length === 0) continue;
      agree(Shapes, bytes.subarray(0, Math.floor(r() * bytes.length)), `#${i} truncated`);
      const flipped = bytes.slice();
      flipped[Math.floor(r() * flipped.length)] ^= 1 << Math.floor(r() * 8);
      agree(Shapes, flipped, `#${i} bit flipped`);
    }
  });

  test("packed and unpacked repeated numbers both read; map entries with key or value missing", () => {
    const w = new BinaryWriter();
    w.tag(6, WireType.Varint).int64(5n); // r_int64, unpacked
    w.tag(6, WireType.LengthDelimited).fork().int64(-1n).int64(7n).join(); // then packed
    w.tag(9, WireType.Varint).bool(true);
    w.tag(14, WireType.LengthDelimited).fork().tag(2, WireType.Varint).int32(3).join(); // no key
    w.tag(15, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int32(9).join(); // no value
    w.tag(18, WireType.LengthDelimited).fork().tag(1, WireType.Varint).bool(true).join(); // no message value
    w.tag(14, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("k").tag(2, WireType.Varint).int32(1).join();
    w.tag(14, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("k").tag(2, WireType.Varint).int32(2).join();
    agree(Shapes, w.finish(), "hand-made");
  });

  test("oneof: the last member on the wire wins; a zero in a oneof or optional field is written", () => {
    const w = new BinaryWriter();
    w.tag(21, WireType.LengthDelimited).string("first");
    w.tag(23, WireType.Varint).int32(0);
    w.tag(2, WireType.Varint).int32(0);
    w.tag(3, WireType.LengthDelimited).string("");
    const bytes = w.finish();
    agree(Shapes, bytes, "oneof");
    const json = compileWireJsonWriter(Shapes, optionSets[0])!(bytes) as Record<string, unknown>;
    assert.deepEqual(json, { optInt32: 0, optString: "", pickLevel: "LEVEL_UNSPECIFIED" });
  });

  test("a `__proto__` field is an own property", () => {
    const bytes = new BinaryWriter().tag(35, WireType.LengthDelimited).string("p").finish();
    agree(Shapes, bytes, "__proto__");
    const json = compileWireJsonWriter(Shapes, optionSets[2])!(bytes) as Record<string, unknown>;
    assert.ok(Object.hasOwn(json, "__proto__"));
    assert.equal(Object.getPrototypeOf(json), Object.prototype);
  });

  test("proto2: closed enums, groups, required fields and extensions go to protobuf-es", () => {
    assert.equal(compileWireJsonWriter(Legacy, optionSets[0]), undefined, "extensions and a group");
    const holder = compileWireJsonWriter(Holder, optionSets[0]);
    assert.ok(holder !== undefined);
    const r = prng(4);
    for (let i = 0; i < 100; i++) {
      agree(Holder, toBinary(Holder, randomMessage(Holder, r)), `#${i} Holder`);
    }
    // A closed enum's unknown value is an unknown field to protobuf: not written.
    const closed = new BinaryWriter().tag(1, WireType.LengthDelimited).fork().tag(2, WireType.Varint).int32(99).join().finish();
    agree(Holder, closed, "closed enum, unknown value");
  });

  test("well-known types render as protobuf-es renders them, inside and at the top", () => {
    for (const name of ["google.protobuf.Timestamp", "google.protobuf.Struct", "google.protobuf.Any"]) {
      assert.equal(compileWireJsonWriter(message(registry, name), optionSets[0]), undefined, name);
    }
    const r = prng(5);
    for (let i = 0; i < 50; i++) {
      const m = randomMessage(Shapes, r) as Message & Record<string, unknown>;
      m.ts = randomWkt(message(registry, "google.protobuf.Timestamp"), r, 0);
      m.any = randomWkt(message(registry, "google.protobuf.Any"), r, 0);
      agree(Shapes, toBinary(Shapes, m), `#${i} with WKTs`);
    }
  });

  test("deep nesting is protobuf-es's to accept or refuse", () => {
    let bytes: Uint8Array = new Uint8Array(0);
    for (let i = 0; i < 120; i++) bytes = new BinaryWriter().tag(24, WireType.LengthDelimited).bytes(bytes).finish();
    agree(Shapes, bytes, "120 levels");
  });
});

test("one writer per message type and option set, whatever the number of routes", () => {
  const a = compileWireJsonWriter(Everything, { registry: mirror, alwaysEmitImplicit: true, useProtoFieldName: false });
  const b = compileWireJsonWriter(Everything, { registry: mirror, alwaysEmitImplicit: true, useProtoFieldName: false });
  const other = compileWireJsonWriter(Everything, { registry: mirror, alwaysEmitImplicit: false, useProtoFieldName: false });
  assert.equal(a, b);
  assert.notEqual(a, other);
});
