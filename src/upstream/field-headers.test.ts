import { describe, test } from "node:test";
import assert from "node:assert/strict";
import http2, { type IncomingHttpHeaders } from "node:http2";
import type { AddressInfo } from "node:net";
import { FieldHeaders } from "./field-headers.ts";

/** What FieldHeaders must be indistinguishable from: a Headers filled from the same fields. */
function reference(fields: IncomingHttpHeaders): Headers {
  const h = new Headers();
  for (const name in fields) {
    const value = fields[name];
    if (name.startsWith(":") || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [String(value)]) h.append(name, v);
  }
  return h;
}

const fields: IncomingHttpHeaders = {
  ":status": "200",
  "content-type": "application/grpc",
  "x-b": "2",
  "x-a": ["1", "one"],
  "set-cookie": ["a=1", "b=2"],
  "x-space": "  padded\t",
  "trace-bin": "AQID",
};

function sameAs(actual: Headers, expected: Headers): void {
  assert.deepEqual([...actual], [...expected], "iteration");
  assert.deepEqual([...actual.keys()], [...expected.keys()], "keys");
  assert.deepEqual([...actual.values()], [...expected.values()], "values");
  const seen: Array<[string, string]> = [];
  actual.forEach((v, k, parent) => {
    assert.equal(parent, actual);
    seen.push([k, v]);
  });
  assert.deepEqual(seen, [...expected], "forEach");
  for (const name of [":status", "bad name"]) {
    assert.throws(() => actual.get(name), TypeError);
    assert.throws(() => expected.get(name), TypeError);
  }
  for (const name of ["X-A", "x-b", "x-space", "set-cookie", "missing", "Content-Type"]) {
    assert.equal(actual.get(name), expected.get(name), `get ${name}`);
    assert.equal(actual.has(name), expected.has(name), `has ${name}`);
  }
  assert.deepEqual(actual.getSetCookie(), expected.getSetCookie(), "getSetCookie");
  assert.deepEqual(Object.fromEntries(actual), Object.fromEntries(expected), "Object.fromEntries");
  assert.deepEqual([...new Headers(actual)], [...expected], "copied into a new Headers");
}

describe("FieldHeaders", () => {
  test("reads like a Headers filled from the same fields, pseudo-headers left out", () => {
    const lazy = new FieldHeaders(fields);
    assert.ok(lazy instanceof Headers);
    sameAs(lazy, reference(fields));
  });

  test("after a change it is an ordinary Headers holding the fields and the change", () => {
    for (const change of [
      (h: Headers) => h.append("x-b", "3"),
      (h: Headers) => h.set("x-a", "only"),
      (h: Headers) => h.delete("set-cookie"),
      (h: Headers) => h.append("new", "v"),
    ]) {
      const lazy = new FieldHeaders(fields);
      const expected = reference(fields);
      change(lazy);
      change(expected);
      sameAs(lazy, expected);
    }
  });

  test("an empty block is an empty Headers", () => {
    sameAs(new FieldHeaders({ ":status": "200" }), new Headers());
  });

  test("with node:http2's field list it iterates the list and still reads like the object", () => {
    const list = [":status", "200", "x-b", "2", "content-type", "application/grpc", "set-cookie", "a=1", "x-space", "  padded\t"];
    const object: IncomingHttpHeaders = { ":status": "200", "x-b": "2", "content-type": "application/grpc", "set-cookie": ["a=1"], "x-space": "  padded\t" };
    sameAs(new FieldHeaders(object, list), reference(object));
  });

  test("a field list with a repeated name defers to the object node:http2 built from it", () => {
    // node:http2 keeps the first of a repeated singleton (content-type) and joins or lists others.
    const list = ["content-type", "application/grpc", "content-type", "text/plain", "x-a", "1", "x-a", "one", "set-cookie", "a=1", "set-cookie", "b=2"];
    const object: IncomingHttpHeaders = { "content-type": "application/grpc", "x-a": ["1", "one"], "set-cookie": ["a=1", "b=2"] };
    sameAs(new FieldHeaders(object, list), reference(object));
  });

  test("real node:http2 header and trailer blocks read the same with and without their field list", async () => {
    const server = http2.createServer();
    server.on("stream", (stream) => {
      stream.respond(
        { ":status": 200, "content-type": "application/grpc", "x-b": "2", "x-a": ["1", "one"], "set-cookie": ["a=1", "b=2"], "trace-bin": "AQID" },
        { waitForTrailers: true },
      );
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "x-t": ["3", "4"], "x-u": "5" }));
      stream.end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const blocks: Array<[IncomingHttpHeaders, string[]]> = [];
      await new Promise<void>((resolve, reject) => {
        const request = client.request({ ":path": "/" });
        request.on("response", (h, _flags, list: string[]) => blocks.push([h, list]));
        request.on("trailers", (h, _flags, list: string[]) => blocks.push([h, list]));
        request.on("error", reject);
        request.on("close", resolve);
        request.resume();
      });
      assert.equal(blocks.length, 2);
      for (const [object, list] of blocks) {
        assert.ok(Array.isArray(list) && list.length > 0, "node:http2 hands listeners the field list");
        sameAs(new FieldHeaders(object, list), reference(object));
        sameAs(new FieldHeaders(object, list), new FieldHeaders(object));
      }
      assert.deepEqual([...new FieldHeaders(...blocks[1])], [["grpc-status", "0"], ["x-t", "3, 4"], ["x-u", "5"]]);
    } finally {
      client.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
