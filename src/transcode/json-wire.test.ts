import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, fromJson, toBinary, toJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { compileJsonWireEncoder } from "./json-wire.ts";
import { prng, randomMessage, randomOptions } from "./testing/random-messages.ts";

const load = (name: string) =>
  fromBinary(FileDescriptorSetSchema, readFileSync(new URL(`../../gen/${name}`, import.meta.url)));
const registry = createFileRegistry(load("testing.binpb"));
const mirror = createFileRegistry(load("mirror.binpb"));
const Scalars = registry.getMessage("testing.v1.Scalars")!;
const Shapes = registry.getMessage("testing.v1.Shapes")!;
const Everything = mirror.getMessage("mirror.v1.Everything")!;
const Nested = mirror.getMessage("mirror.v1.Nested")!;
randomOptions.anyPayload = Scalars;

/**
 * The encoder either declines (undefined: protobuf-es reads the tree) or writes exactly what
 * protobuf-es's fromJson + toBinary write; when protobuf-es refuses the tree, it must decline.
 * Returns whether it encoded.
 */
function agree(desc: DescMessage, json: JsonValue, what: string, ignoreUnknownFields = true): boolean {
  const encoded = compileJsonWireEncoder(desc, { ignoreUnknownFields })(json);
  let expected: Uint8Array | undefined;
  try {
    expected = toBinary(desc, fromJson(desc, json, { registry, ignoreUnknownFields }));
  } catch {
    expected = undefined;
  }
  if (encoded === undefined) return false;
  assert.ok(expected !== undefined, `${what}: encoded a tree protobuf-es refuses: ${JSON.stringify(json)}`);
  assert.deepEqual(Buffer.from(encoded).toString("hex"), Buffer.from(expected).toString("hex"), `${what}: ${JSON.stringify(json)}`);
  return true;
}

/** Canonical JSON of random messages; the share the encoder took on is returned. */
function run(desc: DescMessage, seed: number, count: number, mutate?: (json: JsonValue, r: () => number) => JsonValue): number {
  const r = prng(seed);
  let encoded = 0;
  for (let i = 0; i < count; i++) {
    let json = toJson(desc, randomMessage(desc, r), { registry }) as JsonValue;
    if (mutate !== undefined) json = mutate(json, r);
    if (agree(desc, json, `#${i}`) && agree(desc, json, `#${i} strict`, false)) encoded++;
  }
  return encoded / count;
}

describe("JSON tree → wire equals protobuf-es fromJson + toBinary", () => {
  test("canonical JSON of random messages; the encoder takes on most of those without WKTs", () => {
    // Everything without its well-known-type fields is what most requests look like.
    const wkts = ["ts", "dur", "optI64", "optS", "mask", "meta", "anyValue"];
    const withoutWkts = (json: JsonValue) =>
      Object.fromEntries(Object.entries(json as Record<string, JsonValue>).filter(([k]) => !wkts.includes(k)));
    const shares = [
      run(Scalars, 11, 300),
      run(Nested, 12, 200),
      run(Everything, 15, 300, withoutWkts),
      run(Shapes, 13, 300),
      run(Everything, 14, 300),
    ];
    if (process.env.JSON_WIRE_DEBUG) console.log("encoded directly:", shares);
    assert.ok(shares[0] > 0.9, "Scalars: encoded directly");
    assert.ok(shares[1] > 0.9, "Nested: encoded directly");
    assert.ok(shares[2] > 0.9, "Everything without WKTs: encoded directly");
  });

  test("what the gateway builds from a path and a query", () => {
    const json = { s: "abc", i64: "42", tags: ["a", "b"], i32: 7, nested: { label: "x", level: 2, child: {} } };
    assert.ok(agree(Everything, json, "path + query"));
    assert.ok(agree(Everything, { nums: [1, -2, 3], colors: ["RED", 2], labels: { "1": "a", b: "c" }, pickB: 0 }, "lists, map, oneof zero"));
    assert.ok(agree(Everything, { i32: 0, s: "", b: false, d: -0, f: 0 }, "zeros (implicit presence: not written)"));
  });

  test("non-canonical forms, nulls, unknown and repeated names, two oneof members: declined or equal", () => {
    const variants: JsonValue[] = [
      { i32: "7" },
      { i64: 42 },
      { i64: "-0" },
      { i64: "99999999999999999999" },
      { u64: "-1" },
      { d: "NaN" },
      { f: 1e39 },
      { raw: "-_8" },
      { color: "NOT_A_COLOR" },
      { color: 99 },
      { s: null },
      { tags: [null] },
      { tags: "a" },
      { s: 1 },
      { b: "true" },
      { i32: 1.5 },
      { i32: 2147483648 },
      { unknownField: 1 },
      { "[ext.note]": "x" },
      { s: "a", name: "b" },
      { pickA: "a", pickB: 1 },
      { pick_a: "a", pickA: "b" },
      { nested: { level: "2" } },
      { nested: [] },
      { labels: { a: 1 } },
      { ts: "2024-01-01T00:00:00Z" },
      { s: "\ud800" },
      { labels: { "\udc00": "x" } },
      [],
      "text",
      null,
    ];
    for (const [i, json] of variants.entries()) {
      agree(Everything, json, `variant ${i}`);
      agree(Everything, json, `variant ${i} strict`, false);
    }
  });

  test("a tree declined or refused half-way leaves nothing behind for the next one", () => {
    // The encoder reuses one writer: a decline inside a nested message (after its length was
    // forked) or a throw must not leak bytes or open forks into the next request.
    const good = { s: "after", nested: { label: "n", level: 3 } };
    const halfWay: JsonValue[] = [
      { s: "before", nested: { label: "x", child: { level: "2" } } },
      { tags: ["a", "b"], nested: { child: { child: [] } } },
      { s: "big", tags: [Array.from({ length: 70_000 }, () => "y").join(""), 1 as unknown as string] },
    ];
    for (const json of halfWay) {
      assert.equal(compileJsonWireEncoder(Everything, { ignoreUnknownFields: true })(json), undefined);
      assert.ok(agree(Everything, good, "the next tree"));
    }
    const large = { s: "z".repeat(100_000), nested: { label: "x" } };
    assert.ok(agree(Everything, large, "a message past the kept writer size"));
    assert.ok(agree(Everything, good, "after a large message"));
  });

  test("random messages with values bent out of canonical form", () => {
    const bend = (json: JsonValue, r: () => number): JsonValue => {
      if (Array.isArray(json)) return json.map((v) => bend(v, r));
      if (json !== null && typeof json === "object") {
        const out: Record<string, JsonValue> = {};
        for (const [k, v] of Object.entries(json)) {
          const roll = r();
          if (roll < 0.05) out[k] = null;
          else if (roll < 0.1 && typeof v === "number") out[k] = String(v);
          else if (roll < 0.12) out[`x_${k}`] = v;
          else out[k] = bend(v, r);
        }
        return out;
      }
      return json;
    };
    run(Shapes, 21, 300, bend);
    run(Everything, 22, 300, bend);
  });
});

test("one encoder per message type and option, whatever the number of routes", () => {
  assert.equal(compileJsonWireEncoder(Everything, { ignoreUnknownFields: true }), compileJsonWireEncoder(Everything, { ignoreUnknownFields: true }));
  assert.notEqual(compileJsonWireEncoder(Everything, { ignoreUnknownFields: true }), compileJsonWireEncoder(Everything, { ignoreUnknownFields: false }));
});
