import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import fc from "fast-check";
import { ConfigError, parseConfig, parseDuration, parseByteSize, parseHostPort } from "./index.ts";

const base = "/etc/grpc-edge";
const minimal = `
descriptors: ["set.binpb"]
upstreams:
  - name: mirror
    services: ["mirror.v1.Mirror"]
    discovery: { static: ["127.0.0.1:50051"] }
`;

function errorOf(text: string): ConfigError {
  try {
    parseConfig(text, { baseDir: base });
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return e;
  }
  assert.fail("expected the config to be rejected");
}

describe("parseConfig: valid files", () => {
  test("a minimal file gets every default and absolute descriptor paths", () => {
    const c = parseConfig(minimal, { baseDir: base });
    assert.deepEqual(c.listen, { host: "127.0.0.1", port: 8080 });
    assert.deepEqual(c.admin, { host: "127.0.0.1", port: 9901 });
    assert.deepEqual(c.descriptors, ["/etc/grpc-edge/set.binpb"]);
    assert.deepEqual(c.json, { emitUnpopulated: true, useProtoNames: false, strict: false });
    assert.equal(c.limits.maxRequestBytes, 4 * 1024 * 1024);
    assert.equal(c.cors, undefined);
    assert.equal(c.shutdown.drainTimeoutMs, 30_000);
    const u = c.upstreams[0];
    assert.deepEqual(u.discovery, { kind: "static", endpoints: [{ address: "127.0.0.1", port: 50051 }] });
    assert.equal(u.balancer, "round_robin");
    assert.equal(u.timeoutMs, 15_000);
    assert.equal(u.warm, false);
    assert.equal(u.idleTimeoutMs, 300_000);
    assert.deepEqual(u.keepalive, { intervalMs: 30_000, timeoutMs: 10_000 });
    assert.deepEqual(u.retry, {
      attempts: 2, on: ["unavailable"], methods: "idempotent", budgetPercent: 20, backoffBaseMs: 25, backoffMaxMs: 250,
    });
    assert.equal(u.health, undefined);
    assert.deepEqual(u.outlier, { consecutiveFailures: 5, baseEjectionMs: 30_000, maxEjectionMs: 300_000, maxEjectionPercent: 50 });
  });

  test("a full file, JSON form, IPv6 listener, each discovery kind", () => {
    const c = parseConfig(
      JSON.stringify({
        listen: "[::1]:0",
        admin: "localhost:9902",
        descriptors: ["/abs/a.binpb", "b.binpb"],
        json: { emitUnpopulated: false, useProtoNames: true, strict: true },
        limits: { maxRequestBytes: "512KiB", maxResponseBytes: 1000 },
        cors: { allowOrigins: ["https://app.example"], maxAge: "1m" },
        shutdown: { drainTimeout: "5s" },
        upstreams: [
          {
            name: "a", services: ["a.v1.A"], discovery: { dns: { host: "a.default.svc", port: 50051, refresh: "2s" } },
            balancer: "peak_ewma", timeout: "1m30s", warm: true, idleTimeout: "10s",
            retry: { attempts: 3, on: ["unavailable", "resource_exhausted"], methods: "all", budget: "10%", backoff: { base: "10ms", max: "1s" } },
            health: { interval: "2s" },
            outlier: { consecutiveFailures: 3, maxEjectionPercent: 30 },
          },
          {
            name: "b", services: ["b.v1.B", "b.v1.C"],
            discovery: { kubernetes: { service: "b", port: "grpc", kubeconfig: "kube.yaml", zone: "z1" } },
          },
        ],
      }),
      { baseDir: base },
    );
    assert.deepEqual(c.listen, { host: "::1", port: 0 });
    assert.deepEqual(c.descriptors, ["/abs/a.binpb", "/etc/grpc-edge/b.binpb"]);
    assert.equal(c.limits.maxRequestBytes, 512 * 1024);
    assert.equal(c.cors?.maxAgeSeconds, 60);
    assert.deepEqual(c.cors?.allowHeaders, []);
    const [a, b] = c.upstreams;
    assert.deepEqual(a.discovery, { kind: "dns", host: "a.default.svc", port: 50051, refreshMs: 2000, srv: undefined, servers: undefined });
    assert.equal(a.timeoutMs, 90_000);
    assert.equal(a.retry.budgetPercent, 10);
    assert.equal(a.health?.intervalMs, 2000);
    assert.equal(a.health?.unhealthyThreshold, 3);
    assert.equal(a.outlier.baseEjectionMs, 30_000);
    assert.deepEqual(b.discovery, {
      kind: "kubernetes", namespace: undefined, service: "b", port: "grpc",
      kubeconfig: "/etc/grpc-edge/kube.yaml", api: "endpointslices", zone: "z1",
    } as never);
  });

  test("dns may name its own name servers", () => {
    const c = parseConfig(
      minimal.replace(`{ static: ["127.0.0.1:50051"] }`, `{ dns: { host: m.svc, port: 5, servers: ["10.96.0.10", "127.0.0.1:5353", "[::1]:53"] } }`),
      { baseDir: base },
    );
    const d = c.upstreams[0].discovery;
    assert.ok(d.kind === "dns");
    assert.deepEqual(d.servers, ["10.96.0.10", "127.0.0.1:5353", "[::1]:53"]);
  });

  test("workers: a count, or auto for one per CPU", () => {
    assert.equal(parseConfig(minimal + "workers: 3\n", { baseDir: base }).workers, 3);
    assert.equal(parseConfig(minimal + "workers: auto\n", { baseDir: base }).workers, availableParallelism());
    assert.equal(parseConfig(minimal, { baseDir: base }).workers, availableParallelism(), "auto by default");
  });

  test("dns with srv needs no port", () => {
    const c = parseConfig(minimal.replace(`{ static: ["127.0.0.1:50051"] }`, `{ dns: { srv: "_grpc._tcp.m.svc" } }`), { baseDir: base });
    assert.equal(c.upstreams[0].discovery.kind, "dns");
  });
});

