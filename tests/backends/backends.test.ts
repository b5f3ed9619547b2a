/**
 * Both mirror backends, connect-node and grpc-js, behave the same for a real gRPC client
 * (connect-node's gRPC transport over HTTP/2): one table of tests run against each.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rejection, until } from "../support/wait.ts";
import { Code, ConnectError, createClient, type CallOptions } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { mirrorService, type RunningMirror, type StartMirrorOptions } from "./mirror-behaviour.ts";
import { startMirrorConnect } from "./mirror-connect.ts";
import { startMirrorGrpcJs } from "./mirror-grpcjs.ts";

const backends: Record<string, (options?: StartMirrorOptions) => Promise<RunningMirror>> = {
  "connect-node": startMirrorConnect,
  "grpc-js": startMirrorGrpcJs,
};

interface Everything {
  s: string;
  i32: number;
  i64: bigint;
  tags: string[];
  nested?: { label: string };
}
interface Identity {
  backend: string;
  metadata: Record<string, string>;
}
type Unary<In, Out> = (request: In, options?: CallOptions) => Promise<Out>;
const echoMethods = ["echoGet", "echoPost", "echoNested", "echoPatch", "echoVerb", "echoResponseBody"] as const;
/** The client's methods typed with what the tests send and read. */
type MirrorClient = Record<(typeof echoMethods)[number], Unary<Partial<Everything>, Everything>> & {
  echoDelete: Unary<Partial<Everything>, { $typeName: string }>;
  stream(request: { count: number; failAfter?: number; failCode?: number; intervalMs?: number }): AsyncIterable<Everything>;
  collect(requests: AsyncIterable<Partial<Everything>>, options?: CallOptions): Promise<Everything>;
  fail: Unary<{ code: number; message: string }, Everything>;
  slow: Unary<{ millis: number }, Everything>;
  whoAmI: Unary<object, Identity>;
};

const limit = { timeout: 15_000 };

/** The codes a client reports for a call whose connection went away. */
const lostConnection = [Code.Unavailable, Code.Canceled, Code.Internal, Code.Unknown];

/** A client of `backend`; `close` drops its connection. */
function connect(backend: RunningMirror) {
  const sessions = new Http2SessionManager(`http://${backend.address}`);
  const transport = createGrpcTransport({ baseUrl: `http://${backend.address}`, sessionManager: sessions });
  // Built from the runtime descriptor, so the methods are untyped.
  const client = createClient(mirrorService, transport) as unknown as MirrorClient;
  return { client, close: () => sessions.abort() };
}

/** Call options that record the response header and trailer. */
function recording(options: CallOptions = {}) {
  const seen = { header: new Headers(), trailer: new Headers() };
  return {
    seen,
    options: { ...options, onHeader: (h: Headers) => (seen.header = h), onTrailer: (t: Headers) => (seen.trailer = t) },
  };
}



async function* messages<T>(...items: T[]): AsyncGenerator<T> {
  yield* items;
}

