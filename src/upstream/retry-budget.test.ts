import { test } from "node:test";
import assert from "node:assert/strict";
import { RetryBudget } from "./retry-budget.ts";

function clock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function retriesAllowed(budget: RetryBudget, max = 10_000): number {
  let n = 0;
  while (n < max && budget.tryRetry()) n++;
  return n;
}

test("retries are at most percent% of the requests plus the minimum", () => {
  const c = clock();
  const budget = new RetryBudget({ percent: 20, minRetries: 3, windowMs: 10_000 }, c.now);
  for (let i = 0; i < 100; i++) budget.recordRequest();
  assert.equal(retriesAllowed(budget), 23);
  for (let i = 0; i < 10; i++) budget.recordRequest();
  assert.equal(retriesAllowed(budget), 2, "ten more requests buy two more retries");
});

test("with no traffic the minimum still allows a few retries", () => {
  const c = clock();
  const budget = new RetryBudget({ percent: 20, minRetries: 3, windowMs: 10_000 }, c.now);
  budget.recordRequest();
  assert.equal(retriesAllowed(budget), 3);
});

test("the window slides: old requests and old retries stop counting", () => {
  const c = clock();
  const budget = new RetryBudget({ percent: 50, minRetries: 0, windowMs: 1000 }, c.now);
  for (let i = 0; i < 10; i++) budget.recordRequest();
  assert.equal(retriesAllowed(budget), 5);
  c.advance(500);
  assert.equal(retriesAllowed(budget), 0, "half a window later both still count");
  c.advance(600);
  assert.deepEqual(budget.totals(), { requests: 0, retries: 0 });
  assert.equal(retriesAllowed(budget), 0, "no requests in the window, no minimum: no retry");
  for (let i = 0; i < 4; i++) budget.recordRequest();
  assert.equal(retriesAllowed(budget), 2);
});

test("a fleet that always fails: traffic stays within (1 + percent) × requests + minimum", () => {
  const c = clock();
  const budget = new RetryBudget({ percent: 20, minRetries: 10, windowMs: 10_000 }, c.now);
  let sent = 0;
  for (let i = 0; i < 1000; i++) {
    c.advance(7);
    budget.recordRequest();
    sent++;
    for (let attempt = 1; attempt < 5 && budget.tryRetry(); attempt++) sent++;
  }
  // 1000 requests over 7 s, all in one window.
  assert.ok(sent <= 1000 * 1.2 + 10, `${sent} attempts`);
  assert.ok(sent >= 1000 * 1.2, `${sent} attempts: the budget is used`);
});
