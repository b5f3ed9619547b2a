import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, fromJson, toJson, type DescField, type JsonObject } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { compileFieldSetter, compileQueryParser, findField, forEachQueryParameter, newJsonObject, rememberedQueryNames } from "./query.ts";
import { prng } from "./testing/random-messages.ts";

const registry = createFileRegistry(
  fromBinary(FileDescriptorSetSchema, readFileSync(new URL("../../gen/mirror.binpb", import.meta.url))),
);
const Everything = registry.getMessage("mirror.v1.Everything")!;
const field = (name: string): DescField => findField(Everything, name)!;

/** Query string → tree → decoded Everything → its canonical JSON (proto names, zeros left out). */
function decodeQuery(query: string, bound: ReadonlyArray<readonly DescField[]> = []): Record<string, unknown> {
  const tree = newJsonObject();
  compileQueryParser(Everything, bound).apply(query, tree);
  const message = fromJson(Everything, tree, { registry });
  return toJson(Everything, message, { registry, useProtoFieldName: true }) as Record<string, unknown>;
}

function rejects(query: string, pattern: RegExp): void {
  assert.throws(
    () => decodeQuery(query),
    (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && pattern.test(e.rawMessage),
    query,
  );
}

describe("query strings are split and decoded as URLSearchParams does", () => {
  const pairsOf = (query: string): Array<[string, string]> => {
    const pairs: Array<[string, string]> = [];
    forEachQueryParameter(query, (name, value) => pairs.push([name, value]));
    return pairs;
  };
  const same = (query: string) => assert.deepEqual(pairsOf(query), [...new URLSearchParams(query)], JSON.stringify(query));

  test("plain, form-encoded, malformed and non-ASCII parameters", () => {
    for (const query of [
      "",
      "a=1&b=2&a=3",
      "?a=1",
      "??a=1",
      "&&a=1&&",
      "a",
      "a=",
      "=1",
      "=",
      "a=b=c",
      "a+b=c+d",
      "q=%20%2B%26%3D%3F",
      "k%5Bx%5D=v",
      "a=%",
      "a=%zz&b=%4",
      "a=%C3%A9&b=%C3",
      "a=%ED%A0%80",
      "a=%F0%9F%98%80",
      "a=é&b=\u00e9+x",
      "a=\ud800&b=\udc00x",
      "a=%e2%82%ac",
      "a=?b&c=%3F",
    ]) {
      same(query);
    }
  });

  test("random strings over the characters that matter", () => {
    const alphabet = ["a", "b", "=", "&", "+", "%", "2", "B", "f", "F", "C", "3", "A", "9", "?", " ", "é", "\ud83d", "\ude00", "%C3", "%A9", "%2", "%E2%82%AC"];
    const r = prng(31);
    for (let i = 0; i < 3000; i++) {
      let query = "";
      const length = Math.floor(r() * 16);
      for (let j = 0; j < length; j++) query += alphabet[Math.floor(r() * alphabet.length)];
      same(query);
    }
  });
});

describe("query parameters → request fields", () => {
  test("every scalar type, from its string form", () => {
    assert.deepEqual(
      decodeQuery("s=hi&i32=-7&i64=-42&u64=42&b=true&d=1.5&f=0.25&raw=AQID&name=n&si=-3&fx=18446744073709551615"),
      {
        s: "hi",
        i32: -7,
        i64: "-42",
        u64: "42",
        b: true,
        d: 1.5,
        f: 0.25,
        raw: "AQID",
        name: "n",
        si: -3,
        fx: "18446744073709551615",
      },
    );
  });

  test("64-bit integers keep every digit beyond 2^53", () => {
    assert.deepEqual(decodeQuery("i64=9007199254740993&u64=18446744073709551615"), {
      i64: "9007199254740993",
      u64: "18446744073709551615",
    });
    assert.deepEqual(decodeQuery("i64=-9223372036854775808"), { i64: "-9223372036854775808" });
    rejects("i64=9223372036854775808", /"i64" \(int64\)/);
    rejects("u64=-1", /"u64" \(uint64\)/);
    rejects("i64=1.5", /"i64"/);
    rejects("i32=2147483648", /invalid value "2147483648" for field "i32" \(int32\)/);
    rejects("i32=abc", /^invalid value "abc" for field "i32" \(int32\)$/);
  });

  test("bools in Go's ParseBool forms", () => {
    for (const yes of ["true", "True", "TRUE", "t", "T", "1"]) assert.equal(decodeQuery(`b=${yes}`).b, true, yes);
    for (const no of ["false", "False", "FALSE", "f", "F", "0"]) assert.equal(decodeQuery(`b=${no}`).b, undefined, no);
    rejects("b=yes", /"b" \(bool\)/);
  });

  test("floats and doubles, NaN and infinities included", () => {
    assert.deepEqual(decodeQuery("d=NaN&f=Infinity"), { d: "NaN", f: "Infinity" });
    assert.deepEqual(decodeQuery("d=-Infinity&f=-inf"), { d: "-Infinity", f: "-Infinity" });
    assert.deepEqual(decodeQuery("d=-1.25e-3&f=3e38"), { d: -0.00125, f: 3e38 });
    rejects("f=1e39", /"f" \(float\)/);
    rejects("d=1e309", /"d" \(double\)/);
    rejects("d=0x10", /"d" \(double\)/);
  });

  test("bytes as base64 or base64url, padded or not", () => {
    for (const form of ["+/8=", "+/8", "-_8", "-_8=", "%2B%2F8%3D"]) {
      assert.equal(decodeQuery(`raw=${form}`).raw, "+/8=", form);
    }
    // An unescaped + arrives as a space; base64 has no spaces, so it was a +.
    assert.equal(decodeQuery("raw=+/8=").raw, "+/8=");
    rejects("raw=a", /"raw" \(bytes\)/);
    rejects("raw=a*b=", /"raw" \(bytes\)/);
    rejects("raw=AQID%3D%3D", /"raw" \(bytes\)/);
  });

  test("enums by value name or declared number", () => {
    assert.equal(decodeQuery("color=GREEN").color, "GREEN");
    assert.equal(decodeQuery("color=1").color, "RED");
    rejects("color=PURPLE", /^invalid value "PURPLE" for field "color" \(mirror\.v1\.Color\)$/);
    rejects("color=7", /"color"/);
    rejects("color=green", /"color"/);
  });

  test("repeated fields by repetition", () => {
    assert.deepEqual(decodeQuery("tags=a&tags=b&nums=1&nums=-2&colors=RED&colors=2&tags=c"), {
      tags: ["a", "b", "c"],
      nums: [1, -2],
      colors: ["RED", "GREEN"],
    });
    rejects("nums=1&nums=x", /"nums" \(int32\)/);
  });

  test("nested fields by dotted path, in proto or JSON names", () => {
    assert.deepEqual(decodeQuery("nested.label=a&nested.child.level=3&nested.child.child.label=deep"), {
      nested: { label: "a", child: { level: 3, child: { label: "deep" } } },
    });
    assert.deepEqual(decodeQuery("optI64=5&anyValue=true&pickA=x"), { opt_i64: "5", any_value: true, pick_a: "x" });
    rejects("nested.level=x", /field "nested\.level" \(int32\)/);
  });

  test("a singular field given twice is an error, also across its two spellings", () => {
    rejects("s=a&s=b", /too many values for field "s"/);
    rejects("opt_s=a&optS=b", /too many values for field "opt_s"/);
  });

  test("map entries as field[key]=value", () => {
    assert.deepEqual(decodeQuery("labels[k1]=v1&labels[k2]=v2&labels[]=empty-key"), {
      labels: { k1: "v1", k2: "v2", "": "empty-key" },
    });
    assert.deepEqual(decodeQuery("labels[__proto__]=x"), { labels: { ["__proto__"]: "x" } });
    assert.deepEqual(decodeQuery("labels[constructor]=c&labels[toString]=t&labels[hasOwnProperty]=h"), {
      labels: { constructor: "c", toString: "t", hasOwnProperty: "h" },
    });
    rejects("labels=v", /"labels" is a map/);
  });

  test("wrappers by their scalar", () => {
    assert.deepEqual(decodeQuery("opt_i64=-9007199254740993&opt_s="), { opt_i64: "-9007199254740993", opt_s: "" });
    rejects("opt_i64=x", /"opt_i64" \(google\.protobuf\.Int64Value\)/);
  });

  test("Timestamp (RFC 3339), Duration (JSON or Go form), FieldMask (proto or JSON names)", () => {
    assert.equal(decodeQuery("ts=2024-01-02T03:04:05.5Z").ts, "2024-01-02T03:04:05.500Z");
    assert.equal(decodeQuery("ts=2024-01-02T05:04:05%2B02:00").ts, "2024-01-02T03:04:05Z");
    rejects("ts=yesterday", /"ts" \(google\.protobuf\.Timestamp\)/);
    const durations: Array<[string, string]> = [
      ["1.5s", "1.500s"],
      ["-0.5s", "-0.500s"],
      ["1m30s", "90s"],
      ["1h2m3.25s", "3723.250s"],
      ["300ms", "0.300s"],
      ["1.5us", "0.000001500s"],
      ["0", "0s"],
    ];
    for (const [given, json] of durations) assert.equal(decodeQuery(`dur=${given}`).dur, json, given);
    rejects("dur=5", /"dur" \(google\.protobuf\.Duration\)/);
    rejects("dur=1d", /"dur"/);
    rejects("dur=400000000000s", /"dur"/);
    const message = fromJson(Everything, treeOf("mask=s,nested.label,opt_i64,optS"), { registry });
    assert.deepEqual((message as unknown as { mask: { paths: string[] } }).mask.paths, [
      "s",
      "nested.label",
      "opt_i64",
      "opt_s",
    ]);
  });

  test("Struct and Value as JSON text", () => {
    assert.deepEqual(decodeQuery(`meta=${encodeURIComponent('{"a":[1,"x"]}')}&any_value=null`), {
      meta: { a: [1, "x"] },
      any_value: null,
    });
    rejects("meta=[1]", /"meta" \(google\.protobuf\.Struct\)/);
    rejects("any_value={", /"any_value"/);
  });

  test("oneof members; two members of one oneof are rejected", () => {
    assert.deepEqual(decodeQuery("pick_b=4"), { pick_b: 4 });
    assert.throws(() => decodeQuery("pick_a=x&pick_b=4"), /oneof/);
  });

  test("unknown names are ignored; paths through non-messages and message leaves are errors", () => {
    assert.deepEqual(decodeQuery("nope=1&nested.nope=2&nested.=3&=4&utm_source=x"), {});
    rejects("s.x=1", /"s" is not a message field/);
    rejects("ts.seconds=1", /"ts" is not a message field/);
    rejects("items.label=x", /"items" is not a message field/);
    rejects("nested=x", /"nested" \(mirror\.v1\.Nested\) cannot be set from a query parameter/);
    // Brackets on something that is not a map name nothing.
    assert.deepEqual(decodeQuery("tags[0]=a&s[x]=b"), {});
  });

  test("parameters naming a bound field, or a field under it, are ignored", () => {
    const bound = [[field("s")], [field("nested")]];
    assert.deepEqual(decodeQuery("s=q&nested.label=q&nested.child.level=1&i32=2", bound), { i32: 2 });
    // Bound by its nested path only: siblings still apply.
    const nestedLabel = [[field("nested"), findField(field("nested").message!, "label")!]];
    assert.deepEqual(decodeQuery("nested.label=q&nested.level=4", nestedLabel), { nested: { level: 4 } });
  });
});

test("tree objects inherit nothing: every key a client names is just a key", () => {
  const tree = newJsonObject();
  for (const key of ["__proto__", "constructor", "toString", "valueOf", "hasOwnProperty"]) {
    assert.equal(tree[key], undefined, `${key} is not inherited`);
    tree[key] = key;
  }
  assert.deepEqual(Object.keys(tree), ["__proto__", "constructor", "toString", "valueOf", "hasOwnProperty"]);
  assert.equal(JSON.stringify(tree), '{"__proto__":"__proto__","constructor":"constructor","toString":"toString","valueOf":"valueOf","hasOwnProperty":"hasOwnProperty"}');
  assert.throws(() => Object.defineProperty(Object.getPrototypeOf(tree), "x", { value: 1 }), TypeError, "the prototype is frozen");
});

test("routes over one message share what they remember, and remember only names of fields", () => {
  const bound = [[field("s")]];
  const first = compileQueryParser(Everything, bound);
  const second = compileQueryParser(Everything, bound);
  const before = rememberedQueryNames(Everything, bound);
  // Names clients make up (unknown, or invalid paths) are resolved each time, never kept:
  // otherwise every route would hold up to its cap of attacker-chosen strings.
  for (let i = 0; i < 2000; i++) {
    first.apply(`made-up-${i}=1&nested.nope${i}=2`, newJsonObject());
    assert.throws(() => second.apply(`tags.x${i}=1`, newJsonObject()), ConnectError);
  }
  assert.equal(rememberedQueryNames(Everything, bound), before);
  first.apply("i32=1&nested.label=x&labels[k]=v", newJsonObject());
  const after = rememberedQueryNames(Everything, bound);
  assert.ok(after > before, "field names are remembered");
  second.apply("i32=2", newJsonObject());
  assert.equal(rememberedQueryNames(Everything, bound), after, "the second route's parser found the first one's entry");
});

describe("path variable setters", () => {
  test("set nested fields, creating parents, converting the value", () => {
    const tree = newJsonObject();
    compileFieldSetter(Everything, ["nested", "child", "level"]).set(tree, "12");
    compileFieldSetter(Everything, ["nested", "label"]).set(tree, "x");
    compileFieldSetter(Everything, ["i64"]).set(tree, "-9007199254740993");
    assert.deepEqual(JSON.parse(JSON.stringify(tree)), {
      nested: { child: { level: 12 }, label: "x" },
      i64: "-9007199254740993",
    });
  });

  test("a value that does not fit the field is InvalidArgument naming it", () => {
    const setter = compileFieldSetter(Everything, ["i64"]);
    assert.throws(
      () => setter.set(newJsonObject(), "not-a-number"),
      (e: unknown) =>
        e instanceof ConnectError &&
        e.code === Code.InvalidArgument &&
        e.rawMessage === 'invalid value "not-a-number" for field "i64" (int64)',
    );
  });

  test("well-known types with a string form may be path variables", () => {
    const tree = newJsonObject();
    compileFieldSetter(Everything, ["ts"]).set(tree, "2024-01-01T00:00:00Z");
    compileFieldSetter(Everything, ["opt_s"]).set(tree, "w");
    assert.deepEqual({ ...tree }, { ts: "2024-01-01T00:00:00Z", opt_s: "w" });
  });

  test("missing, repeated, map and plain message fields are refused at compile time", () => {
    assert.throws(() => compileFieldSetter(Everything, ["missing"]), /names no field of mirror\.v1\.Everything/);
    assert.throws(() => compileFieldSetter(Everything, ["tags"]), /repeated/);
    assert.throws(() => compileFieldSetter(Everything, ["labels"]), /map/);
    assert.throws(() => compileFieldSetter(Everything, ["nested"]), /message field \(mirror\.v1\.Nested\)/);
    assert.throws(() => compileFieldSetter(Everything, ["s", "x"]), /"s" is not a message field/);
    assert.throws(() => compileFieldSetter(Everything, ["items", "label"]), /"items" is not a message field/);
  });
});

function treeOf(query: string): JsonObject {
  const tree = newJsonObject();
  compileQueryParser(Everything, []).apply(query, tree);
  return tree;
}
