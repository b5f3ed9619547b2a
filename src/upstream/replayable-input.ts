/**
 * The request stream of a streaming call, readable again by a retry. A call that failed before
 * reaching its backend may already have pulled messages from the client; they are kept until
 * an attempt is committed (its response started), so the next attempt starts from the first
 * message. After the commit only the committed reader remains and nothing is kept behind it.
 */
export class ReplayableInput<T> {
  readonly #source: AsyncIterator<T>;
  readonly #maxRecorded: number;
  /** Messages from absolute index `#base` on. */
  #items: T[] = [];
  #base = 0;
  #pull: Promise<void> | undefined;
  #ended = false;
  #error: { readonly reason: unknown } | undefined;
  #committed: Cursor<T> | undefined;
  #closed = false;

  /** More than `maxRecorded` messages pulled before the commit make the input not replayable. */
  constructor(source: AsyncIterable<T>, maxRecorded = 64) {
    this.#source = source[Symbol.asyncIterator]();
    this.#maxRecorded = maxRecorded;
  }

  /** Whether a new attempt can still see the whole input from its first message. */
  get replayable(): boolean {
    return this.#committed === undefined && this.#base === 0 && this.#items.length <= this.#maxRecorded;
  }

  /** A reader from the first message, for one attempt. */
  reader(): AsyncIterable<T> {
    return new Cursor(this);
  }

  /** The attempt reading with `reader` is the one: stop keeping messages for others. */
  commit(reader: AsyncIterable<T>): void {
    this.#committed = reader as Cursor<T>;
  }

  /** No attempt will read any more (all failed): the client's stream is closed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#items = [];
    if (!this.#ended) Promise.resolve(this.#source.return?.()).catch(() => {});
  }

  /** @internal The message at `index`, pulling from the source as needed. */
  async at(index: number, reader: Cursor<T>): Promise<IteratorResult<T>> {
    for (;;) {
      if (this.#committed !== undefined && reader !== this.#committed) return { value: undefined, done: true };
      const offset = index - this.#base;
      if (offset < this.#items.length) {
        const value = this.#items[offset];
        if (reader === this.#committed) this.#forget(index + 1);
        return { value, done: false };
      }
      if (this.#error !== undefined) throw this.#error.reason;
      if (this.#ended || this.#closed) return { value: undefined, done: true };
      await (this.#pull ??= this.#pullOne());
    }
  }

  /** @internal A reader is done before the end of the input. */
  abandon(reader: Cursor<T>): void {
    if (reader === this.#committed) this.close();
  }

  async #pullOne(): Promise<void> {
    try {
      const next = await this.#source.next();
      if (next.done === true) this.#ended = true;
      else if (!this.#closed) this.#items.push(next.value);
    } catch (reason) {
      this.#error = { reason };
    } finally {
      this.#pull = undefined;
    }
  }

  /** Drops what the committed reader has passed (in batches, so the cost stays linear). */
  #forget(upTo: number): void {
    const passed = upTo - this.#base;
    if (passed < 32 && passed < this.#items.length) return;
    this.#items.splice(0, passed);
    this.#base = upTo;
  }
}

class Cursor<T> implements AsyncIterableIterator<T> {
  readonly #input: ReplayableInput<T>;
  #index = 0;
  #done = false;

  constructor(input: ReplayableInput<T>) {
    this.#input = input;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<T>> {
    if (this.#done) return { value: undefined, done: true };
    const result = await this.#input.at(this.#index, this);
    if (result.done === true) this.#done = true;
    else this.#index++;
    return result;
  }

  async return(): Promise<IteratorResult<T>> {
    if (!this.#done) {
      this.#done = true;
      this.#input.abandon(this);
    }
    return { value: undefined, done: true };
  }
}
