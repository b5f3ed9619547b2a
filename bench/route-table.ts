/**
 * A descriptor set with one service of `count` methods, each with its own GET route under the
 * mirror API's prefix (`/v1/mirror/gen{i}/{s}`, beside `/v1/mirror/{s}/{i64}`), registered
 * alongside mirror.v1.Mirror to measure what the size of the route table costs per request.
 * The benchmark only calls mirror's routes, so no backend implements these methods.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { create, createFileRegistry, fromBinary, setExtension, toBinary, type DescExtension } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  MethodDescriptorProtoSchema,
  MethodOptionsSchema,
} from "@bufbuild/protobuf/wkt";
import { mirrorDescriptorsPath } from "./requests.ts";

export const routeTableService = "bench.v1.Routes";

/** Writes the set to `path` (it imports mirror.proto: load it together with gen/mirror.binpb). */
export function writeRouteTable(count: number, path: string): void {
  const mirror = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(mirrorDescriptorsPath)));
  const http = mirror.getExtension("google.api.http") as DescExtension | undefined;
  const httpRule = mirror.getMessage("google.api.HttpRule");
  if (http === undefined || httpRule === undefined) throw new Error("google.api.http is not in the mirror descriptors");

  const methods = Array.from({ length: count }, (_, i) => {
    const options = create(MethodOptionsSchema);
    setExtension(options, http, create(httpRule, { pattern: { case: "get", value: `/v1/mirror/gen${i}/{s}` } }) as never);
    return create(MethodDescriptorProtoSchema, {
      name: `Route${i}`,
      inputType: ".mirror.v1.Everything",
      outputType: ".mirror.v1.Everything",
      options,
    });
  });
  const file = create(FileDescriptorProtoSchema, {
    name: `bench/routes_${count}.proto`,
    package: "bench.v1",
    syntax: "proto3",
    dependency: ["mirror/v1/mirror.proto", "google/api/annotations.proto"],
    service: [{ name: "Routes", method: methods }],
  });
  writeFileSync(path, toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: [file] })));
}
