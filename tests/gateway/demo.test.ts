/**
 * The embedded demo (`npx grpc-edge` with no config): three backends behind the gateway,
 * exercised the way the printed curl commands do.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startGateway, type RunningGateway } from "./harness.ts";

let gw: RunningGateway;
before(async () => {
  gw = await startGateway(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
});
after(async () => {
  assert.equal(await gw?.stop(), 0);
});

async function json(path: string, init: RequestInit = {}) {
  const r = await fetch(`${gw.url}${path}`, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: r.status, body: await r.json() };
}

test("the banner prints ready-to-paste curl commands for this listener", () => {
  assert.match(gw.output(), new RegExp(`curl -s ${gw.url}/v1/shelves/1/books`));
});

test("requests rotate over the three backends (servedBy)", async () => {
  const servedBy = new Set<string>();
  for (let i = 0; i < 6; i++) servedBy.add((await json("/v1/shelves/1/books/1")).body.servedBy);
  assert.equal(servedBy.size, 3, [...servedBy].join(","));
});

test("create, update with a field mask, custom verb, delete, list, errors", async () => {
  const created = await json("/v1/shelves/1/books", {
    method: "POST",
    body: JSON.stringify({ title: "Dune", author: "Frank Herbert", pages: 412 }),
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const name: string = created.body.name;
  assert.match(name, /^shelves\/1\/books\//);

  const patched = await json(`/v1/${name}`, { method: "PATCH", body: JSON.stringify({ pages: 500 }) });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.equal(patched.body.pages, 500);
  assert.equal(patched.body.title, "Dune", "fields outside the mask are kept");

  const archived = await json(`/v1/${name}:archive`, { method: "POST", body: "{}" });
  assert.equal(archived.body.archived, true);
  const again = await json(`/v1/${name}:archive`, { method: "POST", body: "{}" });
  assert.equal(again.status, 400);
  assert.equal(again.body.code, 9);

  const list = await json("/v1/shelves/1/books?pageSize=100");
  assert.ok(list.body.books.some((b: { name: string }) => b.name === name));

  assert.equal((await json(`/v1/${name}`, { method: "DELETE" })).status, 200);
  const gone = await json(`/v1/${name}`);
  assert.equal(gone.status, 404);
  assert.equal(gone.body.code, 5);

  const invalid = await json("/v1/shelves/1/books", { method: "POST", body: JSON.stringify({ title: "" }) });
  assert.equal(invalid.status, 400);
  assert.equal(invalid.body.details[0]["@type"], "type.googleapis.com/google.rpc.BadRequest");
});

test("the watch stream delivers existing books as NDJSON", async () => {
  const r = await fetch(`${gw.url}/v1/shelves/1/books:watch?maxEvents=2`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  const lines = (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.equal(lines[0].result.kind, "EXISTING");
});

test("admin: readyz and the endpoint view list the three backends", async () => {
  assert.equal((await fetch(`${gw.admin}/readyz`)).status, 200);
  const view = await (await fetch(`${gw.admin}/debug/endpoints`)).json();
  assert.equal(JSON.stringify(view).match(/127\.0\.0\.1:\d+/g)?.length !== undefined, true);
  assert.ok(view.upstreams.library);
});
