import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import {
  create,
  createFileRegistry,
  createRegistry,
  equals,
  fromBinary,
  fromJson,
  toBinary,
  type JsonValue,
  type Message,
} from "@bufbuild/protobuf";
import { AnySchema, DurationSchema, FileDescriptorSetSchema, anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, file_google_rpc_error_details } from "../../gen/google/rpc/error_details_pb.ts";
import {
  compileResponseRenderer,
  renderStatus,
  streamErrorChunk,
  streamResultChunk,
  type JsonOptions,
} from "./response.ts";

const registry = createFileRegistry(
  fromBinary(FileDescriptorSetSchema, readFileSync(new URL("../../gen/mirror.binpb", import.meta.url))),
);
const Everything = registry.getMessage("mirror.v1.Everything")!;
const Nested = registry.getMessage("mirror.v1.Nested")!;
const Empty = registry.getMessage("google.protobuf.Empty")!;

const everything = (json: JsonValue): Message => fromJson(Everything, json, { registry });
const options = (o: Partial<JsonOptions> = {}): JsonOptions => ({
  registry,
  emitUnpopulated: true,
  useProtoNames: false,
  ...o,
});
const render = (message: Message, o: Partial<JsonOptions> = {}, responseBody?: string) =>
  JSON.parse(compileResponseRenderer(message.$typeName === Empty.typeName ? Empty : Everything, responseBody, options(o)).render(message));

describe("response messages → JSON", () => {
  test("unpopulated fields are emitted by default, and left out when asked", () => {
    const full = render(everything({ s: "x" }));
    assert.equal(full.s, "x");
    assert.equal(full.i32, 0);
    assert.equal(full.i64, "0");
    assert.equal(full.b, false);
    assert.equal(full.raw, "");
    assert.equal(full.color, "COLOR_UNSPECIFIED");
    assert.deepEqual(full.tags, []);
    assert.deepEqual(full.labels, {});
    assert.equal(full.nested, undefined, "message fields have presence: unset stays absent");
    assert.deepEqual(render(everything({ s: "x" }), { emitUnpopulated: false }), { s: "x" });
  });

  test("lowerCamelCase names, or proto names when asked", () => {
    const message = everything({ optI64: "1", pickA: "a", anyValue: 1 });
    assert.deepEqual(render(message, { emitUnpopulated: false }), { optI64: "1", pickA: "a", anyValue: 1 });
    assert.deepEqual(render(message, { emitUnpopulated: false, useProtoNames: true }), {
      opt_i64: "1",
      pick_a: "a",
      any_value: 1,
    });
  });

  test("int64 as strings, enums as names, bytes as base64, well-known types in their forms", () => {
    const message = everything({
      i64: "-9007199254740993",
      u64: "18446744073709551615",
      fx: "1",
      color: 2,
      colors: [1, "GREEN"],
      raw: "-_8",
      ts: "2024-01-02T03:04:05.5Z",
      dur: "90s",
      optI64: 3,
      mask: "s,nested.label",
      d: "NaN",
    });
    assert.deepEqual(render(message, { emitUnpopulated: false }), {
      i64: "-9007199254740993",
      u64: "18446744073709551615",
      fx: "1",
      color: "GREEN",
      colors: ["RED", "GREEN"],
      raw: "+/8=",
      ts: "2024-01-02T03:04:05.500Z",
      dur: "90s",
      optI64: "3",
      mask: "s,nested.label",
      d: "NaN",
    });
  });

  test("Empty is {}", () => {
    assert.equal(compileResponseRenderer(Empty, undefined, options()).render(create(Empty)), "{}");
  });

  test("Struct, Value and Any round-trip", () => {
    const meta = { a: [1, "x", null, { b: true }], n: null };
    const out = render(everything({ meta, anyValue: [{ k: "v" }, 2.5] }), { emitUnpopulated: false });
    assert.deepEqual(out, { meta, anyValue: [{ k: "v" }, 2.5] });
    const any = anyPack(Nested, fromJson(Nested, { label: "in any", level: 3 }));
    const text = compileResponseRenderer(AnySchema, undefined, options({ emitUnpopulated: false })).render(any);
    assert.deepEqual(JSON.parse(text), { "@type": "type.googleapis.com/mirror.v1.Nested", label: "in any", level: 3 });
    assert.ok(equals(AnySchema, fromJson(AnySchema, JSON.parse(text), { registry }), any));
  });
});

