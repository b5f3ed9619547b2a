import { test } from "node:test";
import assert from "node:assert/strict";
import { OutlierDetector } from "./outlier.ts";

function clock() {
  let now = 1_000;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const options = { consecutiveFailures: 3, baseEjectionMs: 1000, maxEjectionMs: 3500, maxEjectionPercent: 50 };

test("consecutive Unavailable answers eject; a success in between resets the streak", () => {
  const c = clock();
  const d = new OutlierDetector(options, c.now);
  const [a] = [d.add(), d.add()];
  assert.equal(d.failure(a), false);
  assert.equal(d.failure(a), false);
  d.success(a);
  assert.equal(d.failure(a), false);
  assert.equal(d.failure(a), false);
  assert.equal(d.isEjected(a), false);
  assert.equal(d.failure(a), true);
  assert.equal(d.isEjected(a), true);
  assert.equal(a.ejectedUntil, 2_000);
});

test("an ejected endpoint comes back after its time, and repeated ejections last longer, up to the cap", () => {
  const c = clock();
  const d = new OutlierDetector(options, c.now);
  const [a] = [d.add(), d.add()];
  const durations: number[] = [];
  for (let i = 0; i < 5; i++) {
    assert.equal(d.connectFailure(a), true);
    durations.push(a.ejectedUntil - c.now());
    c.advance(a.ejectedUntil - c.now() - 1);
    assert.equal(d.isEjected(a), true, "still out 1 ms before its time");
    c.advance(1);
    assert.equal(d.isEjected(a), false, "back at its time");
  }
  assert.deepEqual(durations, [1000, 2000, 3000, 3500, 3500]);
  assert.equal(a.ejections, 5);
});

test("the multiplier wears off while the endpoint stays in", () => {
  const c = clock();
  const d = new OutlierDetector(options, c.now);
  const [a] = [d.add(), d.add()];
  d.connectFailure(a);
  c.advance(1000);
  d.connectFailure(a);
  assert.equal(a.ejectedUntil - c.now(), 2000);
  c.advance(2000 + 2 * 1000);
  d.connectFailure(a);
  assert.equal(a.ejectedUntil - c.now(), 1000, "two healthy base periods took two levels off");
});

test("at most maxEjectionPercent of the endpoints are out at once (rounded down); none of one", () => {
  const c = clock();
  const d = new OutlierDetector(options, c.now);
  const records = [d.add(), d.add(), d.add(), d.add(), d.add()];
  const ejected = records.map((r) => d.connectFailure(r));
  assert.deepEqual(ejected, [true, true, false, false, false]);
  assert.deepEqual(d.ejectedCount(), { ejected: 2, limit: 2 });
  c.advance(1000);
  assert.equal(d.connectFailure(records[4]), true, "a slot freed when the first ejections ended");
  d.remove(records[0]);
  d.remove(records[1]);
  d.remove(records[2]);
  d.remove(records[3]);
  const single = new OutlierDetector(options, c.now);
  const only = single.add();
  assert.equal(single.connectFailure(only), false, "one endpoint is never ejected: nothing would be left");
});

test("failures past the threshold while the cap holds eject as soon as there is room", () => {
  const c = clock();
  const d = new OutlierDetector({ ...options, consecutiveFailures: 2 }, c.now);
  const [a, b] = [d.add(), d.add()];
  d.connectFailure(a);
  assert.equal(d.failure(b), false);
  assert.equal(d.failure(b), false, "the cap (1 of 2) is taken by a");
  c.advance(1000);
  assert.equal(d.failure(b), true);
});
