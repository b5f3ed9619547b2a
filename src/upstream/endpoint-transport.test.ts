import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { constants, createServer, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { rejection } from "../../tests/support/wait.ts";
import { callInfoKey, WireMessage } from "./call-info.ts";
import { EndpointTransport, isNeverSent } from "./endpoint-transport.ts";
import { EndpointSessions } from "./session.ts";
import { freePort, input, mirrorMethods, startMirrorBackend, type MirrorBackend } from "../../tests/backends/mirror-connect.ts";

const { echoPost, fail, slow, whoAmI, stream, collect } = mirrorMethods;
const limit = { timeout: 10_000 };

let backend: MirrorBackend;
let sessions: EndpointSessions;
let transport: EndpointTransport;

before(async () => {
  backend = await startMirrorBackend();
  sessions = new EndpointSessions(backend);
  transport = new EndpointTransport({ sessions });
});

after(async () => {
  await sessions.close(false);
  await backend.stop();
});

async function* messages<T>(...items: T[]): AsyncGenerator<T> {
  yield* items;
}


/** Resolves when the server handler saw its call abort; fails the test if that takes too long. */
async function serverSawAbort(method: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      backend.nextAbort(method),
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`server did not see ${method} abort`)), 2000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

test("unary: the message, and metadata both ways (request header in, response header and trailer out)", limit, async () => {
  const response = await transport.unary(
    echoPost,
    undefined,
    5000,
    { "x-echo": "hello", connection: "keep-alive", "content-type": "text/plain" },
    input(echoPost, { s: "abc", i64: 42n, tags: ["a", "b"] }) as never,
  );
  const message = response.message as unknown as { s: string; i64: bigint; tags: string[] };
  assert.equal(message.s, "abc");
  assert.equal(message.i64, 42n);
  assert.deepEqual(message.tags, ["a", "b"]);
  assert.equal(response.header.get("x-echo"), "hello");
  assert.equal(response.header.get("x-backend"), backend.target);
  assert.equal(response.trailer.get("x-echo-trailer"), "hello");
  assert.equal(response.trailer.get("grpc-status"), "0");
  assert.equal(response.stream, false);
  assert.equal(response.method, echoPost);
});

test("unary: an init object is accepted as input, and the backend sees our metadata and deadline", limit, async () => {
  const response = await transport.unary(
    whoAmI,
    undefined,
    3000,
    new Headers({ "x-user": "u1", te: "gzip", host: "evil" }),
    {} as never,
  );
  const identity = response.message as unknown as { backend: string; metadata: Record<string, string> };
  assert.equal(identity.backend, backend.target);
  assert.equal(identity.metadata["x-user"], "u1");
  assert.equal(identity.metadata["content-type"], "application/grpc+proto");
  assert.equal(identity.metadata["te"], "trailers", "te cannot be overridden");
  assert.match(identity.metadata["grpc-timeout"], /^\d+m$/);
  assert.ok(Number(identity.metadata["grpc-timeout"].slice(0, -1)) <= 3000);
});

test("wireMessages: response messages come back as their bytes, unary and streaming", limit, async () => {
  const wire = createContextValues().set(callInfoKey, { idempotent: false, route: "", wireMessages: true });
  const sent = input(echoPost, { s: "abc", i64: 42n });
  const unary = await transport.unary(echoPost, undefined, 5000, {}, sent as never, wire);
  assert.ok(unary.message instanceof WireMessage);
  const decoded = fromBinary(echoPost.output, (unary.message as unknown as WireMessage).bytes) as unknown as { s: string; i64: bigint };
  assert.equal(decoded.s, "abc");
  assert.equal(decoded.i64, 42n);

  const streamed = await transport.stream(stream, undefined, 5000, {}, messages(input(stream, { count: 3 })) as never, wire);
  const items: number[] = [];
  for await (const m of streamed.message) {
    assert.ok(m instanceof WireMessage);
    items.push((fromBinary(stream.output, (m as unknown as WireMessage).bytes) as unknown as { i32: number }).i32);
  }
  assert.deepEqual(items, [0, 1, 2]);
  // Without the flag, messages are decoded as Connect's Transport promises.
  const plain = await transport.unary(echoPost, undefined, 5000, {}, sent as never, createContextValues());
  assert.ok(!(plain.message instanceof WireMessage));
});