describe("response_body", () => {
  test("renders only that field", () => {
    const message = everything({ s: "x", nested: { label: "only" } });
    assert.deepEqual(render(message, { emitUnpopulated: false }, "nested"), { label: "only" });
    assert.deepEqual(render(message, {}, "nested"), { label: "only", level: 0 });
    assert.equal(render(message, {}, "s"), "x");
  });

  test("an unset field renders as grpc-gateway does: {} for messages, zero values for scalars", () => {
    const message = everything({});
    const body = (field: string, o: Partial<JsonOptions> = {}) =>
      compileResponseRenderer(Everything, field, options(o)).render(message);
    assert.equal(body("nested"), "{}");
    assert.equal(body("nested", { emitUnpopulated: false }), "{}");
    assert.equal(body("ts", { emitUnpopulated: false }), "{}");
    assert.equal(body("s", { emitUnpopulated: false }), '""');
    assert.equal(body("i64", { emitUnpopulated: false }), '"0"');
    assert.equal(body("color", { emitUnpopulated: false }), '"COLOR_UNSPECIFIED"');
    assert.equal(body("pick_b"), "0");
    assert.equal(body("tags"), "[]");
    assert.equal(body("tags", { emitUnpopulated: false }), "null");
    assert.equal(body("labels", { emitUnpopulated: false }), "{}");
  });

  test("a field named by its JSON name is accepted; an unknown field is a compile error", () => {
    const message = everything({ optS: "w" });
    assert.equal(compileResponseRenderer(Everything, "optS", options()).render(message), '"w"');
    assert.equal(compileResponseRenderer(Everything, "opt_i64", options()).render(message), "{}");
    assert.throws(() => compileResponseRenderer(Everything, "nope", options()), /response_body "nope" names no field/);
  });
});

describe("google.rpc.Status for errors", () => {
  const withDetails = createRegistry(registry, file_google_rpc_error_details);
  const badRequest = create(BadRequestSchema, {
    fieldViolations: [{ field: "i32", description: "must be positive" }],
  });

  test("code, raw message and an empty details list", () => {
    const error = new ConnectError('no "thing"\nhere', Code.NotFound);
    assert.deepEqual(JSON.parse(renderStatus(error, registry)), {
      code: 5,
      message: 'no "thing"\nhere',
      details: [],
    });
  });

  test("details received from upstream are decoded through the registry", () => {
    const error = new ConnectError("bad request", Code.InvalidArgument);
    error.details.push({ type: "google.rpc.BadRequest", value: toBinary(BadRequestSchema, badRequest) });
    assert.deepEqual(JSON.parse(renderStatus(error, withDetails)), {
      code: 3,
      message: "bad request",
      details: [
        {
          "@type": "type.googleapis.com/google.rpc.BadRequest",
          fieldViolations: [{ field: "i32", description: "must be positive" }],
        },
      ],
    });
  });

  test("a detail of an unknown type, or with broken bytes, keeps its raw bytes; nothing throws", () => {
    const error = new ConnectError("x", Code.Internal);
    error.details.push({ type: "acme.v1.Secret", value: new Uint8Array([1, 2, 3]) });
    error.details.push({ type: "google.rpc.BadRequest", value: new Uint8Array([0xff, 0xff]) });
    assert.deepEqual(JSON.parse(renderStatus(error, withDetails)).details, [
      { "@type": "type.googleapis.com/acme.v1.Secret", value: "AQID" },
      { "@type": "type.googleapis.com/google.rpc.BadRequest", value: "//8=" },
    ]);
  });

  test("details the gateway attaches itself are rendered even when the registry lacks their type", () => {
    const error = new ConnectError("x", Code.FailedPrecondition, undefined, [
      { desc: BadRequestSchema, value: badRequest },
      { desc: DurationSchema, value: { seconds: 2n } },
    ]);
    assert.deepEqual(JSON.parse(renderStatus(error, registry)).details, [
      {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        fieldViolations: [{ field: "i32", description: "must be positive" }],
      },
      { "@type": "type.googleapis.com/google.protobuf.Duration", value: "2s" },
    ]);
  });
});