describe("parseConfig: invalid files name the key", () => {
  const up = (extra: string) => minimal + extra.replace(/^/gm, "    ");
  const cases: Array<[string, string, string, RegExp?]> = [
    ["unknown top-level key", minimal + "listn: x\n", "listn", /unknown key/],
    ["unknown nested key", up("retry: { attemps: 2 }"), "upstreams[0].retry.attemps"],
    ["an unknown key is named before the other issues it explains", `listen_typo: 1\ndescriptors: [x]\nupstreams: []\n`, "listen_typo", /unknown key/],
    ["missing descriptors", minimal.replace(`descriptors: ["set.binpb"]`, ""), "descriptors", /required/],
    ["empty upstreams", `descriptors: [a]\nupstreams: []\n`, "upstreams", /at least one/],
    ["two discovery kinds", minimal.replace(`{ static: ["127.0.0.1:50051"] }`, `{ static: ["a:1"], dns: { host: h, port: 1 } }`), "upstreams[0].discovery", /static and dns/],
    ["no discovery kind", minimal.replace(`{ static: ["127.0.0.1:50051"] }`, `{}`), "upstreams[0].discovery", /exactly one/],
    ["bad balancer", up("balancer: random"), "upstreams[0].balancer", /pick_first.*"random"/],
    ["bad duration", up("timeout: 15 parsecs"), "upstreams[0].timeout", /invalid duration/],
    ["zero timeout", up("timeout: 0s"), "upstreams[0].timeout", /greater than zero/],
    ["bad host:port", minimal.replace(`"127.0.0.1:50051"`, `"nohost"`), "upstreams[0].discovery.static[0]", /host:port/],
    ["port out of range", minimal + `listen: "127.0.0.1:70000"\n`, "listen", /0-65535/],
    ["duplicate upstream", minimal + `  - name: mirror\n    services: [x.v1.X]\n    discovery: { static: ["a:1"] }\n`, "upstreams[1].name", /duplicate/],
    ["service in two upstreams", minimal + `  - name: other\n    services: [mirror.v1.Mirror]\n    discovery: { static: ["a:1"] }\n`, "upstreams[1].services[0]", /already served/],
    ["bad service name", minimal.replace(`"mirror.v1.Mirror"`, `"Mirror"`), "upstreams[0].services[0]", /fully-qualified/],
    ["a name server that is not an IP", minimal.replace(`{ static: ["127.0.0.1:50051"] }`, `{ dns: { host: h, port: 1, servers: ["dns.example"] } }`), "upstreams[0].discovery.dns.servers[0]", /IP address/],
    ["bad workers", minimal + "workers: 0\n", "workers", />=1|1 to 256/],
    ["unknown retry code", up("retry: { on: [unavailable, flaky] }"), "upstreams[0].retry.on[1]", /"flaky"/],
    ["wrong type", minimal + "json: { strict: yes please }\n", "json.strict"],
    ["YAML syntax error", "listen: [unclosed\n", "(file)", /invalid YAML at line/],
  ];
  for (const [name, text, key, message] of cases) {
    test(name, () => {
      const e = errorOf(text);
      assert.equal(e.key, key, e.message);
      if (message) assert.match(e.message, message);
      assert.ok(e.message.startsWith(`config: ${key}: `));
    });
  }
});

describe("value syntaxes", () => {
  test("durations", () => {
    const table: Array<[string, number]> = [
      ["15s", 15_000], ["250ms", 250], ["1m30s", 90_000], ["1.5s", 1500], ["2h", 7_200_000], ["100us", 0.1], ["0", 0],
    ];
    for (const [text, ms] of table) assert.equal(parseDuration(text), ms, text);
    for (const bad of ["", "15", "15 s", "s", "1d", "-1s", "1.s"]) assert.throws(() => parseDuration(bad), /invalid duration/, bad);
  });
  test("sizes", () => {
    assert.equal(parseByteSize("4MiB"), 4194304);
    assert.equal(parseByteSize("1MB"), 1e6);
    assert.equal(parseByteSize("512"), 512);
    for (const bad of ["", "4 parsecs", "0", "-1"]) assert.throws(() => parseByteSize(bad), bad);
  });
  test("host:port", () => {
    assert.deepEqual(parseHostPort("[::1]:8080"), { host: "::1", port: 8080 });
    assert.deepEqual(parseHostPort("svc.ns:1"), { host: "svc.ns", port: 1 });
    for (const bad of ["8080", ":8080", "::1:80", "a:b", "a:99999"]) assert.throws(() => parseHostPort(bad), bad);
  });
  test("property: formatted durations parse back to their value", () => {
    fc.assert(
      fc.property(fc.nat(1000), fc.nat(59), fc.nat(59), fc.nat(999), (h, m, s, ms) => {
        assert.equal(parseDuration(`${h}h${m}m${s}s${ms}ms`), ((h * 60 + m) * 60 + s) * 1000 + ms);
      }),
    );
  });
});