test("server streaming: the first message arrives while the server still holds the stream open", limit, async () => {
  const started = performance.now();
  const response = await transport.stream(
    stream,
    undefined,
    5000,
    { "x-echo": "s" },
    messages(input(stream, { count: 3, intervalMs: 400 })) as never,
  );
  assert.equal(response.header.get("x-echo"), "s", "headers are there when the response starts");
  const iterator = response.message[Symbol.asyncIterator]();
  const first = await iterator.next();
  const firstAt = performance.now() - started;
  assert.equal((first.value as unknown as { i32: number }).i32, 0);
  assert.ok(firstAt < 300, `first message after ${firstAt.toFixed(0)}ms, before the server's next one`);
  assert.equal(response.trailer.get("x-echo-trailer"), null, "no trailer before the end");
  const rest: number[] = [];
  for (let r = await iterator.next(); r.done !== true; r = await iterator.next()) {
    rest.push((r.value as unknown as { i32: number }).i32);
  }
  assert.deepEqual(rest, [1, 2]);
  assert.ok(performance.now() - started >= 750, "the stream lasted as long as the server held it");
  assert.equal(response.trailer.get("x-echo-trailer"), "s");
});

test("server streaming: a failure after some messages ends the iteration with the server's status", limit, async () => {
  const response = await transport.stream(
    stream,
    undefined,
    5000,
    undefined,
    messages(input(stream, { count: 5, failAfter: 2, failCode: Code.DataLoss })) as never,
  );
  const got: number[] = [];
  const error = await rejection(
    (async () => {
      for await (const m of response.message) got.push((m as unknown as { i32: number }).i32);
    })(),
  );
  assert.deepEqual(got, [0, 1]);
  assert.equal(error.code, Code.DataLoss);
  assert.equal(error.rawMessage, "stream failed");
});

test("server streaming: a slow reader pauses the stream and still gets every message in order", limit, async () => {
  const response = await transport.stream(
    stream,
    undefined,
    8000,
    undefined,
    messages(input(stream, { count: 500 })) as never,
  );
  const seen: number[] = [];
  for await (const m of response.message) {
    seen.push((m as unknown as { i32: number }).i32);
    if (seen.length % 100 === 0) await new Promise((r) => setTimeout(r, 30));
  }
  assert.deepEqual(seen, Array.from({ length: 500 }, (_, i) => i));
});

test("client streaming: every input message reaches the server, the one response comes back", limit, async () => {
  const items = Array.from({ length: 50 }, (_, i) => input(collect, { s: `m${i}` }));
  const response = await transport.stream(collect, undefined, 5000, { "x-echo": "c" }, messages(...items) as never);
  const all = [];
  for await (const m of response.message) all.push(m as unknown as { tags: string[]; i32: number });
  assert.equal(all.length, 1);
  assert.equal(all[0].i32, 50);
  assert.equal(all[0].tags[49], "m49");
  assert.equal(response.trailer.get("x-echo-trailer"), "c");
});

test("client streaming: big inputs respect flow control and still arrive whole", limit, async () => {
  const big = "x".repeat(64 * 1024);
  const items = Array.from({ length: 40 }, () => input(collect, { s: big }));
  const response = await transport.stream(collect, undefined, 8000, undefined, messages(...items) as never);
  for await (const m of response.message) {
    const out = m as unknown as { i32: number; tags: string[] };
    assert.equal(out.i32, 40);
    assert.ok(out.tags.every((t) => t.length === big.length));
  }
});

