import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { base64Encode } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { StatusSchema } from "../../gen/google/rpc/status_pb.ts";
import {
  codeFromHttpStatus,
  decodeGrpcMessage,
  encodeFrame,
  errorFromRstCode,
  formatGrpcTimeout,
  FrameDecoder,
  grpcStatusOf,
  isNeverSent,
  neverSentError,
} from "./grpc-wire.ts";

function decodeAll(decoder: FrameDecoder, chunks: Uint8Array[]): number[][] {
  const out: number[][] = [];
  for (const chunk of chunks) decoder.push(chunk, (payload) => out.push([...payload]));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  return all;
}

test("encodeFrame writes a zero flags byte and a big-endian length before the payload", () => {
  assert.deepEqual([...encodeFrame(new Uint8Array([7, 8, 9]))], [0, 0, 0, 0, 3, 7, 8, 9]);
  assert.deepEqual([...encodeFrame(new Uint8Array(0))], [0, 0, 0, 0, 0]);
  const big = encodeFrame(new Uint8Array(0x010203));
  assert.deepEqual([...big.subarray(0, 5)], [0, 0, 1, 2, 3]);
});

test("FrameDecoder yields every message whatever the chunk boundaries", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      (messages, cuts) => {
        const stream = concat(messages.map(encodeFrame));
        const points = [...new Set(cuts.map((c) => c % (stream.byteLength + 1)))].sort((a, b) => a - b);
        const chunks: Uint8Array[] = [];
        let from = 0;
        for (const p of [...points, stream.byteLength]) {
          chunks.push(stream.subarray(from, p));
          from = p;
        }
        const decoder = new FrameDecoder();
        assert.deepEqual(decodeAll(decoder, chunks), messages.map((m) => [...m]));
        assert.equal(decoder.partial, false);
      },
    ),
  );
});

test("FrameDecoder hands out a payload within one chunk as a view, not a copy", () => {
  const frame = encodeFrame(new Uint8Array([1, 2, 3]));
  let seen: Uint8Array | undefined;
  new FrameDecoder().push(frame, (p) => (seen = p));
  assert.equal(seen?.buffer, frame.buffer);
});

test("FrameDecoder reports a partial frame at the end of the input", () => {
  const decoder = new FrameDecoder();
  const frame = encodeFrame(new Uint8Array([1, 2, 3]));
  decoder.push(frame.subarray(0, 2), () => assert.fail("no message yet"));
  assert.equal(decoder.partial, true);
  decoder.push(frame.subarray(2, 6), () => assert.fail("no message yet"));
  assert.equal(decoder.partial, true);
  const got: number[][] = [];
  decoder.push(frame.subarray(6), (p) => got.push([...p]));
  assert.deepEqual(got, [[1, 2, 3]]);
  assert.equal(decoder.partial, false);
});

test("FrameDecoder refuses a message over the limit with ResourceExhausted, before buffering it", () => {
  const decoder = new FrameDecoder(10);
  decoder.push(encodeFrame(new Uint8Array(10)), () => {});
  const header = encodeFrame(new Uint8Array(11)).subarray(0, 5);
  assert.throws(
    () => decoder.push(header, () => {}),
    (e) => e instanceof ConnectError && e.code === Code.ResourceExhausted,
  );
});

test("FrameDecoder refuses compressed or unknown-flag frames with Internal", () => {
  for (const flags of [1, 2, 0x80]) {
    const frame = encodeFrame(new Uint8Array([1]));
    frame[0] = flags;
    assert.throws(
      () => new FrameDecoder().push(frame, () => {}),
      (e) => e instanceof ConnectError && e.code === Code.Internal,
      `flags ${flags}`,
    );
  }
});

test("grpcStatusOf reads code and percent-decoded message; undefined without grpc-status", () => {
  assert.equal(grpcStatusOf({ "content-type": "application/grpc" }), undefined);
  assert.deepEqual(grpcStatusOf({ "grpc-status": "0" }), { code: 0, message: "", details: [] });
  assert.deepEqual(grpcStatusOf({ "grpc-status": "5", "grpc-message": "no%20such%20book%3A%20%E2%9C%93" }), {
    code: Code.NotFound,
    message: "no such book: ✓",
    details: [],
  });
  assert.deepEqual(grpcStatusOf({ "grpc-status": ["14", "13"] })?.code, Code.Unavailable);
});

test("grpcStatusOf: malformed grpc-status is Internal, an unknown number is Unknown", () => {
  assert.equal(grpcStatusOf({ "grpc-status": "abc" })?.code, Code.Internal);
  assert.equal(grpcStatusOf({ "grpc-status": "-1" })?.code, Code.Internal);
  assert.equal(grpcStatusOf({ "grpc-status": "17" })?.code, Code.Unknown);
  assert.equal(grpcStatusOf({ "grpc-status": "16" })?.code, Code.Unauthenticated);
});

