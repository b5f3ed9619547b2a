import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { IncomingHttpHeaders } from "node:http2";
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
});