describe("server-stream framing", () => {
  test("NDJSON lines and SSE events", () => {
    assert.equal(streamResultChunk('{"s":"a"}', "ndjson"), '{"result":{"s":"a"}}\n');
    assert.equal(streamErrorChunk('{"code":9}', "ndjson"), '{"error":{"code":9}}\n');
    assert.equal(streamResultChunk('{"s":"a"}', "sse"), 'data: {"result":{"s":"a"}}\n\n');
    assert.equal(streamErrorChunk('{"code":9}', "sse"), 'event: error\ndata: {"code":9}\n\n');
  });

  test("a message with newlines in its strings stays one line / one event", () => {
    const json = compileResponseRenderer(Everything, undefined, options()).render(everything({ s: "a\nb\r\n" }));
    assert.equal(streamResultChunk(json, "ndjson").split("\n").length, 2);
    assert.equal(streamResultChunk(json, "sse").split("\n\n").length, 2);
  });
});

describe("round trip property", () => {
  const finite = (n: fc.Arbitrary<number>) => n.filter((x) => !Object.is(x, -0));
  const int32 = fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
  const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String);
  const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String);
  const nested: fc.Arbitrary<Record<string, unknown>> = fc.letrec<{ node: Record<string, unknown> }>((tie) => ({
    node: fc.record(
      { label: fc.string(), level: int32, child: fc.option(tie("node"), { nil: undefined, depthSize: "small" }) },
      { requiredKeys: [] },
    ),
  })).node.map((n) => JSON.parse(JSON.stringify(n)));
  const duration = fc
    .tuple(fc.bigInt({ min: 0n, max: 315_576_000_000n }), fc.integer({ min: 0, max: 999_999_999 }), fc.boolean())
    .map(([s, n, negative]) => `${negative ? "-" : ""}${s}.${String(n).padStart(9, "0")}s`);
  const color = fc.constantFrom("COLOR_UNSPECIFIED", "RED", "GREEN");
  // Through JSON text once: JSON has no -0, so a Value holding -0 cannot round-trip.
  const json = fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.parse(JSON.stringify(v)) as unknown);
  const everythingJson = fc.record(
    {
      s: fc.string(),
      i32: int32,
      i64: int64,
      u64: uint64,
      b: fc.boolean(),
      // -0 is left out: JSON.stringify writes it as 0.
      d: fc.oneof(finite(fc.double({ noNaN: true, noDefaultInfinity: true })), fc.constantFrom("NaN", "Infinity", "-Infinity")),
      f: finite(fc.float({ noNaN: true, noDefaultInfinity: true })),
      raw: fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.from(b).toString("base64")),
      color,
      tags: fc.array(fc.string(), { maxLength: 4 }),
      nums: fc.array(int32, { maxLength: 4 }),
      nested,
      labels: fc.dictionary(fc.string(), fc.string(), { maxKeys: 4 }),
      ts: fc
        .date({ min: new Date("0001-01-01T00:00:00Z"), max: new Date("9999-12-31T23:59:59Z"), noInvalidDate: true })
        .map((d) => d.toISOString()),
      dur: duration,
      optI64: int64,
      optS: fc.string(),
      mask: fc.array(fc.constantFrom("s", "nested.label", "optI64", "nested.child.level"), { maxLength: 3 }).map((p) => p.join(",")),
      meta: fc.dictionary(fc.string(), json, { maxKeys: 4 }),
      name: fc.string(),
      si: int32,
      fx: uint64,
      pickA: fc.string(),
      items: fc.array(nested, { maxLength: 3 }),
      anyValue: json,
      colors: fc.array(color, { maxLength: 4 }),
    },
    { requiredKeys: [] },
  );
  const renderOptions = fc.record({ emitUnpopulated: fc.boolean(), useProtoNames: fc.boolean() });

  test("random Everything messages → render → fromJson gives the same message", () => {
    fc.assert(
      fc.property(everythingJson, renderOptions, (input, o) => {
        const message = everything(input as JsonValue);
        const text = compileResponseRenderer(Everything, undefined, options(o)).render(message);
        const back = fromJson(Everything, JSON.parse(text) as JsonValue, { registry });
        // Binary equality: NaN is not equal to itself, but its encoding is.
        assert.deepEqual(toBinary(Everything, back), toBinary(Everything, message), text);
      }),
      { numRuns: 500 },
    );
  });
});
