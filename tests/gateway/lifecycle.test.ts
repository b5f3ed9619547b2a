/**
 * The process contract: config errors exit 2 naming the key, readiness, upstream failures as
 * 503 (never a hang), SIGTERM drains in-flight calls and exits 0.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { startMirrorConnect } from "../backends/mirror-connect.ts";
import { freePort } from "../support/ports.ts";
import {
  mirrorConfig,
  root,
  startGatewayWithConfig,
  waitForStatus,
  writeConfig,
} from "./harness.ts";

function runCli(configText: string, name = "grpc-edge.yaml") {
  const file = writeConfig(configText, name);
  try {
    const r = spawnSync(process.execPath, [join(root, "bin", "grpc-edge.js"), "--config", file.path], {
      encoding: "utf8",
      timeout: 15_000,
    });
    return { status: r.status, stderr: r.stderr };
  } finally {
    file.remove();
  }
}

describe("invalid configuration exits 2 before listening, naming the key", () => {
  const cases: Array<[string, string, RegExp]> = [
    ["unknown key", `listen: "127.0.0.1:0"\nlisten_typo: 1\ndescriptors: [x]\nupstreams: []`, /listen_typo/],
    [
      "bad balancer",
      `descriptors: ["${join(root, "gen/mirror.binpb")}"]\nupstreams:\n  - name: m\n    services: [mirror.v1.Mirror]\n    discovery: { static: ["127.0.0.1:1"] }\n    balancer: random\n`,
      /upstreams\[0\]\.balancer/,
    ],
    [
      "bad duration",
      `descriptors: ["${join(root, "gen/mirror.binpb")}"]\nupstreams:\n  - name: m\n    services: [mirror.v1.Mirror]\n    discovery: { static: ["127.0.0.1:1"] }\n    timeout: 15 parsecs\n`,
      /upstreams\[0\]\.timeout/,
    ],
    [
      "service missing from the descriptors",
      `descriptors: ["${join(root, "gen/mirror.binpb")}"]\nupstreams:\n  - name: m\n    services: [nope.v1.Nope]\n    discovery: { static: ["127.0.0.1:1"] }\n`,
      /upstreams\[0\]\.services\[0\]/,
    ],
    [
      "descriptor file that is not a descriptor set",
      `descriptors: ["${join(root, "package.json")}"]\nupstreams:\n  - name: m\n    services: [mirror.v1.Mirror]\n    discovery: { static: ["127.0.0.1:1"] }\n`,
      /FileDescriptorSet/,
    ],
    ["YAML syntax error", `listen: [unclosed\n`, /config/],
  ];
  for (const [name, text, key] of cases) {
    test(name, () => {
      const r = runCli(text);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, key);
    });
  }
  test("JSON config is accepted too (and relative descriptor paths resolve against it)", async () => {
    const backend = await startMirrorConnect({ id: "json" });
    const config = mirrorConfig({ static: [backend.address] });
    const gw = await startGatewayWithConfig(config);
    try {
      await waitForStatus(`${gw.admin}/readyz`, 200);
    } finally {
      assert.equal(await gw.stop(), 0);
      await backend.stop();
    }
  });
});

describe("availability", () => {
  test("a backend that is down gives 503 / code 14 quickly, and readyz still reflects discovery", async () => {
    const deadPort = await freePort();
    const gw = await startGatewayWithConfig(mirrorConfig({ static: [`127.0.0.1:${deadPort}`] }));
    try {
      await waitForStatus(`${gw.admin}/readyz`, 200);
      const t0 = Date.now();
      const r = await fetch(`${gw.url}/v1/mirror/x/1`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(r.status, 503);
      assert.equal((await r.json()).code, 14);
      assert.ok(Date.now() - t0 < 5000);
      assert.equal((await fetch(`${gw.admin}/healthz`)).status, 200);
    } finally {
      await gw.stop();
    }
  });

  test("a backend that resets mid-call gives 503, not a hang", async () => {
    const backend = await startMirrorConnect({ id: "reset" });
    const gw = await startGatewayWithConfig(mirrorConfig({ static: [backend.address] }));
    try {
      const pending = fetch(`${gw.url}/v1/slow/3000`, { signal: AbortSignal.timeout(10_000) });
      await new Promise((r) => setTimeout(r, 300));
      await backend.stop({ graceful: false });
      const r = await pending;
      assert.equal(r.status, 503);
      assert.equal((await r.json()).code, 14);
    } finally {
      await gw.stop();
    }
  });
});

describe("lifecycle", () => {
  let backend: Awaited<ReturnType<typeof startMirrorConnect>>;
  before(async () => {
    backend = await startMirrorConnect({ id: "life" });
  });
  after(async () => backend?.stop());

  test("SIGTERM: readiness 503, no new connections, in-flight calls finish, exit 0", async () => {
    const gw = await startGatewayWithConfig(mirrorConfig({ static: [backend.address] }));
    await waitForStatus(`${gw.admin}/readyz`, 200);
    const inFlight = fetch(`${gw.url}/v1/slow/1500`, { signal: AbortSignal.timeout(10_000) });
    const stream = fetch(`${gw.url}/v1/stream/4?intervalMs=300`, { signal: AbortSignal.timeout(10_000) });
    await new Promise((r) => setTimeout(r, 300));
    const exited = gw.stop();
    // The admin listener stays up while the public one drains, answering 503.
    await waitForStatus(`${gw.admin}/readyz`, 503, 1000);
    const r = await inFlight;
    assert.equal(r.status, 200);
    assert.equal((await r.json()).i32, 1500);
    const lines = (await (await stream).text()).trim().split("\n");
    assert.equal(lines.length, 4, "the stream in flight completed");
    assert.equal(await exited, 0);
    await assert.rejects(fetch(`${gw.url}/v1/mirror/x/1`), "the listener is closed");
  });

  test("SIGTERM: calls still running at shutdown.drainTimeout are cut, and the exit is still 0", async () => {
    const gw = await startGatewayWithConfig(
      mirrorConfig({ static: [backend.address] }, { shutdown: { drainTimeout: "1s" }, workers: 1 }),
    );
    await waitForStatus(`${gw.admin}/readyz`, 200);
    const stream = fetch(`${gw.url}/v1/stream/100?intervalMs=200`, { signal: AbortSignal.timeout(30_000) });
    const response = await stream;
    const reader = response.body!.getReader();
    await reader.read();
    const t0 = Date.now();
    assert.equal(await gw.stop(), 0);
    const took = Date.now() - t0;
    assert.ok(took < 6_000, `exited ${took} ms after SIGTERM with a 1 s drain timeout`);
    // The 20 s stream did not run to its end.
    let lines = 1;
    await (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        lines += new TextDecoder().decode(value).split("\n").filter((l) => l !== "").length;
      }
    })().catch(() => {});
    assert.ok(lines < 100, `${lines} lines`);
  });

  test("readyz reports each upstream; metrics expose readiness", async () => {
    const gw = await startGatewayWithConfig(mirrorConfig({ static: [backend.address] }));
    try {
      await waitForStatus(`${gw.admin}/readyz`, 200);
      const body = await (await fetch(`${gw.admin}/readyz`)).json();
      assert.deepEqual(body.upstreams, { mirror: true });
      const metrics = await (await fetch(`${gw.admin}/metrics`)).text();
      assert.match(metrics, /grpc_edge_ready 1/);
    } finally {
      await gw.stop();
    }
  });
});
