import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Code, ConnectError } from "@connectrpc/connect";
import { effectiveTimeoutMs, parseGrpcTimeout } from "./timeout.ts";

describe("parseGrpcTimeout", () => {
  const cases: Array<[string, number]> = [
    ["1H", 3_600_000],
    ["2M", 120_000],
    ["5S", 5_000],
    ["100m", 100],
    ["0m", 0],
    ["3000u", 3],
    ["1500u", 2],
    ["2u", 1],
    ["30n", 1],
    ["1000000n", 1],
    ["1000001n", 2],
    ["99999999S", 99_999_999_000],
    ["00000007m", 7],
  ];
  for (const [value, ms] of cases) {
    test(`${value} → ${ms} ms`, () => assert.equal(parseGrpcTimeout(value), ms));
  }

  test("malformed values are InvalidArgument", () => {
    for (const bad of ["", "m", "1", "100", "123456789m", "1x", "-1m", "1.5S", " 1m", "1m ", "1s", "1h", "1 m"]) {
      assert.throws(
        () => parseGrpcTimeout(bad),
        (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && e.rawMessage.includes("grpc-timeout"),
        JSON.stringify(bad),
      );
    }
  });

  test("any string parses to a non-negative whole number of ms or throws InvalidArgument", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.tuple(fc.nat(99_999_999), fc.constantFrom(..."HMSmunx")).map(([n, u]) => `${n}${u}`)), (value) => {
        try {
          const ms = parseGrpcTimeout(value);
          assert.ok(Number.isSafeInteger(ms) && ms >= 0);
        } catch (e) {
          assert.ok(e instanceof ConnectError && e.code === Code.InvalidArgument);
        }
      }),
    );
  });
});

describe("effectiveTimeoutMs", () => {
  test("no header: the upstream default", () => {
    assert.equal(effectiveTimeoutMs(15_000, null), 15_000);
    assert.equal(effectiveTimeoutMs(15_000, undefined), 15_000);
  });

  test("the header may shorten the deadline, never extend it", () => {
    assert.equal(effectiveTimeoutMs(15_000, "200m"), 200);
    assert.equal(effectiveTimeoutMs(15_000, "1M"), 15_000);
  });

  test("a malformed header is InvalidArgument", () => {
    assert.throws(() => effectiveTimeoutMs(15_000, "soon"), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument);
  });
});
