/**
 * The benchmark's requests, defined once: the HTTP request every front door receives and the
 * gRPC request frame it stands for (what the minimal proxy forwards and h2load sends directly to
 * the backend). The frames are encoded from the same JSON with the mirror descriptors.
 */
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, fromJson, toBinary, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

export const mirrorDescriptorsPath = new URL("../gen/mirror.binpb", import.meta.url).pathname;

const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(mirrorDescriptorsPath)));

export interface BenchRequest {
  readonly name: "get" | "post" | "stream";
  readonly method: "GET" | "POST";
  /** Path and query, as the HTTP client sends it. */
  readonly path: string;
  readonly body: string | undefined;
  /** The gRPC method path, e.g. /mirror.v1.Mirror/EchoGet. */
  readonly grpcPath: string;
  /** One length-prefixed gRPC message: the request the HTTP request is transcoded to. */
  readonly frame: Buffer;
  /** The JSON the minimal proxy answers unary calls with (what a transcoder would write). */
  readonly responseJson: string;
}

function message(typeName: string): DescMessage {
  const desc = registry.getMessage(typeName);
  if (desc === undefined) throw new Error(`${typeName} is not in ${mirrorDescriptorsPath}`);
  return desc;
}

/** The 5-byte gRPC length prefix (uncompressed) + the message. */
function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

function build(
  name: BenchRequest["name"],
  method: BenchRequest["method"],
  path: string,
  body: string | undefined,
  rpc: string,
  inputType: string,
  input: JsonValue,
): BenchRequest {
  const desc = message(inputType);
  const encoded = toBinary(desc, fromJson(desc, input));
  return {
    name,
    method,
    path,
    body,
    grpcPath: `/mirror.v1.Mirror/${rpc}`,
    frame: frame(encoded),
    responseJson: JSON.stringify(input),
  };
}

/** A JSON object of exactly `bytes` bytes: a few typed fields and a padded string. */
function jsonBodyOf(bytes: number): Record<string, JsonValue> {
  const base: Record<string, JsonValue> = {
    s: "",
    i32: 7,
    i64: "42",
    b: true,
    d: 2.5,
    tags: ["alpha", "beta", "gamma", "delta"],
    labels: { region: "eu-west-1", tier: "gold" },
    nested: { label: "outer", level: 1, child: { label: "inner", level: 2 } },
  };
  const pad = bytes - JSON.stringify(base).length;
  if (pad < 0) throw new Error(`a ${bytes}-byte body cannot hold the base fields`);
  return { ...base, s: "x".repeat(pad) };
}

const postBody = JSON.stringify(jsonBodyOf(1024));

export const requests: Record<BenchRequest["name"], BenchRequest> = {
  get: build("get", "GET", "/v1/mirror/abc/42?tags=a&tags=b&i32=7", undefined, "EchoGet", "mirror.v1.Everything", {
    s: "abc",
    i64: "42",
    tags: ["a", "b"],
    i32: 7,
  }),
  post: build("post", "POST", "/v1/mirror", postBody, "EchoPost", "mirror.v1.Everything", JSON.parse(postBody)),
  stream: build("stream", "GET", "/v1/stream/100", undefined, "Stream", "mirror.v1.StreamRequest", { count: 100 }),
};
