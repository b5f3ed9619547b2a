/**
 * The HTTP contract end to end: the gateway as a process, transcoding to real gRPC backends —
 * once against connect-node and once against @grpc/grpc-js (interop) — over loopback.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { startMirrorConnect } from "../backends/mirror-connect.ts";
import { startMirrorGrpcJs } from "../backends/mirror-grpcjs.ts";
import { call, mirrorConfig, startGatewayWithConfig, type RunningGateway } from "./harness.ts";

const backends = {
  "connect-node": startMirrorConnect,
  "grpc-js": startMirrorGrpcJs,
} as const;

for (const [kind, start] of Object.entries(backends)) {
  describe(`transcoding against a ${kind} backend`, () => {
    let backend: Awaited<ReturnType<typeof start>>;
    let gw: RunningGateway;
    before(async () => {
      backend = await start({ id: `${kind}-1` });
      gw = await startGatewayWithConfig(mirrorConfig({ static: [backend.address], timeout: "3s" }));
    });
    after(async () => {
      await gw?.stop();
      await backend?.stop();
    });

    test("GET maps path variables and every query form onto the request", async () => {
      const q = new URLSearchParams([
        ["tags", "a"],
        ["tags", "b"],
        ["nums", "1"],
        ["nums", "2"],
        ["b", "true"],
        ["d", "NaN"],
        ["f", "-Infinity"],
        ["u64", "18446744073709551615"],
        ["raw", "-_8"], // base64url of fb ff
        ["color", "GREEN"],
        ["colors", "1"],
        ["colors", "GREEN"],
        ["nested.label", "n"],
        ["nested.child.level", "7"],
        ["ts", "2024-01-02T03:04:05.5Z"],
        ["dur", "1.5s"],
        ["optI64", "9007199254740993"],
        ["opt_s", "wrapped"],
        ["mask", "s,nested.label"],
        ["labels[k1]", "v1"],
        ["pick_a", "chosen"],
      ]);
      const r = await call(`${gw.url}/v1/mirror/hello%20world/-42?${q}`);
      assert.equal(r.status, 200, r.text);
      const e = r.json;
      assert.equal(e.s, "hello world");
      assert.equal(e.i64, "-42");
      assert.deepEqual(e.tags, ["a", "b"]);
      assert.deepEqual(e.nums, [1, 2]);
      assert.equal(e.b, true);
      assert.equal(e.d, "NaN");
      assert.equal(e.f, "-Infinity");
      assert.equal(e.u64, "18446744073709551615");
      assert.equal(e.raw, "+/8=");
      assert.equal(e.color, "GREEN");
      assert.deepEqual(e.colors, ["RED", "GREEN"]);
      assert.equal(e.nested.label, "n");
      assert.equal(e.nested.child.level, 7);
      assert.equal(e.ts, "2024-01-02T03:04:05.500Z");
      assert.equal(e.dur, "1.500s");
      assert.equal(e.optI64, "9007199254740993");
      assert.equal(e.optS, "wrapped");
      assert.equal(e.mask, "s,nested.label");
      assert.deepEqual(e.labels, { k1: "v1" });
      assert.equal(e.pickA, "chosen");
      // Unpopulated fields are emitted by default (grpc-gateway v2).
      assert.equal(e.i32, 0);
      assert.equal(e.name, "");
    });

    test("a query parameter naming a path-bound field is ignored", async () => {
      const r = await call(`${gw.url}/v1/mirror/from-path/1?s=from-query`);
      assert.equal(r.json.s, "from-path");
    });

    test("type errors in the query are 400 / code 3 naming the field", async () => {
      const r = await call(`${gw.url}/v1/mirror/x/1?i32=abc`);
      assert.equal(r.status, 400);
      assert.equal(r.json.code, 3);
      assert.match(r.json.message, /i32/);
      const bad = await call(`${gw.url}/v1/mirror/x/not-a-number`);
      assert.equal(bad.status, 400);
      assert.match(bad.json.message, /i64/);
      const en = await call(`${gw.url}/v1/mirror/x/1?color=PURPLE`);
      assert.equal(en.status, 400);
      assert.match(en.json.message, /color/);
    });

    test("POST body '*', PUT additional binding, nested body field, custom verb", async () => {
      const post = await call(`${gw.url}/v1/mirror`, {
        method: "POST",
        body: JSON.stringify({ s: "posted", i64: "5", nested: { label: "x" }, unknownField: 1 }),
      });
      assert.equal(post.status, 200, post.text);
      assert.equal(post.json.s, "posted");
      assert.equal(post.json.i64, "5");
      assert.equal(post.json.nested.label, "x");

      const put = await call(`${gw.url}/v1/mirror/put-path`, {
        method: "PUT",
        body: JSON.stringify({ s: "from-body", i32: 3 }),
      });
      assert.equal(put.json.s, "put-path", "path variables override the body");
      assert.equal(put.json.i32, 3);

      const nested = await call(`${gw.url}/v1/mirror/abc/nested?i32=9`, {
        method: "POST",
        body: JSON.stringify({ label: "inner", level: 2 }),
      });
      assert.equal(nested.json.s, "abc");
      assert.equal(nested.json.i32, 9);
      assert.deepEqual([nested.json.nested.label, nested.json.nested.level], ["inner", 2]);

      const verb = await call(`${gw.url}/v1/mirror/loud:shout`, {
        method: "POST",
        body: JSON.stringify({ i32: 1 }),
      });
      assert.equal(verb.status, 200, verb.text);
      assert.equal(verb.json.s, "loud");
    });

    test("proto field names are accepted in bodies", async () => {
      const r = await call(`${gw.url}/v1/mirror`, {
        method: "POST",
        body: JSON.stringify({ opt_i64: "7", pick_b: 4 }),
      });
      assert.equal(r.json.optI64, "7");
      assert.equal(r.json.pickB, 4);
    });

    test("malformed JSON bodies are 400 / code 3", async () => {
      const r = await call(`${gw.url}/v1/mirror`, { method: "POST", body: "{nope" });
      assert.equal(r.status, 400);
      assert.equal(r.json.code, 3);
    });

    test("PATCH fills an unset field mask from the body's keys", async () => {
      const r = await call(`${gw.url}/v1/things/t1`, {
        method: "PATCH",
        body: JSON.stringify({ label: "l", child: { level: 1 } }),
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.name, "things/t1");
      assert.deepEqual(r.json.mask.split(",").sort(), ["child.level", "label"]);
    });

    test("DELETE → Empty as {}; response_body renders only that field", async () => {
      const del = await call(`${gw.url}/v1/mirror/gone`, { method: "DELETE" });
      assert.equal(del.status, 200);
      assert.deepEqual(del.json, {});
      const rb = await call(`${gw.url}/v1/mirror/x/nested-only?nested.label=only`);
      assert.equal(rb.status, 200);
      assert.equal(rb.json.label, "only");
      assert.equal(rb.json.s, undefined);
    });

    test("multi-segment captures keep %2F encoded; single-segment ones decode it", async () => {
      const byName = await call(`${gw.url}/v1/by-name/things/a%2Fb/parts/p1`);
      assert.equal(byName.status, 200, byName.text);
      assert.equal(byName.json.name, "things/a%2Fb/parts/p1");
      const files = await call(`${gw.url}/v1/files/files/dir/sub/x.txt`);
      assert.equal(files.json.name, "files/dir/sub/x.txt");
      const single = await call(`${gw.url}/v1/mirror/a%2Fb/1`);
      assert.equal(single.json.s, "a/b");
    });

    test("unknown path is 404 / code 5; known path with the wrong method is 405 with Allow", async () => {
      const nf = await call(`${gw.url}/v2/nothing`);
      assert.equal(nf.status, 404);
      assert.equal(nf.json.code, 5);
      const na = await call(`${gw.url}/v1/mirror`, { method: "GET" });
      assert.equal(na.status, 405);
      assert.match(na.headers.get("allow") ?? "", /POST/);
      assert.equal(typeof na.json.code, "number");
    });

    test("backend errors map through the status table with decoded details", async () => {
      const table: Array<[number, number]> = [
        [1, 499], [2, 500], [3, 400], [4, 504], [5, 404], [6, 409], [7, 403], [8, 429],
        [9, 400], [10, 409], [11, 400], [12, 501], [13, 500], [14, 503], [15, 500], [16, 401],
      ];
      for (const [code, httpStatus] of table) {
        const r = await call(`${gw.url}/v1/fail`, {
          method: "POST",
          body: JSON.stringify({ code, message: `failed with ${code}` }),
        });
        assert.equal(r.status, httpStatus, `code ${code}`);
        assert.equal(r.json.code, code);
        assert.equal(r.json.message, `failed with ${code}`);
        assert.ok(Array.isArray(r.json.details));
      }
      const withDetails = await call(`${gw.url}/v1/fail`, {
        method: "POST",
        body: JSON.stringify({ code: 3, message: "bad" }),
      });
      const detail = withDetails.json.details[0];
      assert.equal(detail["@type"], "type.googleapis.com/google.rpc.BadRequest");
      assert.ok(Array.isArray(detail.fieldViolations));
    });

    test("metadata: Grpc-Metadata-* and Authorization go up, hop-by-hop never, X-Forwarded-* added", async () => {
      const r = await call(`${gw.url}/v1/whoami`, {
        headers: {
          "Grpc-Metadata-Tenant": "acme",
          Authorization: "Bearer t0k",
          "X-Forwarded-For": "203.0.113.9",
          "Grpc-Metadata-Connection": "sneaky",
          "X-Not-Forwarded": "no",
        },
      });
      assert.equal(r.status, 200, r.text);
      const md = r.json.metadata;
      assert.equal(md.tenant, "acme");
      assert.equal(md.authorization, "Bearer t0k");
      assert.match(md["x-forwarded-for"], /^203\.0\.113\.9, 127\.0\.0\.1$/);
      assert.match(md["x-forwarded-host"], /^127\.0\.0\.1:\d+$/);
      assert.equal(md.connection, undefined);
      assert.equal(md["x-not-forwarded"], undefined);
      assert.equal(r.json.backend, backend.id);
      assert.equal(r.headers.get("grpc-metadata-x-backend"), backend.id);
      assert.equal(r.headers.get("grpc-metadata-x-backend-trailer"), backend.id);
    });

    test("Grpc-Timeout and the upstream timeout are enforced: 504 / code 4", async () => {
      const t0 = Date.now();
      const r = await call(`${gw.url}/v1/slow/5000`, { headers: { "Grpc-Timeout": "200m" } });
      assert.equal(r.status, 504);
      assert.equal(r.json.code, 4);
      assert.ok(Date.now() - t0 < 3000);
      const t1 = Date.now();
      const r2 = await call(`${gw.url}/v1/slow/10000`);
      assert.equal(r2.status, 504, "the upstream's 3s timeout applies");
      assert.ok(Date.now() - t1 < 8000);
      const bad = await call(`${gw.url}/v1/slow/1`, { headers: { "Grpc-Timeout": "soon" } });
      assert.equal(bad.status, 400);
    });

    test("server streaming: NDJSON flushed message by message, error line at failure", async () => {
      const res = await fetch(`${gw.url}/v1/stream/3?intervalMs=400`, {
        signal: AbortSignal.timeout(10_000),
      });
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type") ?? "", /ndjson/);
      const reader = res.body!.getReader();
      const t0 = Date.now();
      const first = await reader.read();
      const firstAt = Date.now() - t0;
      assert.ok(!first.done);
      assert.deepEqual(JSON.parse(new TextDecoder().decode(first.value).split("\n")[0]).result.s, "item-0");
      let rest = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        rest += new TextDecoder().decode(value);
      }
      const total = Date.now() - t0;
      assert.ok(firstAt < total - 500, `first line at ${firstAt} ms, stream ended at ${total} ms`);
      assert.equal(rest.trim().split("\n").length, 2);

      const failing = await call(`${gw.url}/v1/stream/5?failAfter=2&failCode=9`);
      assert.equal(failing.status, 200);
      const lines = failing.text.trim().split("\n").map((l) => JSON.parse(l));
      assert.equal(lines.length, 3);
      assert.equal(lines[1].result.i32, 1);
      assert.equal(lines[2].error.code, 9);
      assert.equal(lines[2].error.message, "stream failed");
    });

    test("a stream failing before its first message gets a real HTTP status", async () => {
      const early = await call(`${gw.url}/v1/stream/0?failAfter=1&failCode=7`);
      assert.equal(early.status, 403);
      assert.equal(early.json.code, 7);
    });

    test("server streaming as Server-Sent Events with Accept: text/event-stream", async () => {
      const r = await call(`${gw.url}/v1/stream/2`, { headers: { Accept: "text/event-stream" } });
      assert.equal(r.status, 200);
      assert.match(r.headers.get("content-type") ?? "", /text\/event-stream/);
      const events = r.text.split("\n\n").filter((e) => e.trim() !== "");
      assert.equal(events.length, 2);
      assert.equal(JSON.parse(events[1].replace(/^data: /, "")).result.s, "item-1");
    });

    test("client streaming from an NDJSON body", async () => {
      const r = await call(`${gw.url}/v1/collect`, {
        method: "POST",
        headers: { "content-type": "application/x-ndjson" },
        body: '{"s":"a"}\n{"s":"b"}\n\n{"s":"c"}',
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.i32, 3);
      assert.deepEqual(r.json.tags, ["a", "b", "c"]);
      const bad = await call(`${gw.url}/v1/collect`, { method: "POST", body: '{"s":"a"}\n{"i32":"x"}\n' });
      assert.equal(bad.status, 400, bad.text);
      assert.equal(bad.json.code, 3);
    });

    test("a client that disconnects cancels the upstream call", async () => {
      const cancelledBefore = backend.cancelledCalls();
      const controller = new AbortController();
      const pending = fetch(`${gw.url}/v1/slow/2000`, { signal: controller.signal }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 200));
      controller.abort();
      await pending;
      // The backend records calls that ended by cancellation.
      const deadline = Date.now() + 3000;
      while (backend.cancelledCalls() === cancelledBefore && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.ok(backend.cancelledCalls() > cancelledBefore, "the backend saw the cancellation");
    });
  });
}

describe("response bytes that do not decode", () => {
  // A backend that answers every call with one message that is not a valid Everything (field 1,
  // a string, with invalid UTF-8), then grpc-status 0. Responses are rendered from their bytes
  // (src/transcode/wire-json.ts), so this must still be the upstream's fault: 500, Internal.
  let server: Http2Server;
  let gw: RunningGateway;
  before(async () => {
    server = createServer();
    server.on("stream", (stream) => {
      stream.on("error", () => {});
      stream.resume();
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      const bad = Uint8Array.of(0x0a, 0x02, 0xc3, 0x28); // s = "\xc3\x28"
      const frame = new Uint8Array(5 + bad.length);
      new DataView(frame.buffer).setUint32(1, bad.length);
      frame.set(bad, 5);
      stream.end(frame);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    gw = await startGatewayWithConfig(mirrorConfig({ static: [`127.0.0.1:${port}`], timeout: "3s" }));
  });
  after(async () => {
    await gw?.stop();
    await new Promise((resolve) => server?.close(resolve));
  });

  test("a unary answer is 500 Internal with a google.rpc.Status that says why", async () => {
    const res = await call(`${gw.url}/v1/mirror/abc/1`);
    assert.equal(res.status, 500);
    assert.equal(res.json.code, 13);
    assert.match(res.json.message, /cannot decode the response/);
  });

  test("a stream's first message fails the call the same way", async () => {
    const res = await call(`${gw.url}/v1/stream/2`);
    assert.equal(res.status, 500);
    assert.equal(res.json.code, 13);
  });
});