test("errors: code, message, google.rpc details and metadata come from the trailers", limit, async () => {
  const error = await rejection(
    transport.unary(fail, undefined, 5000, undefined, input(fail, { code: Code.InvalidArgument, message: "bad title: ✗" }) as never),
  );
  assert.equal(error.code, Code.InvalidArgument);
  assert.equal(error.rawMessage, "bad title: ✗");
  assert.equal(error.findDetails(BadRequestSchema)[0].fieldViolations[0].field, "code");
  assert.equal(error.metadata.get("x-fail"), "yes");
  assert.equal(isNeverSent(error), false);
});

test("deadline: DeadlineExceeded on time, and the server sees the call canceled", limit, async () => {
  const aborted = serverSawAbort("Slow");
  const started = performance.now();
  const error = await rejection(transport.unary(slow, undefined, 150, undefined, input(slow, { millis: 3000 }) as never));
  const took = performance.now() - started;
  assert.equal(error.code, Code.DeadlineExceeded);
  assert.ok(took >= 140 && took < 1000, `failed after ${took.toFixed(0)}ms`);
  await aborted;
});

test("deadline: also ends a server stream that outlives it", limit, async () => {
  const aborted = serverSawAbort("Stream");
  const response = await transport.stream(
    stream,
    undefined,
    300,
    undefined,
    messages(input(stream, { count: 10, intervalMs: 100 })) as never,
  );
  let got = 0;
  const error = await rejection(
    (async () => {
      for await (const _ of response.message) got++;
    })(),
  );
  assert.equal(error.code, Code.DeadlineExceeded);
  assert.ok(got >= 2 && got < 10, `${got} messages before the deadline`);
  await aborted;
});

test("abort: an aborted signal is Canceled and the server sees the cancellation", limit, async () => {
  const aborted = serverSawAbort("Slow");
  const controller = new AbortController();
  const call = transport.unary(slow, controller.signal, 5000, undefined, input(slow, { millis: 3000 }) as never);
  setTimeout(() => controller.abort(), 100);
  const error = await rejection(call);
  assert.equal(error.code, Code.Canceled);
  await aborted;
});

test("abort: a signal aborted before the call sends nothing", limit, async () => {
  const before = backend.started.get("EchoPost") ?? 0;
  const error = await rejection(
    transport.unary(echoPost, AbortSignal.abort(), 5000, undefined, input(echoPost) as never),
  );
  assert.equal(error.code, Code.Canceled);
  await transport.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
  assert.equal(backend.started.get("EchoPost"), before + 1, "only the second call reached the server");
});

test("a reader that stops iterating early cancels the server stream", limit, async () => {
  const aborted = serverSawAbort("Stream");
  const response = await transport.stream(
    stream,
    undefined,
    5000,
    undefined,
    messages(input(stream, { count: 100, intervalMs: 20 })) as never,
  );
  for await (const _ of response.message) break;
  await aborted;
});

test("a stream paused for backpressure frees its session slot when its reader abandons it", limit, async () => {
  // A server that writes a whole stream (40 messages, then the trailers) at once: the reader
  // takes one message and the rest backs up, so the stream is paused when the call ends.
  const server = createServer();
  server.on("stream", (s: ServerHttp2Stream) => {
    s.on("error", () => {});
    s.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    s.on("wantTrailers", () => s.sendTrailers({ "grpc-status": "0" }));
    // Everything{s: 1,000 × "x"}.
    const payload = Buffer.concat([Buffer.from([0x0a, 0xe8, 0x07]), Buffer.alloc(1000, "x")]);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, (payload.length >> 8) & 0xff, payload.length & 0xff]), payload]);
    // 40 of them fit the stream's window, so the server finishes while the reader is paused;
    // one per event-loop turn, so they arrive as separate chunks.
    let sent = 0;
    const next = () => {
      if (sent++ < 40) s.write(frame, () => setImmediate(next));
      else s.end();
    };
    next();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const s = new EndpointSessions({ address: "127.0.0.1", port: (server.address() as AddressInfo).port });
  const openStreams = () => s.snapshot().sessions.reduce((n, x) => n + x.activeStreams, 0);
  const waitForNoOpenStreams = async (what: string) => {
    const deadline = performance.now() + 3000;
    while (openStreams() > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(openStreams(), 0, what);
  };
  try {
    const t = new EndpointTransport({ sessions: s });
    const abandoned = await t.stream(stream, undefined, 5000, undefined, messages(input(stream)) as never);
    const reader = abandoned.message[Symbol.asyncIterator]();
    await reader.next();
    await new Promise((r) => setTimeout(r, 100));
    await reader.return?.();
    await waitForNoOpenStreams("an abandoned stream whose server had finished");
  } finally {
    await s.close(false);
    await new Promise((r) => server.close(r));
  }
});

