import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, setExtension, toBinary } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  MethodOptionsSchema,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { http } from "../../gen/google/api/annotations_pb.ts";
import { HttpRuleSchema } from "../../gen/google/api/http_pb.ts";
import { DescriptorError, registryFromDescriptorSets } from "./descriptors.ts";
import { routeSpecsFor } from "./routes.ts";

const gen = join(import.meta.dirname, "..", "..", "gen");
const mirrorSet = { source: "mirror.binpb", bytes: readFileSync(join(gen, "mirror.binpb")) };
const demoSet = { source: "demo.binpb", bytes: readFileSync(join(gen, "demo.binpb")) };

/** A one-file descriptor set whose service `t.v1.T` has methods with the given rules. */
function setWithRules(rules: Record<string, object>, fileName = "t.proto"): Uint8Array {
  const file: FileDescriptorProto = create(FileDescriptorProtoSchema, {
    name: fileName,
    package: "t.v1",
    syntax: "proto3",
    messageType: [{ name: "M", field: [{ name: "id", number: 1, type: 9, label: 1, jsonName: "id" }] }],
    service: [
      {
        name: "T",
        method: Object.entries(rules).map(([name, rule]) => {
          const options = create(MethodOptionsSchema);
          setExtension(options, http, create(HttpRuleSchema, rule));
          return { name, inputType: ".t.v1.M", outputType: ".t.v1.M", options };
        }),
      },
    ],
  });
  return toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: [file] }));
}

describe("descriptor sets", () => {
  test("sets sharing imports (google/protobuf/*) merge into one registry", () => {
    const registry = registryFromDescriptorSets([mirrorSet, demoSet]);
    assert.ok(registry.getService("mirror.v1.Mirror"));
    assert.ok(registry.getService("demo.library.v1.Library"));
    assert.ok(registry.getMessage("google.protobuf.Timestamp"));
  });

  test("a file that differs between two sets is an error naming both", () => {
    const a = setWithRules({ Get: { pattern: { case: "get", value: "/a" } } }, "same.proto");
    const b = setWithRules({ Get: { pattern: { case: "get", value: "/b" } } }, "same.proto");
    assert.throws(
      () => registryFromDescriptorSets([{ source: "a.binpb", bytes: a }, { source: "b.binpb", bytes: b }]),
      (e: Error) => e instanceof DescriptorError && /same\.proto differs between a\.binpb and b\.binpb/.test(e.message),
    );
  });

  test("bytes that are not a FileDescriptorSet, or a set missing its imports, are reported", () => {
    assert.throws(
      () => registryFromDescriptorSets([{ source: "junk", bytes: new TextEncoder().encode("{not protobuf") }]),
      /junk is not a binary FileDescriptorSet/,
    );
    const withoutImports = create(FileDescriptorProtoSchema, {
      name: "x.proto",
      package: "x",
      dependency: ["missing/dep.proto"],
    });
    const bytes = toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: [withoutImports] }));
    assert.throws(() => registryFromDescriptorSets([{ source: "x", bytes }]), /imports included/);
  });
});

describe("google.api.http rules → route specs", () => {
  test("every binding of the mirror API, additional_bindings flattened", () => {
    const registry = registryFromDescriptorSets([mirrorSet]);
    const { routes, problems } = routeSpecsFor(registry, ["mirror.v1.Mirror"]);
    assert.deepEqual(problems, []);
    const rules = routes.map((r) => `${r.method.name} ${r.rule}${r.body ? ` body=${r.body}` : ""}`);
    assert.ok(rules.includes("EchoGet GET /v1/mirror/{s}/{i64}"));
    assert.ok(rules.includes("EchoGet GET /v1/by-name/{name=things/*/parts/*}"));
    assert.ok(rules.includes("EchoGet GET /v1/files/{name=files/**}"));
    assert.ok(rules.includes("EchoPost PUT /v1/mirror/{s} body=*"));
    assert.ok(rules.includes("EchoNested POST /v1/mirror/{s}/nested body=nested"));
    assert.equal(routes.length, 15);
    const rb = routes.find((r) => r.method.name === "EchoResponseBody")!;
    assert.equal(rb.responseBody, "nested");
    assert.equal(rb.template.variables[0].fieldPath.join("."), "s");
  });

  test("custom methods, and malformed or nested rules reported with method and rule", () => {
    const bytes = setWithRules({
      Head: { pattern: { case: "custom", value: { kind: "HEAD", path: "/v1/t/{id}" } } },
      Any: { pattern: { case: "custom", value: { kind: "*", path: "/v1/any" } } },
      NoSlash: { pattern: { case: "get", value: "v1/t" } },
      NoPattern: { body: "*" },
      Nested: {
        pattern: { case: "get", value: "/v1/n" },
        additionalBindings: [
          { pattern: { case: "get", value: "/v1/n2" }, additionalBindings: [{ pattern: { case: "get", value: "/v1/n3" } }] },
        ],
      },
    });
    const registry = registryFromDescriptorSets([{ source: "t", bytes }]);
    const { routes, problems } = routeSpecsFor(registry, ["t.v1.T"]);
    assert.deepEqual(
      routes.map((r) => `${r.httpMethod} ${r.template.source}`).sort(),
      ["* /v1/any", "GET /v1/n", "HEAD /v1/t/{id}"],
    );
    const byMethod = Object.fromEntries(problems.map((p) => [p.method, p]));
    assert.equal(byMethod["/t.v1.T/NoSlash"].rule, "GET v1/t");
    assert.match(byMethod["/t.v1.T/NoPattern"].reason, /no pattern/);
    assert.match(byMethod["/t.v1.T/Nested"].reason, /must not nest/);
    assert.equal(problems.length, 3);
  });
});
