/**
 * Pick cost of each balancer policy with 10 and with 10,000 endpoints: ns per pick and the
 * ratio (≈1 means the cost does not grow with the number of endpoints). Two sets: every
 * endpoint healthy, and 10% of them out (ejected or unhealthy), with the pool's in-flight
 * bookkeeping around every pick.
 *
 *   node --experimental-transform-types bench/balancer.ts [--picks 1000000]
 */
import { createPolicy, type BalancerName, type Endpoint } from "../src/upstream/balancer.ts";

const argv = globalThis.process?.argv.slice(2) ?? [];
const picksArg = argv.indexOf("--picks");
const picks = picksArg >= 0 ? Number(argv[picksArg + 1]) : 1_000_000;

interface BenchEndpoint extends Endpoint {
  inFlight: number;
  latencyMs: number;
  healthy: boolean;
}

function endpointSet(n: number, outShare: number): BenchEndpoint[] {
  return Array.from({ length: n }, (_, i) => ({
    key: `10.0.${Math.floor(i / 256)}.${i % 256}:50051`,
    inFlight: i % 7,
    latencyMs: 1 + (i % 13),
    // Spread the unhealthy ones evenly so pick_first and round_robin meet them too.
    healthy: outShare === 0 || i % Math.round(1 / outShare) !== 1,
  }));
}

/** ns per pick, best of 3 runs. */
function measure(name: BalancerName, n: number, outShare: number): number {
  const policy = createPolicy<BenchEndpoint>(name);
  policy.update(endpointSet(n, outShare));
  let best = Infinity;
  for (let run = 0; run < 3; run++) {
    const started = performance.now();
    for (let i = 0; i < picks; i++) {
      const e = policy.pick({})!;
      e.inFlight++;
      e.inFlight--;
    }
    best = Math.min(best, ((performance.now() - started) * 1e6) / picks);
  }
  return best;
}

const policies: BalancerName[] = ["pick_first", "round_robin", "least_request", "peak_ewma"];
console.log(`${picks.toLocaleString("en")} picks per run, best of 3`);
console.log("| policy | endpoints out | ns/pick, 10 endpoints | ns/pick, 10,000 endpoints | ratio |");
console.log("| --- | --- | --- | --- | --- |");
for (const outShare of [0, 0.1]) {
  for (const name of policies) {
    measure(name, 10, outShare); // warm-up: let the JIT settle on this policy
    const small = measure(name, 10, outShare);
    const large = measure(name, 10_000, outShare);
    const out = `${outShare * 100}%`;
    console.log(`| ${name} | ${out} | ${small.toFixed(1)} | ${large.toFixed(1)} | ${(large / small).toFixed(2)} |`);
  }
}
