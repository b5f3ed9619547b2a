/**
 * The HTTP front's own rules, through the gateway process: body limits (whole body, and per
 * NDJSON line for client streams), CORS, the `json` options, request ids, response limits,
 * malformed paths, and HTTP/2 cleartext (h2c) clients on the same port as HTTP/1.1.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:http2";
import { startMirrorConnect } from "../backends/mirror-connect.ts";
import { call, mirrorConfig, startGatewayWithConfig, type RunningGateway } from "./harness.ts";

let backend: Awaited<ReturnType<typeof startMirrorConnect>>;
before(async () => {
  backend = await startMirrorConnect({ id: "front" });
});
after(async () => backend?.stop());

/** A request body that arrives in pieces with no Content-Length (chunked). */
function chunked(...parts: string[]): { body: ReadableStream<Uint8Array>; duplex: "half" } {
  const encoder = new TextEncoder();
  return {
    body: new ReadableStream({
      start(controller) {
        for (const part of parts) controller.enqueue(encoder.encode(part));
        controller.close();
      },
    }),
    duplex: "half",
  };
}

describe("limits, CORS and request ids", () => {
  let gw: RunningGateway;
  before(async () => {
    gw = await startGatewayWithConfig(
      mirrorConfig(
        { static: [backend.address] },
        {
          limits: { maxRequestBytes: 200, maxResponseBytes: 300 },
          cors: { allowOrigins: ["https://app.example"] },
        },
      ),
    );
  });
  after(async () => gw?.stop());

  test("a body over limits.maxRequestBytes is 413 / code 8, with or without Content-Length", async () => {
    const big = JSON.stringify({ s: "x".repeat(300) });
    const declared = await call(`${gw.url}/v1/mirror`, { method: "POST", body: big });
    assert.equal(declared.status, 413);
    assert.equal(declared.json.code, 8);
    const streamed = await call(`${gw.url}/v1/mirror`, { method: "POST", ...chunked(big.slice(0, 150), big.slice(150)) } as RequestInit);
    assert.equal(streamed.status, 413);
    assert.equal(streamed.json.code, 8);
    const small = await call(`${gw.url}/v1/mirror`, { method: "POST", ...chunked('{"s":', '"ok"}') } as RequestInit);
    assert.equal(small.status, 200, small.text);
    assert.equal(small.json.s, "ok");
  });

  test("a client stream is limited per NDJSON line, not per body", async () => {
    const lines = Array.from({ length: 20 }, (_, i) => JSON.stringify({ s: `line-${i}` }) + "\n");
    assert.ok(lines.join("").length > 200, "the whole body is over the limit");
    const ok = await call(`${gw.url}/v1/collect`, { method: "POST", ...chunked(...lines) } as RequestInit);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.i32, 20);
    const long = await call(`${gw.url}/v1/collect`, {
      method: "POST",
      ...chunked('{"s":"a"}\n', `{"s":"${"y".repeat(150)}`, `${"y".repeat(150)}"}\n`),
    } as RequestInit);
    assert.equal(long.status, 413, long.text);
    assert.equal(long.json.code, 8);
  });

  test("a response message over limits.maxResponseBytes fails instead of being buffered", async () => {
    const r = await call(`${gw.url}/v1/mirror/${"z".repeat(150)}/1?tags=${"t".repeat(150)}`);
    assert.equal(r.json.code, 8, r.text);
    assert.match(r.json.message, /exceed|larger|limit/i);
  });

  test("CORS: preflight answers for an allowed origin; responses carry the CORS headers", async () => {
    const preflight = await fetch(`${gw.url}/v1/mirror`, {
      method: "OPTIONS",
      headers: {
        Origin: "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, grpc-timeout",
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(preflight.headers.get("access-control-allow-methods") ?? "", /POST/);
    assert.match(preflight.headers.get("access-control-allow-headers") ?? "", /grpc-timeout/);
    const r = await call(`${gw.url}/v1/mirror/x/1`, { headers: { Origin: "https://app.example" } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("access-control-allow-origin"), "https://app.example");
    assert.match(r.headers.get("access-control-expose-headers") ?? "", /x-request-id/);
    const other = await call(`${gw.url}/v1/mirror/x/1`, { headers: { Origin: "https://evil.example" } });
    assert.equal(other.headers.get("access-control-allow-origin"), null);
  });

  test("X-Request-Id is passed upstream and echoed, or generated", async () => {
    const given = await call(`${gw.url}/v1/whoami`, { headers: { "X-Request-Id": "req-123" } });
    assert.equal(given.headers.get("x-request-id"), "req-123");
    assert.equal(given.json.metadata["x-request-id"], "req-123");
    const made = await call(`${gw.url}/v1/whoami`);
    assert.match(made.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
    const error = await call(`${gw.url}/v2/nothing`, { headers: { "X-Request-Id": "req-404" } });
    assert.equal(error.headers.get("x-request-id"), "req-404");
  });

  test("a malformed percent escape in the path is 400 / code 3", async () => {
    const r = await call(`${gw.url}/v1/mirror/%zz/1`);
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 3);
  });

  test("HTTP/2 cleartext (prior knowledge) on the same port: unary and streaming", async () => {
    const session = connect(gw.url);
    try {
      const get = (path: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const stream = session.request({ ":method": "GET", ":path": path });
          let status = 0;
          let body = "";
          stream.on("response", (headers) => (status = Number(headers[":status"])));
          stream.setEncoding("utf8");
          stream.on("data", (chunk: string) => (body += chunk));
          stream.on("end", () => resolve({ status, body }));
          stream.on("error", reject);
        });
      const unary = await get("/v1/mirror/h2/7");
      assert.equal(unary.status, 200);
      assert.equal(JSON.parse(unary.body).s, "h2");
      const stream = await get("/v1/stream/3");
      assert.equal(stream.status, 200);
      assert.equal(stream.body.trim().split("\n").length, 3);
      const who = JSON.parse((await get("/v1/whoami")).body);
      assert.equal(who.metadata["x-forwarded-for"], "127.0.0.1", "the peer address is known over h2c too");
    } finally {
      session.close();
    }
  });
});

describe("json options", () => {
  let gw: RunningGateway;
  before(async () => {
    gw = await startGatewayWithConfig(
      mirrorConfig(
        { static: [backend.address] },
        { json: { emitUnpopulated: false, useProtoNames: true, strict: true } },
      ),
    );
  });
  after(async () => gw?.stop());

  test("proto names out, unpopulated fields left out", async () => {
    const r = await call(`${gw.url}/v1/mirror/x/1?optS=v`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { s: "x", i64: "1", opt_s: "v" });
  });

  test("strict: unknown body fields are 400 naming the field", async () => {
    const r = await call(`${gw.url}/v1/mirror`, { method: "POST", body: JSON.stringify({ s: "a", nope: 1 }) });
    assert.equal(r.status, 400);
    assert.equal(r.json.code, 3);
    assert.match(r.json.message, /nope/);
  });
});