test("grpcStatusOf decodes grpc-status-details-bin into Connect's incoming details", () => {
  const badRequest = create(BadRequestSchema, {
    fieldViolations: [{ field: "title", description: "must not be empty" }],
  });
  const status = create(StatusSchema, {
    code: Code.InvalidArgument,
    message: "bad",
    details: [anyPack(BadRequestSchema, badRequest)],
  });
  // gRPC senders usually omit the base64 padding.
  const bin = base64Encode(toBinary(StatusSchema, status), "std_raw");
  const parsed = grpcStatusOf({ "grpc-status": "3", "grpc-message": "bad", "grpc-status-details-bin": bin });
  assert.equal(parsed?.details.length, 1);
  assert.equal(parsed?.details[0].type, "google.rpc.BadRequest");
  const error = new ConnectError(parsed!.message, parsed!.code as Code);
  error.details = parsed!.details;
  assert.equal(error.findDetails(BadRequestSchema)[0].fieldViolations[0].field, "title");
});

test("grpcStatusOf keeps the status when grpc-status-details-bin is garbage", () => {
  const parsed = grpcStatusOf({ "grpc-status": "3", "grpc-message": "bad", "grpc-status-details-bin": "%%%" });
  assert.deepEqual(parsed, { code: Code.InvalidArgument, message: "bad", details: [] });
});

test("decodeGrpcMessage shows a malformed encoding as received", () => {
  assert.equal(decodeGrpcMessage("100%"), "100%");
  assert.equal(decodeGrpcMessage("a%2Fb"), "a/b");
  assert.equal(decodeGrpcMessage("plain"), "plain");
});

test("codeFromHttpStatus follows http-grpc-status-mapping.md", () => {
  const table: Array<[number, Code]> = [
    [400, Code.Internal],
    [401, Code.Unauthenticated],
    [403, Code.PermissionDenied],
    [404, Code.Unimplemented],
    [429, Code.Unavailable],
    [502, Code.Unavailable],
    [503, Code.Unavailable],
    [504, Code.Unavailable],
    [200, Code.Unknown],
    [500, Code.Unknown],
    [418, Code.Unknown],
  ];
  for (const [status, code] of table) assert.equal(codeFromHttpStatus(status), code, `HTTP ${status}`);
});

test("errorFromRstCode: REFUSED_STREAM is Unavailable and never sent, CANCEL is Canceled", () => {
  const table: Array<[number, Code, boolean]> = [
    [0, Code.Internal, false],
    [1, Code.Internal, false],
    [2, Code.Internal, false],
    [3, Code.ResourceExhausted, false],
    [7, Code.Unavailable, true],
    [8, Code.Canceled, false],
    [11, Code.ResourceExhausted, false],
    [12, Code.PermissionDenied, false],
    [13, Code.Internal, false],
  ];
  for (const [rst, code, neverSent] of table) {
    const error = errorFromRstCode(rst);
    assert.equal(error.code, code, `RST ${rst}`);
    assert.equal(isNeverSent(error), neverSent, `RST ${rst}`);
  }
});

test("isNeverSent recognises only errors made by neverSentError", () => {
  const cause = new Error("connect ECONNREFUSED");
  const error = neverSentError("connection refused", cause);
  assert.equal(error.code, Code.Unavailable);
  assert.equal(isNeverSent(error), true);
  assert.equal((error.cause as Error).cause, cause);
  assert.equal(isNeverSent(ConnectError.from(error)), true);
  assert.equal(isNeverSent(new ConnectError("x", Code.Unavailable)), false);
  assert.equal(isNeverSent(new Error("x")), false);
  assert.equal(isNeverSent(undefined), false);
});

test("formatGrpcTimeout uses at most 8 digits and rounds up", () => {
  assert.equal(formatGrpcTimeout(0), "0m");
  assert.equal(formatGrpcTimeout(1.2), "2m");
  assert.equal(formatGrpcTimeout(15_000), "15000m");
  assert.equal(formatGrpcTimeout(99_999_999), "99999999m");
  assert.equal(formatGrpcTimeout(100_000_000), "100000S");
  assert.equal(formatGrpcTimeout(100_000_001), "100001S");
  assert.equal(formatGrpcTimeout(99_999_999_001), "1666667M");
  assert.equal(formatGrpcTimeout(3_600_000 * 12_345_678), "12345678H");
  assert.equal(formatGrpcTimeout(1e20), "99999999H");
  for (const ms of [0, 1, 999, 1e8 - 1, 1e8, 1e11, 1e13, 1e16]) {
    assert.match(formatGrpcTimeout(ms), /^\d{1,8}[HMSm]$/);
  }
});
