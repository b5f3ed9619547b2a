/**
 * The pure parts of Kubernetes discovery: zone preference and option checks. The watch itself
 * is tested against the API stand-in in tests/k8s/kubernetes-discovery.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ConnectError } from "@connectrpc/connect";
import { kubernetesDiscovery, preferZone } from "./kubernetes.ts";
import type { DiscoveredEndpoint } from "./types.ts";

/** `10.0.0.1 a`: ready in zone a; `!` not ready; `~` terminating; `[a,b]` hints for zones a and b. */
function endpoint(spec: string): DiscoveredEndpoint {
  const [address, ...flags] = spec.split(" ");
  const zone = flags.find((f) => /^[a-z]$/.test(f));
  const hints = flags.find((f) => f.startsWith("["))?.slice(1, -1).split(",");
  const ready = !flags.includes("!") && !flags.includes("~");
  return {
    address,
    port: 80,
    ready,
    serving: ready || flags.includes("~"),
    terminating: flags.includes("~"),
    ...(zone ? { zone } : {}),
    ...(hints ? { forZones: hints } : {}),
  };
}

describe("preferZone", () => {
  const cases: [what: string, endpoints: string[], zone: string | undefined, chosen: string[]][] = [
    ["no zone of its own: everything", ["1 a", "2 b"], undefined, ["1", "2"]],
    ["same-zone ready endpoints only", ["1 a", "2 b", "3 a"], "a", ["1", "3"]],
    ["nothing ready in the zone: everything", ["1 a !", "2 b"], "a", ["1", "2"]],
    ["terminating in the zone does not count", ["1 a ~", "2 b"], "a", ["1", "2"]],
    ["no endpoint in the zone: everything", ["1 b", "2 c"], "a", ["1", "2"]],
    ["endpoints without zones: everything", ["1", "2"], "a", ["1", "2"]],
    ["nothing ready at all: everything, for the pool's serving fallback", ["1 a ~", "2 b !"], "a", ["1", "2"]],
    ["hints on every ready endpoint decide", ["1 a [b]", "2 b [a]", "3 b [b]"], "a", ["2"]],
    ["hints may name several zones", ["1 a [a,b]", "2 b [b]"], "b", ["1", "2"]],
    ["hints on some endpoints only: ignored", ["1 a [b]", "2 b", "3 a"], "a", ["1", "3"]],
    ["hints naming no endpoint for the zone: by zone", ["1 a [b]", "2 b [b]"], "a", ["1"]],
    ["hints of not-ready endpoints do not count", ["1 a", "2 b ! [a]"], "a", ["1"]],
    ["empty set", [], "a", []],
  ];
  for (const [what, specs, zone, chosen] of cases) {
    test(what, () => {
      assert.deepEqual(preferZone(specs.map(endpoint), zone).map((e) => e.address), chosen);
    });
  }

  test("always returns a non-empty subset of a non-empty input, with a ready endpoint whenever the input has one", () => {
    const arbitraryEndpoint = fc
      .record({
        n: fc.integer({ min: 1, max: 50 }),
        zone: fc.option(fc.constantFrom("a", "b", "c"), { nil: undefined }),
        state: fc.constantFrom("", "!", "~"),
        hints: fc.option(fc.subarray(["a", "b", "c"], { minLength: 1 }), { nil: undefined }),
      })
      .map(({ n, zone, state, hints }) => endpoint([`${n}`, zone ?? "", state, hints ? `[${hints}]` : ""].join(" ")));
    fc.assert(
      fc.property(fc.array(arbitraryEndpoint, { minLength: 1, maxLength: 8 }), fc.constantFrom("a", "b", "x"), (endpoints, zone) => {
        const chosen = preferZone(endpoints, zone);
        assert.ok(chosen.length > 0);
        assert.ok(chosen.every((e) => endpoints.includes(e)));
        if (endpoints.some((e) => e.ready && !e.terminating)) assert.ok(chosen.some((e) => e.ready && !e.terminating));
      }),
    );
  });
});

describe("kubernetesDiscovery options", () => {
  const base = { namespace: "default", service: "mirror", port: "grpc" as string | number };
  const invalid: [what: string, options: Record<string, unknown>, message: RegExp][] = [
    ["an empty namespace", { namespace: "" }, /namespace is empty/],
    ["an empty service", { service: "" }, /service is empty/],
    ["port 0", { port: 0 }, /port 0 is neither/],
    ["port 70000", { port: "70000" }, /port "70000" is neither/],
    ["an empty port name", { port: "" }, /port "" is neither/],
    ["an unknown api", { api: "pods" }, /api must be endpointslices or endpoints/],
    ["a zero stall timeout", { stallTimeoutMs: 0 }, /stallTimeoutMs must be a positive number/],
    ["a backoff whose maximum is below its base", { backoff: { baseMs: 100, maxMs: 10 } }, /backoff.maxMs is less than backoff.baseMs/],
  ];
  for (const [what, options, message] of invalid) {
    test(`refuses ${what}`, () => {
      assert.throws(
        () => kubernetesDiscovery({ ...base, ...options } as Parameters<typeof kubernetesDiscovery>[0]),
        (e: unknown) => e instanceof ConnectError && message.test(e.message),
      );
    });
  }

  test("takes port names, numbers and numbers as text", () => {
    for (const port of ["grpc", "h2c-port", 50051, "50051"]) kubernetesDiscovery({ ...base, port });
  });

  test("knows its configured zone before it starts", () => {
    assert.equal(kubernetesDiscovery({ ...base, zone: "zone-a" }).zone, "zone-a");
    assert.equal(kubernetesDiscovery({ ...base, nodeName: "node-1" }).zone, undefined);
  });
});