test("response messages over the limit fail with ResourceExhausted", limit, async () => {
  const small = new EndpointTransport({ sessions, maxMessageBytes: 1024 });
  const error = await rejection(
    small.unary(echoPost, undefined, 5000, undefined, input(echoPost, { s: "x".repeat(2000) }) as never),
  );
  assert.equal(error.code, Code.ResourceExhausted);
  await small.unary(echoPost, undefined, 5000, undefined, input(echoPost, { s: "x".repeat(500) }) as never);
});

test("backend down: Unavailable at once, marked never sent", limit, async () => {
  const port = await freePort();
  const down = new EndpointSessions({ address: "127.0.0.1", port });
  try {
    const t = new EndpointTransport({ sessions: down });
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      const error = await rejection(t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never));
      assert.equal(error.code, Code.Unavailable);
      assert.equal(isNeverSent(error), true);
      assert.ok(performance.now() - started < 500, "no waiting for the deadline");
    }
  } finally {
    await down.close(false);
  }
});

test("backend reset mid-call: Unavailable, not never-sent (the request was delivered)", limit, async () => {
  const other = await startMirrorBackend();
  const s = new EndpointSessions(other);
  try {
    const t = new EndpointTransport({ sessions: s });
    const call = t.unary(slow, undefined, 5000, undefined, input(slow, { millis: 3000 }) as never);
    while ((other.started.get("Slow") ?? 0) === 0) await new Promise((r) => setTimeout(r, 5));
    other.cutConnections();
    const error = await rejection(call);
    assert.equal(error.code, Code.Unavailable);
    assert.equal(isNeverSent(error), false);
    // The endpoint reconnects for the next call.
    await t.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
  } finally {
    await s.close(false);
    await other.stop();
  }
});

test("no timers or abort listeners are left behind, whatever way calls end", limit, async () => {
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  await transport.unary(echoPost, undefined, 5000, undefined, input(echoPost) as never);
  const baseline = timers();
  const kept = new AbortController();
  const aborted = new AbortController();
  const calls: Promise<unknown>[] = [];
  // Every call has a 5 s deadline and ends long before it: OK, error status, client abort.
  for (let i = 0; i < 20; i++) {
    calls.push(transport.unary(echoPost, kept.signal, 5000, undefined, input(echoPost) as never));
    calls.push(transport.unary(fail, kept.signal, 5000, undefined, input(fail, { code: 5 }) as never).catch(() => {}));
    calls.push(transport.unary(slow, aborted.signal, 5000, undefined, input(slow, { millis: 1000 }) as never).catch(() => {}));
  }
  setTimeout(() => aborted.abort(), 50);
  await Promise.all(calls);
  assert.equal(getEventListeners(kept.signal, "abort").length, 0);
  assert.equal(getEventListeners(aborted.signal, "abort").length, 0);
  // The in-process server's own timers (its deadline and sleep timers) go shortly after; a
  // leaked deadline timer of ours would stay for 5 s.
  const settle = performance.now() + 1000;
  while (timers() > baseline && performance.now() < settle) await new Promise((r) => setTimeout(r, 10));
  assert.equal(timers(), baseline);
});

