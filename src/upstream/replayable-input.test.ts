import { test } from "node:test";
import assert from "node:assert/strict";
import { ReplayableInput } from "./replayable-input.ts";

/** A source that yields when told to, and records whether it was closed early. */
function controlledSource<T>() {
  const waiting: Array<(r: IteratorResult<T>) => void> = [];
  const ready: IteratorResult<T>[] = [];
  let returned = false;
  const source: AsyncIterable<T> = {
    [Symbol.asyncIterator]: () => ({
      next: () =>
        ready.length > 0 ? Promise.resolve(ready.shift()!) : new Promise<IteratorResult<T>>((r) => waiting.push(r)),
      return: async () => {
        returned = true;
        return { value: undefined, done: true };
      },
    }),
  };
  const push = (r: IteratorResult<T>) => (waiting.length > 0 ? waiting.shift()!(r) : ready.push(r));
  return {
    source,
    send: (value: T) => push({ value, done: false }),
    end: () => push({ value: undefined, done: true }),
    get returned() {
      return returned;
    },
  };
}

async function* values<T>(...items: T[]) {
  yield* items;
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const v of iterable) out.push(v);
  return out;
}

test("every reader sees the input from its first message", async () => {
  const input = new ReplayableInput(values(1, 2, 3));
  const first = input.reader()[Symbol.asyncIterator]();
  assert.deepEqual(await first.next(), { value: 1, done: false });
  assert.deepEqual(await first.next(), { value: 2, done: false });
  await first.return!();
  const second = input.reader();
  input.commit(second);
  assert.deepEqual(await collect(second), [1, 2, 3]);
});

test("a message pulled for an abandoned reader goes to the next one", async () => {
  const src = controlledSource<string>();
  const input = new ReplayableInput(src.source);
  const first = input.reader()[Symbol.asyncIterator]();
  const pending = first.next();
  void first.return!();
  const second = input.reader();
  input.commit(second);
  const got = collect(second);
  src.send("a");
  src.send("b");
  src.end();
  assert.deepEqual(await got, ["a", "b"]);
  assert.deepEqual(await pending, { value: undefined, done: true }, "the abandoned reader gets nothing");
  assert.equal(src.returned, false, "the input ended on its own");
});

test("only the committed reader closes the source when it stops early", async () => {
  const src = controlledSource<number>();
  const input = new ReplayableInput(src.source);
  const loser = input.reader()[Symbol.asyncIterator]();
  await loser.return!();
  assert.equal(src.returned, false);
  const winnerReader = input.reader();
  const winner = winnerReader[Symbol.asyncIterator]();
  input.commit(winnerReader);
  src.send(1);
  assert.deepEqual(await winner.next(), { value: 1, done: false });
  assert.deepEqual(await loser.next(), { value: undefined, done: true });
  await winner.return!();
  assert.equal(src.returned, true);
});

test("close() ends the source and every reader", async () => {
  const src = controlledSource<number>();
  const input = new ReplayableInput(src.source);
  input.close();
  assert.equal(src.returned, true);
  assert.deepEqual(await collect(input.reader()), []);
});

test("the input stops being replayable past its limit or once committed", async () => {
  const input = new ReplayableInput(values(1, 2, 3, 4), 3);
  const reader = input.reader()[Symbol.asyncIterator]();
  for (let i = 0; i < 3; i++) await reader.next();
  assert.equal(input.replayable, true);
  await reader.next();
  assert.equal(input.replayable, false);
  const other = new ReplayableInput(values(1));
  other.commit(other.reader());
  assert.equal(other.replayable, false);
});

test("a committed reader does not keep what it has read", async () => {
  const many = Array.from({ length: 1000 }, (_, i) => i);
  const input = new ReplayableInput(values(...many));
  const reader = input.reader();
  input.commit(reader);
  assert.deepEqual(await collect(reader), many);
});

test("a failing source fails every reader with its error", async () => {
  async function* failing() {
    yield 1;
    throw new Error("bad line");
  }
  const input = new ReplayableInput(failing());
  await assert.rejects(collect(input.reader()), /bad line/);
  await assert.rejects(collect(input.reader()), /bad line/);
});