for (const [kind, start] of Object.entries(backends)) {
  describe(`the ${kind} mirror backend`, () => {
    let backend: RunningMirror;
    let conn: ReturnType<typeof connect>;
    before(async () => {
      backend = await start({ id: `${kind}-test` });
      conn = connect(backend);
    });
    after(async () => {
      conn?.close();
      await backend?.stop();
    });

    test("listens on 127.0.0.1 and reports the given id", () => {
      assert.equal(backend.address, `127.0.0.1:${backend.port}`);
      assert.equal(backend.id, `${kind}-test`);
    });

    test("the Echo methods return the request, EchoDelete an Empty; x-backend and the x-echo echo on every call", limit, async () => {
      const request = { s: "abc", i64: 42n, tags: ["a", "b"], nested: { label: "n" } };
      for (const method of echoMethods) {
        const { seen, options } = recording({ headers: { "x-echo": `e-${method}` } });
        const answer = await conn.client[method](request, options);
        assert.deepEqual([answer.s, answer.i64, answer.tags, answer.nested?.label], ["abc", 42n, ["a", "b"], "n"], method);
        assert.equal(seen.header.get("x-backend"), backend.id, method);
        assert.equal(seen.header.get("x-echo"), `e-${method}`, method);
        assert.equal(seen.trailer.get("x-echo-trailer"), `e-${method}`, method);
      }
      const deleted = await conn.client.echoDelete(request);
      assert.equal(deleted.$typeName, "google.protobuf.Empty");
    });

    test("Stream sends item-i, interval_ms apart", limit, async () => {
      const started = performance.now();
      const got: Array<[number, string, number]> = [];
      for await (const m of conn.client.stream({ count: 3, intervalMs: 200 })) {
        got.push([m.i32, m.s, performance.now() - started]);
      }
      assert.deepEqual(
        got.map(([i, s]) => [i, s]),
        [[0, "item-0"], [1, "item-1"], [2, "item-2"]],
      );
      assert.ok(got[0][2] < 180, `the first message came at once (${got[0][2].toFixed(0)} ms)`);
      assert.ok(got[2][2] >= 380, `the last came after two intervals (${got[2][2].toFixed(0)} ms)`);
    });

    const failures: Array<{ count: number; failAfter: number; failCode: Code; sent: number }> = [
      { count: 5, failAfter: 2, failCode: Code.FailedPrecondition, sent: 2 },
      { count: 0, failAfter: 1, failCode: Code.PermissionDenied, sent: 0 },
      { count: 2, failAfter: 4, failCode: Code.Internal, sent: 2 },
    ];
    for (const { count, failAfter, failCode, sent } of failures) {
      test(`Stream(count ${count}, fail_after ${failAfter}) fails with code ${failCode} after ${sent} messages`, limit, async () => {
        const got: number[] = [];
        const error = await rejection(
          (async () => {
            for await (const m of conn.client.stream({ count, failAfter, failCode })) {
              got.push(m.i32);
            }
          })(),
        );
        assert.deepEqual(got, Array.from({ length: sent }, (_, i) => i));
        assert.equal(error.code, failCode);
        assert.equal(error.rawMessage, "stream failed");
      });
    }

    test("Collect counts the messages and lists their s", limit, async () => {
      const { seen, options } = recording({ headers: { "x-echo": "c" } });
      const answer = await conn.client.collect(messages({ s: "a" }, { s: "b" }, { s: "c" }), options);
      assert.equal(answer.i32, 3);
      assert.deepEqual(answer.tags, ["a", "b", "c"]);
      assert.equal(seen.header.get("x-backend"), backend.id);
      assert.equal(seen.trailer.get("x-echo-trailer"), "c");
      const none = await conn.client.collect(messages());
      assert.deepEqual([none.i32, none.tags], [0, []]);
    });

    test("Fail: code and message, x-fail metadata, a BadRequest detail for code 3 only; code 0 succeeds", limit, async () => {
      const invalid = await rejection(conn.client.fail({ code: Code.InvalidArgument, message: "bad title: ✗" }));
      assert.equal(invalid.code, Code.InvalidArgument);
      assert.equal(invalid.rawMessage, "bad title: ✗");
      assert.equal(invalid.metadata.get("x-fail"), "yes");
      const details = invalid.findDetails(BadRequestSchema);
      assert.equal(details.length, 1);
      assert.deepEqual(
        details[0].fieldViolations.map((v) => [v.field, v.description]),
        [["code", "asked for 3"]],
      );

      const notFound = await rejection(conn.client.fail({ code: Code.NotFound, message: "nope" }));
      assert.deepEqual([notFound.code, notFound.rawMessage, notFound.details.length], [Code.NotFound, "nope", 0]);
      assert.equal(notFound.metadata.get("x-fail"), "yes");

      const ok = await conn.client.fail({ code: 0, message: "fine" });
      assert.deepEqual([ok.s, ok.i32], ["", 0]);
    });

    test("Slow answers after millis; a cancel or a deadline ends it early and is counted", limit, async () => {
      const before = backend.cancelledCalls();
      const started = performance.now();
      const answer = await conn.client.slow({ millis: 100 });
      assert.deepEqual([answer.i32, answer.s], [100, "slept 100"]);
      assert.ok(performance.now() - started >= 95);
      assert.equal(backend.cancelledCalls(), before, "a call that finished is not a cancellation");

      const controller = new AbortController();
      const cancelled = rejection(conn.client.slow({ millis: 5000 }, { signal: controller.signal }));
      await new Promise((r) => setTimeout(r, 150));
      controller.abort();
      assert.equal((await cancelled).code, Code.Canceled);
      await until(() => backend.cancelledCalls() === before + 1, "the backend to see the cancel");

      const deadline = await rejection(conn.client.slow({ millis: 5000 }, { timeoutMs: 200 }));
      assert.equal(deadline.code, Code.DeadlineExceeded);
      await until(() => backend.cancelledCalls() === before + 2, "the backend to see the deadline");
    });

    test("WhoAmI reports its id and the request metadata, not the protocol's headers; x-backend header and trailer", limit, async () => {
      const { seen, options } = recording({
        timeoutMs: 5000, // so that grpc-timeout is sent, and must not be reported
        headers: { authorization: "Bearer t0k", Tenant: "acme", "x-forwarded-for": "203.0.113.9, 127.0.0.1" },
      });
      const identity = await conn.client.whoAmI({}, options);
      assert.equal(identity.backend, backend.id);
      assert.equal(identity.metadata.authorization, "Bearer t0k");
      assert.equal(identity.metadata.tenant, "acme");
      assert.equal(identity.metadata["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
      for (const protocolHeader of ["te", "content-type", "grpc-timeout", "user-agent", "grpc-accept-encoding"]) {
        assert.equal(identity.metadata[protocolHeader], undefined, protocolHeader);
      }
      assert.ok(Object.keys(identity.metadata).every((key) => key === key.toLowerCase() && !key.startsWith(":")));
      assert.equal(seen.header.get("x-backend"), backend.id);
      assert.equal(seen.trailer.get("x-backend-trailer"), backend.id);
    });

    test("the id defaults to the address", limit, async () => {
      const unnamed = await start();
      const c = connect(unnamed);
      try {
        assert.equal(unnamed.id, unnamed.address);
        assert.equal((await c.client.whoAmI({})).backend, unnamed.address);
      } finally {
        c.close();
        await unnamed.stop();
      }
    });

    test("stop() lets an in-flight call finish; stop({graceful: false}) resets it at once", limit, async () => {
      const graceful = await start();
      const g = connect(graceful);
      try {
        const finishing = g.client.slow({ millis: 300 });
        await new Promise((r) => setTimeout(r, 100));
        await graceful.stop();
        assert.equal((await finishing).i32, 300);
      } finally {
        g.close();
      }

      const abrupt = await start();
      const a = connect(abrupt);
      try {
        const cut = rejection(a.client.slow({ millis: 5000 }));
        await new Promise((r) => setTimeout(r, 100));
        const stopped = performance.now();
        await abrupt.stop({ graceful: false });
        const error = await cut;
        assert.ok(performance.now() - stopped < 1000, "the call ended with the connection, not with Slow");
        // Each client names a lost stream its own way (connect-node: Canceled for RST_STREAM CANCEL).
        assert.ok(lostConnection.includes(error.code), `${Code[error.code]}: ${error.rawMessage}`);
        await until(() => abrupt.cancelledCalls() === 1, "the handler to see the cut as a cancellation");
        const refused = await rejection(a.client.whoAmI({}, { timeoutMs: 2000 }));
        assert.equal(refused.code, Code.Unavailable, "nothing listens any more");
      } finally {
        a.close();
      }
    });
  });
}
