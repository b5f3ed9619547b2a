/**
 * The same src/ under Deno: `deno task start` runs the gateway (src/deno.ts) on a config, and it
 * transcodes unary and server-streaming calls to a real backend, then drains on SIGTERM.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { startMirrorConnect } from "../backends/mirror-connect.ts";
import { startProcess } from "../support/process.ts";
import { mirrorConfig, root, writeConfig } from "../gateway/harness.ts";

const deno = join(root, "node_modules", ".bin", "deno");

let backend: Awaited<ReturnType<typeof startMirrorConnect>>;
let gateway: Awaited<ReturnType<typeof startProcess>>;
let url: string;
let config: ReturnType<typeof writeConfig>;

before(async () => {
  backend = await startMirrorConnect({ id: "deno-backend" });
  config = writeConfig(mirrorConfig({ static: [backend.address] }));
  gateway = await startProcess(deno, ["task", "start", "--config", config.path], {
    cwd: root,
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    ready: /listening on (http:\/\/\S+) \(admin (http:\/\/\S+)\).*runtime deno/,
    timeoutMs: 60_000,
  });
  url = gateway.match[1];
});

after(async () => {
  await gateway?.stop();
  await backend?.stop();
  config?.remove();
});

test("deno: unary GET transcodes path and query", async () => {
  const r = await fetch(`${url}/v1/mirror/from-deno/7?tags=x&tags=y`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  const body = await r.json();
  assert.equal(body.s, "from-deno");
  assert.equal(body.i64, "7");
  assert.deepEqual(body.tags, ["x", "y"]);
  assert.equal(r.headers.get("grpc-metadata-x-backend"), "deno-backend");
});

test("deno: server streaming as NDJSON, and errors as google.rpc.Status", async () => {
  const r = await fetch(`${url}/v1/stream/3`, { signal: AbortSignal.timeout(10_000) });
  assert.equal(r.status, 200);
  const lines = (await r.text()).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.result.s), ["item-0", "item-1", "item-2"]);
  const e = await fetch(`${url}/v1/fail`, { method: "POST", body: '{"code":5,"message":"nope"}' });
  assert.equal(e.status, 404);
  assert.deepEqual(await e.json(), { code: 5, message: "nope", details: [] });
});

test("deno: SIGTERM drains and exits 0", async () => {
  const pending = fetch(`${url}/v1/slow/500`, { signal: AbortSignal.timeout(10_000) });
  await new Promise((r) => setTimeout(r, 100));
  const code = gateway.stop();
  assert.equal((await pending).status, 200);
  assert.equal(await code, 0);
});
