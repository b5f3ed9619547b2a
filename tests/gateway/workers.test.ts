/**
 * `workers: N`: N gateway processes behind one listener (node:cluster). Seen from outside: one
 * listening line with the real port even for port 0, connections spread over the workers (each
 * has its own upstream pool, so the backend sees one HTTP/2 session per worker), SIGTERM drains
 * every worker and exits 0, a worker that dies is replaced, and a worker that cannot start
 * stops the whole gateway.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { mirrorConfig, root, startGatewayWithConfig, waitForStatus, writeConfig, type RunningGateway } from "./harness.ts";

/**
 * A gRPC backend on bare node:http2 that tells its client connections apart: every call gets an
 * empty message back (Slow after `slowMs`), and `sessions` holds the client port of each session.
 */
async function startCountingBackend(slowMs: number) {
  const sessions = new Set<number>();
  const server = http2.createServer();
  server.on("session", (s) => {
    sessions.add(s.socket.remotePort!);
    s.on("error", () => {});
  });
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    stream.resume();
    stream.on("end", () => {
      const answer = () => {
        if (stream.destroyed) return;
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(Buffer.alloc(5)); // one empty message
      };
      if (headers[":path"] === "/mirror.v1.Mirror/Slow") setTimeout(answer, slowMs);
      else answer();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    sessions,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** GET on a connection of its own (no keep-alive pool), so the cluster places each request anew. */
function getOnNewConnection(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false, timeout: 10_000 }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode!, body }));
      })
      .on("error", reject)
      .on("timeout", function (this: http.ClientRequest) {
        this.destroy(new Error(`GET ${url} timed out`));
      });
  });
}

describe("workers: 2", () => {
  let backend: Awaited<ReturnType<typeof startCountingBackend>>;
  let gw: RunningGateway;
  before(async () => {
    backend = await startCountingBackend(800);
    gw = await startGatewayWithConfig(mirrorConfig({ static: [backend.address] }, { workers: 2 }));
  });
  after(async () => {
    await gw?.stop();
    await backend?.stop();
  });

  test("one listening line with the real port, naming both worker pids", () => {
    assert.match(gw.url, /^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    const lines = gw.output().split("\n").filter((l) => l.includes("listening on"));
    assert.equal(lines.length, 1, gw.output());
    const pids = lines[0].match(/2 workers \(pids (\d+), (\d+)\)/);
    assert.ok(pids, lines[0]);
    assert.notEqual(pids[1], pids[2]);
  });

  test("both workers serve: connections are spread, each worker has its own upstream session", async () => {
    await waitForStatus(`${gw.admin}/readyz`, 200);
    const answers = await Promise.all(Array.from({ length: 8 }, () => getOnNewConnection(`${gw.url}/v1/whoami`)));
    for (const a of answers) assert.equal(a.status, 200, a.body);
    assert.equal(backend.sessions.size, 2, "one HTTP/2 session from each worker's pool");
  });

  test("a worker that dies is replaced, and the port keeps serving", async () => {
    const pid = Number(gw.output().match(/2 workers \(pids (\d+),/)![1]);
    process.kill(pid, "SIGKILL");
    const deadline = Date.now() + 10_000;
    while (!/worker \d \(pid \d+\) replaced and listening/.test(gw.output())) {
      assert.ok(Date.now() < deadline, `no replacement within 10 s:\n${gw.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const answers = await Promise.all(Array.from({ length: 4 }, () => getOnNewConnection(`${gw.url}/v1/whoami`)));
    for (const a of answers) assert.equal(a.status, 200, a.body);
  });

  test("SIGTERM: calls in flight on every worker finish, readiness goes 503, exit 0", async () => {
    const inFlight = Array.from({ length: 4 }, () => getOnNewConnection(`${gw.url}/v1/slow/800`));
    await new Promise((r) => setTimeout(r, 300));
    const exited = gw.stop();
    await waitForStatus(`${gw.admin}/readyz`, 503, 1000);
    for (const a of await Promise.all(inFlight)) assert.equal(a.status, 200, a.body);
    assert.equal(await exited, 0, gw.output());
    assert.match(gw.output(), /worker 1: stopped/);
    assert.match(gw.output(), /worker 2: stopped/);
    await assert.rejects(fetch(`${gw.url}/v1/whoami`), "the shared listener is closed");
  });
});

test("a worker that cannot start stops the gateway with its exit code", () => {
  const file = writeConfig(mirrorConfig({ static: ["127.0.0.1:1"] }, { workers: 2, descriptors: [join(root, "package.json")] }));
  try {
    const r = spawnSync(process.execPath, [join(root, "bin", "grpc-edge.js"), "--config", file.path], {
      encoding: "utf8",
      timeout: 15_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /FileDescriptorSet/);
    assert.doesNotMatch(r.stdout, /listening on/);
  } finally {
    file.remove();
  }
});
