import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import fc from "fast-check";
import {
  create,
  createFileRegistry,
  fromBinary,
  toJson,
  type DescMessage,
  type Message,
  type Registry,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { compileRequestMapper, type HttpRequestParts, type RequestMapper, type RequestMessage } from "./request.ts";
import { WireMessage } from "../upstream/call-info.ts";

function loadSet(name: string): Registry {
  const bytes = readFileSync(new URL(`../../gen/${name}.binpb`, import.meta.url));
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
}
const mirror = loadSet("mirror");
const demo = loadSet("demo");
const Everything = mirror.getMessage("mirror.v1.Everything")!;
const UpdateBookRequest = demo.getMessage("demo.library.v1.UpdateBookRequest")!;

/** The messages of http.proto's own examples ("Rules for HTTP mapping"). */
const spec = (() => {
  const field = (name: string, number: number, type: Type, typeName?: string) => ({
    name,
    number,
    type,
    typeName,
    label: 1, // LABEL_OPTIONAL
  });
  const file = create(FileDescriptorProtoSchema, {
    name: "spec.proto",
    package: "spec",
    syntax: "proto3",
    messageType: [
      {
        name: "GetMessageRequest",
        field: [
          field("message_id", 1, Type.STRING),
          field("revision", 2, Type.INT64),
          field("sub", 3, Type.MESSAGE, ".spec.GetMessageRequest.SubMessage"),
          field("user_id", 4, Type.STRING),
        ],
        nestedType: [{ name: "SubMessage", field: [field("subfield", 1, Type.STRING)] }],
      },
      { name: "Message", field: [field("message_id", 1, Type.STRING), field("text", 2, Type.STRING)] },
      {
        name: "UpdateMessageRequest",
        field: [field("message_id", 1, Type.STRING), field("message", 2, Type.MESSAGE, ".spec.Message")],
      },
    ],
  });
  return createFileRegistry(file, () => undefined);
})();

function parts(p: Partial<HttpRequestParts> = {}): HttpRequestParts {
  return { httpMethod: "GET", variables: [], query: "", bodyText: undefined, ...p };
}

/** The mapped message as canonical JSON with proto names, zero values left out. */
function mapped(mapper: RequestMapper, desc: DescMessage, registry: Registry, p: Partial<HttpRequestParts>, strict = false) {
  return json(desc, registry, mapper.map(parts(p), strict));
}
function json(desc: DescMessage, registry: Registry, message: RequestMessage) {
  return toJson(desc, asMessage(desc, message), { registry, useProtoFieldName: true });
}

/** The mapped message, decoded when the mapper gave it as bytes (json-wire.ts). */
function asMessage(desc: DescMessage, message: RequestMessage): Message {
  return message instanceof WireMessage ? fromBinary(desc, message.bytes) : message;
}

function isInvalidArgument(pattern: RegExp) {
  return (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && pattern.test(e.rawMessage);
}

describe("http.proto's examples", () => {
  const desc = (name: string) => spec.getMessage(`spec.${name}`)!;
  const cases: Array<{
    rule: string;
    input: string;
    body?: string;
    paths: string[][];
    request: Partial<HttpRequestParts>;
    expected: unknown;
  }> = [
    {
      rule: 'get: "/v1/{name=messages/*}" (name as message_id here)',
      input: "GetMessageRequest",
      paths: [["message_id"]],
      request: { variables: [[["message_id"], "messages/123456"]] },
      expected: { message_id: "messages/123456" },
    },
    {
      rule: 'get: "/v1/messages/{message_id}" — GET /v1/messages/123456?revision=2&sub.subfield=foo',
      input: "GetMessageRequest",
      paths: [["message_id"]],
      request: {
        variables: [[["message_id"], "123456"]],
        query: "revision=2&sub.subfield=foo",
      },
      expected: { message_id: "123456", revision: "2", sub: { subfield: "foo" } },
    },
    {
      rule: 'additional binding get: "/v1/users/{user_id}/messages/{message_id}"',
      input: "GetMessageRequest",
      paths: [["user_id"], ["message_id"]],
      request: { variables: [[["user_id"], "me"], [["message_id"], "123456"]] },
      expected: { message_id: "123456", user_id: "me" },
    },
    {
      rule: 'put: "/v1/messages/{message_id}" body: "message" — PUT {"text": "Hi!"}',
      input: "UpdateMessageRequest",
      body: "message",
      paths: [["message_id"]],
      request: { httpMethod: "PUT", variables: [[["message_id"], "123456"]], bodyText: '{ "text": "Hi!" }' },
      expected: { message_id: "123456", message: { text: "Hi!" } },
    },
    {
      rule: 'patch: "/v1/messages/{message_id}" body: "*" — PATCH {"text": "Hi!"}',
      input: "Message",
      body: "*",
      paths: [["message_id"]],
      request: { httpMethod: "PATCH", variables: [[["message_id"], "123456"]], bodyText: '{ "text": "Hi!" }' },
      expected: { message_id: "123456", text: "Hi!" },
    },
  ];
  for (const c of cases) {
    test(c.rule, () => {
      const mapper = compileRequestMapper(desc(c.input), c.body, c.paths, { registry: spec });
      assert.deepEqual(mapped(mapper, desc(c.input), spec, c.request), c.expected);
    });
  }
});

describe("mapping rules on mirror.v1.Everything", () => {
  const echoGet = compileRequestMapper(Everything, undefined, [["s"], ["i64"]], { registry: mirror });
  const echoPut = compileRequestMapper(Everything, "*", [["s"]], { registry: mirror });
  const echoNested = compileRequestMapper(Everything, "nested", [["s"]], { registry: mirror });
  const map = (mapper: RequestMapper, p: Partial<HttpRequestParts>, strict = false) =>
    mapped(mapper, Everything, mirror, p, strict);

  test("no body: path variables and query parameters; a query parameter naming a path field is ignored", () => {
    assert.deepEqual(
      map(echoGet, {
        variables: [[["s"], "from path"], [["i64"], "-42"]],
        query: "s=from-query&i64=7&tags=a&nested.child.label=x&unknown=1",
      }),
      { s: "from path", i64: "-42", tags: ["a"], nested: { child: { label: "x" } } },
    );
  });

  test('body "*": the body is the message, query parameters are not applied, path variables win', () => {
    assert.deepEqual(
      map(echoPut, {
        httpMethod: "PUT",
        variables: [[["s"], "from path"]],
        query: "i32=99&name=q",
        bodyText: '{"s":"from body","i32":3,"nested":{"label":"x"},"opt_i64":"7"}',
      }),
      { s: "from path", i32: 3, nested: { label: "x" }, opt_i64: "7" },
    );
  });

  test("a path variable overrides the body field even under its JSON name, and a oneof sibling", () => {
    const mapper = compileRequestMapper(Everything, "*", [["opt_s"], ["pick_a"]], { registry: mirror });
    assert.deepEqual(
      map(mapper, {
        httpMethod: "POST",
        variables: [[["opt_s"], "path"], [["pick_a"], "a"]],
        bodyText: '{"optS":"body","pickB":4}',
      }),
      { opt_s: "path", pick_a: "a" },
    );
  });

  test('body "field": the body is that field; query parameters fill the rest but not the body field', () => {
    assert.deepEqual(
      map(echoNested, {
        httpMethod: "POST",
        variables: [[["s"], "abc"]],
        query: "i32=9&nested.label=ignored&nested.level=5",
        bodyText: '{"label":"inner","level":2}',
      }),
      { s: "abc", i32: 9, nested: { label: "inner", level: 2 } },
    );
  });

  test('body "field" may be a scalar or a well-known type', () => {
    const scalar = compileRequestMapper(Everything, "s", [], { registry: mirror });
    assert.deepEqual(map(scalar, { httpMethod: "POST", bodyText: '"text"', query: "i32=1" }), {
      s: "text",
      i32: 1,
    });
    const timestamp = compileRequestMapper(Everything, "ts", [], { registry: mirror });
    assert.deepEqual(map(timestamp, { httpMethod: "POST", bodyText: '"2024-01-01T00:00:00Z"' }), {
      ts: "2024-01-01T00:00:00Z",
    });
  });

  test("a path variable inside the body field overrides the body", () => {
    const mapper = compileRequestMapper(Everything, "nested", [["nested", "label"]], { registry: mirror });
    assert.deepEqual(
      map(mapper, { httpMethod: "POST", variables: [[["nested", "label"], "path"]], bodyText: '{"label":"body","level":1}' }),
      { nested: { label: "path", level: 1 } },
    );
  });

  test("an empty or absent body sets nothing", () => {
    for (const bodyText of [undefined, "", " \n"]) {
      assert.deepEqual(map(echoPut, { httpMethod: "PUT", variables: [[["s"], "x"]], bodyText }), { s: "x" });
      assert.deepEqual(map(echoNested, { httpMethod: "POST", bodyText }), {});
    }
  });

  test("unknown body fields are ignored, or rejected naming the field when strict", () => {
    const p = { httpMethod: "POST", bodyText: '{"s":"x","bogus":1}' };
    assert.deepEqual(map(echoPut, p), { s: "x" });
    assert.throws(() => map(echoPut, p, true), isInvalidArgument(/"bogus" is unknown/));
    const nested = { httpMethod: "POST", bodyText: '{"label":"x","deeper":{}}' };
    assert.deepEqual(map(echoNested, nested), { nested: { label: "x" } });
    assert.throws(() => map(echoNested, nested, true), isInvalidArgument(/"deeper" is unknown/));
  });

  test("type errors in the body are InvalidArgument naming the field", () => {
    assert.throws(() => map(echoPut, { bodyText: '{"i32":"x"}' }), isInvalidArgument(/Everything\.i32/));
    assert.throws(() => map(echoPut, { bodyText: '{"color":"PURPLE"}' }, true), isInvalidArgument(/field "color"/));
    assert.throws(
      () => map(echoPut, { bodyText: '{"s":"ok","nested":{"child":{"label":"x"}},"ts":"yesterday"}' }),
      isInvalidArgument(/^invalid value for field "ts": .*Timestamp/),
    );
    assert.throws(() => map(echoNested, { bodyText: '{"level":true}' }), isInvalidArgument(/Nested\.level/));
    assert.throws(() => map(echoPut, { bodyText: "[1]" }), isInvalidArgument(/Everything/));
  });

  test("malformed JSON is InvalidArgument", () => {
    for (const bodyText of ['{"s":', "{'s':1}", "nope"]) {
      assert.throws(() => map(echoPut, { bodyText }), isInvalidArgument(/^invalid JSON body: /), bodyText);
    }
  });

  test("type errors in path variables and query parameters name the field", () => {
    assert.throws(
      () => map(echoGet, { variables: [[["s"], "x"], [["i64"], "not-a-number"]] }),
      isInvalidArgument(/^invalid value "not-a-number" for field "i64" \(int64\)$/),
    );
    assert.throws(
      () => map(echoGet, { query: "nested.child.level=1.5" }),
      isInvalidArgument(/"nested\.child\.level" \(int32\)/),
    );
  });
});

describe("PATCH fills an unset field mask from the body", () => {
  const echoPatch = compileRequestMapper(Everything, "nested", [["name"]], { registry: mirror });
  const updateBook = compileRequestMapper(UpdateBookRequest, "book", [["book", "name"]], { registry: demo });
  // Only echoPatch's (Everything) non-PATCH results can come as bytes.
  const maskOf = (m: RequestMessage) =>
    asMessage(Everything, m) as unknown as { mask?: { paths: string[] }; updateMask?: { paths: string[] } };

  test("the only FieldMask field (mirror's mask), with nested keys as leaf paths", () => {
    const message = echoPatch.map(
      parts({
        httpMethod: "PATCH",
        variables: [[["name"], "things/t1"]],
        bodyText: '{"label":"l","child":{"level":1,"child":{}},"unknown":{"x":1}}',
      }),
      false,
    );
    assert.deepEqual(maskOf(message).mask?.paths, ["label", "child.level", "child.child"]);
  });

  test("update_mask with proto names from JSON-named keys; the path variable is not a body key", () => {
    const message = updateBook.map(
      parts({
        httpMethod: "PATCH",
        variables: [[["book", "name"], "shelves/1/books/2"]],
        bodyText: '{"title":"T","createTime":"2024-01-01T00:00:00Z","tags":["a"],"served_by":"x"}',
      }),
      false,
    );
    assert.deepEqual(json(UpdateBookRequest, demo, message), {
      book: {
        name: "shelves/1/books/2",
        title: "T",
        tags: ["a"],
        create_time: "2024-01-01T00:00:00Z",
        served_by: "x",
      },
      update_mask: "title,createTime,tags,servedBy",
    });
  });

  test("a mask given by the client is kept", () => {
    const message = echoPatch.map(
      parts({ httpMethod: "PATCH", query: "mask=level", bodyText: '{"label":"l"}' }),
      false,
    );
    assert.deepEqual(maskOf(message).mask?.paths, ["level"]);
    const book = updateBook.map(
      parts({ httpMethod: "PATCH", query: "update_mask=author", bodyText: '{"title":"T"}' }),
      false,
    );
    assert.deepEqual(maskOf(book).updateMask?.paths, ["author"]);
  });

  test("other methods, and bodies without keys, leave the mask unset", () => {
    const post = echoPatch.map(parts({ httpMethod: "POST", bodyText: '{"label":"l"}' }), false);
    assert.equal(maskOf(post).mask, undefined);
    const empty = echoPatch.map(parts({ httpMethod: "PATCH", bodyText: "{}" }), false);
    assert.equal(maskOf(empty).mask, undefined);
  });
});

describe("client-streaming items", () => {
  test("each NDJSON line is mapped like the body, with the path variables", () => {
    const collect = compileRequestMapper(Everything, "*", [["name"]], { registry: mirror });
    const item = collect.mapStreamItem('{"s":"a","name":"body"}', [[["name"], "path"]], false);
    assert.deepEqual(json(Everything, mirror, item), { s: "a", name: "path" });
    assert.throws(() => collect.mapStreamItem('{"i32":"x"}', [], false), isInvalidArgument(/i32/));
    assert.throws(() => collect.mapStreamItem("{", [], false), isInvalidArgument(/invalid JSON body/));
    assert.throws(() => collect.mapStreamItem('{"zz":1}', [], true), isInvalidArgument(/"zz" is unknown/));
  });

  test("without a body rule a line is the whole message; with a field rule it is that field", () => {
    const whole = compileRequestMapper(Everything, undefined, [["s"]], { registry: mirror });
    assert.deepEqual(json(Everything, mirror, whole.mapStreamItem('{"s":"line","i32":1}', [[["s"], "path"]], false)), {
      s: "path",
      i32: 1,
    });
    const nested = compileRequestMapper(Everything, "nested", [], { registry: mirror });
    assert.deepEqual(json(Everything, mirror, nested.mapStreamItem('{"label":"x"}', [], false)), {
      nested: { label: "x" },
    });
  });
});

describe("compile-time checks", () => {
  const compile = (body: string | undefined, paths: string[][]) =>
    compileRequestMapper(Everything, body, paths, { registry: mirror });

  test("body naming no field or a repeated field", () => {
    assert.throws(() => compile("nope", []), /body "nope" names no field of mirror\.v1\.Everything/);
    assert.throws(() => compile("tags", []), /body "tags" names a repeated field/);
  });

  test("path variables naming a missing, repeated, map or message field", () => {
    assert.throws(() => compile(undefined, [["zz"]]), /path variable "zz" names no field/);
    assert.throws(() => compile("*", [["colors"]]), /repeated/);
    assert.throws(() => compile("*", [["labels"]]), /map/);
    assert.throws(() => compile("*", [["nested"]]), /message field/);
    assert.doesNotThrow(() => compile("*", [["nested", "child", "label"], ["ts"], ["opt_i64"]]));
  });
});

describe("properties", () => {
  const echoGet = compileRequestMapper(Everything, undefined, [["s"]], { registry: mirror });
  const keys = [
    ...Everything.fields.flatMap((f) => [f.name, f.jsonName]),
    "nested.label",
    "nested.child.level",
    "nested.child.child.label",
    "labels[k]",
    "labels",
    "items.label",
    "ts.seconds",
  ];
  const values = fc.oneof(
    fc.string(),
    fc.constantFrom("NaN", "-Infinity", "1e400", "RED", "7", "-1", "true", "+/8=", "1.5s", "2024-01-01T00:00:00Z", "{}", "[]", "a,b"),
    fc.integer().map(String),
    fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
  );
  const pairs = fc.array(fc.tuple(fc.oneof(fc.constantFrom(...keys), fc.string()), values), { maxLength: 8 });

  test("random query strings map or fail with InvalidArgument, nothing else", () => {
    fc.assert(
      fc.property(pairs, fc.option(fc.string(), { nil: undefined }), (query, path) => {
        try {
          echoGet.map(parts({ variables: path === undefined ? [] : [[["s"], path]], query: new URLSearchParams(query).toString() }), false);
        } catch (e) {
          assert.ok(e instanceof ConnectError, `not a ConnectError: ${String(e)}`);
          assert.equal(e.code, Code.InvalidArgument, e.message);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("random bodies map or fail with InvalidArgument, nothing else", () => {
    const echoPut = compileRequestMapper(Everything, "*", [["s"]], { registry: mirror });
    const body = fc.oneof(
      fc.string(),
      fc.json(),
      fc.dictionary(fc.constantFrom(...keys), fc.jsonValue()).map((o) => JSON.stringify(o)),
    );
    fc.assert(
      fc.property(body, fc.boolean(), (bodyText, strict) => {
        try {
          echoPut.map(parts({ httpMethod: "PATCH", bodyText }), strict);
        } catch (e) {
          assert.ok(e instanceof ConnectError, `not a ConnectError: ${String(e)}`);
          assert.equal(e.code, Code.InvalidArgument, e.message);
        }
      }),
      { numRuns: 1000 },
    );
  });
});