test("request headers: the gRPC ones, then metadata lower-cased, reserved names dropped, repeats sent once per value", limit, async () => {
  const blocks: string[][] = [];
  const server = createServer();
  server.on("stream", (s: ServerHttp2Stream, _headers, _flags, rawHeaders: string[]) => {
    blocks.push(rawHeaders);
    s.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "5", "grpc-message": "nope" }, { endStream: true });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const s = new EndpointSessions({ address: "127.0.0.1", port: (server.address() as AddressInfo).port });
  try {
    const t = new EndpointTransport({ sessions: s });
    const call = async (header: HeadersInit | undefined) => {
      assert.equal((await rejection(t.unary(whoAmI, undefined, 2000, header, input(whoAmI) as never))).code, Code.NotFound);
      const raw = blocks.at(-1)!;
      const pairs: Array<[string, string]> = [];
      for (let i = 0; i < raw.length; i += 2) pairs.push([raw[i], raw[i + 1]]);
      return pairs.filter(([name]) => name !== ":authority" && name !== ":scheme");
    };
    const grpc = (pairs: Array<[string, string]>) => pairs.slice(0, 5);
    const metadata = (pairs: Array<[string, string]>) => pairs.slice(5);
    const expectedGrpc = (p: Array<[string, string]>) => [
      [":method", "POST"],
      [":path", "/mirror.v1.Mirror/WhoAmI"],
      ["content-type", "application/grpc+proto"],
      ["te", "trailers"],
      ["grpc-timeout", p[4][1]],
    ];
    const record = await call({ "x-user": "u1", "X-Mixed": "m", te: "gzip", host: "evil", "grpc-timeout": "1S", ":path": "/evil" });
    assert.deepEqual(grpc(record), expectedGrpc(record));
    assert.match(record[4][1], /^\d+m$/);
    assert.deepEqual(metadata(record), [["x-user", "u1"], ["x-mixed", "m"]]);
    const list = await call([["x-m", "1"], ["X-M", "2"], ["content-type", "text/plain"], ["x-n", "3"]]);
    assert.deepEqual(grpc(list), expectedGrpc(list));
    assert.deepEqual(metadata(list), [["x-m", "1"], ["x-m", "2"], ["x-n", "3"]]);
    const headers = new Headers([["x-a", "1"], ["set-cookie", "a=1"], ["set-cookie", "b=2"], ["connection", "close"]]);
    assert.deepEqual(metadata(await call(headers)), [["set-cookie", "a=1"], ["set-cookie", "b=2"], ["x-a", "1"]]);
    assert.deepEqual(metadata(await call(undefined)), []);
  } finally {
    await s.close(false);
    await new Promise((r) => server.close(r));
  }
});

test("HTTP errors from a non-gRPC answer map by the gRPC HTTP table; REFUSED_STREAM is never-sent", limit, async () => {
  const server = createServer();
  server.on("stream", (s: ServerHttp2Stream, headers) => {
    s.on("error", () => {});
    const path = String(headers[":path"]);
    if (path.endsWith("/EchoPost")) s.respond({ ":status": 404 });
    else if (path.endsWith("/WhoAmI")) s.respond({ ":status": 503, "content-type": "text/html" });
    else if (path.endsWith("/Fail")) s.respond({ ":status": 200, "content-type": "text/html" });
    else {
      s.close(constants.NGHTTP2_REFUSED_STREAM);
      return;
    }
    s.end("<html>nope</html>");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const s = new EndpointSessions({ address: "127.0.0.1", port: (server.address() as AddressInfo).port });
  try {
    const t = new EndpointTransport({ sessions: s });
    const call = (m: typeof echoPost) => rejection(t.unary(m, undefined, 5000, undefined, input(m) as never));
    assert.equal((await call(echoPost)).code, Code.Unimplemented);
    assert.equal((await call(whoAmI)).code, Code.Unavailable);
    assert.equal((await call(fail)).code, Code.Unknown);
    const refused = await call(slow);
    assert.equal(refused.code, Code.Unavailable);
    assert.equal(isNeverSent(refused), true);
  } finally {
    await s.close(false);
    await new Promise((r) => server.close(r));
  }
});
