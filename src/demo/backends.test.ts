import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { rejection } from "../../tests/support/wait.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type CallOptions } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { packageRoot } from "../paths.ts";
import {
  LibraryStore,
  seededLibraryStore,
  startDemoBackends,
  type BookChange,
  type BookFields,
  type DemoBackends,
} from "./backends.ts";

const dune: BookFields = { title: "Dune", author: "Frank Herbert", pages: 412, tags: ["classic", "sf"] };

/** A clock that moves one second per reading, so update_time bumps are visible. */
function tickingClock(start = Date.UTC(2024, 0, 1)) {
  let t = start;
  return () => new Date((t += 1000));
}

function codeOf(fn: () => unknown): Code | undefined {
  try {
    fn();
  } catch (e) {
    return ConnectError.from(e).code;
  }
  return undefined;
}

function violationsOf(e: unknown) {
  return ConnectError.from(e).findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}

/** Asserts `fn` throws INVALID_ARGUMENT with a BadRequest naming exactly `fields`. */
function assertBadRequest(fn: () => unknown, fields: string[]) {
  assert.throws(fn, (e) => {
    assert.equal(ConnectError.from(e).code, Code.InvalidArgument);
    assert.deepEqual(violationsOf(e), fields);
    return true;
  });
}

describe("LibraryStore", () => {
  test("the seeded shelf holds books 1 and 2 and several classics", () => {
    const store = seededLibraryStore();
    assert.equal(store.get("shelves/1/books/1").title, "Pride and Prejudice");
    assert.equal(store.get("shelves/1/books/2").title, "Moby-Dick");
    assert.ok(store.list("shelves/1", { tags: ["classic"] }).books.length >= 2);
    assert.ok(store.get("shelves/1/books/1").createTime instanceof Date);
  });

  test("get: NOT_FOUND names the book; a malformed name is INVALID_ARGUMENT", () => {
    const store = new LibraryStore();
    assert.throws(() => store.get("shelves/1/books/404"), (e) => {
      assert.equal(ConnectError.from(e).code, Code.NotFound);
      assert.match(ConnectError.from(e).rawMessage, /shelves\/1\/books\/404/);
      return true;
    });
    assertBadRequest(() => store.get("books/1"), ["name"]);
  });

  test("create: name from parent and id, a random id when empty, times set", () => {
    const store = new LibraryStore({ now: tickingClock(), newId: () => "abc123" });
    const explicit = store.create("shelves/1", "dune", dune);
    assert.equal(explicit.name, "shelves/1/books/dune");
    assert.deepEqual(explicit.tags, dune.tags);
    assert.equal(explicit.archived, false);
    assert.equal(explicit.createTime.getTime(), explicit.updateTime.getTime());
    assert.equal(store.create("shelves/1", "", dune).name, "shelves/1/books/abc123");
  });

  test("create: a taken random id is drawn again, a taken book_id is ALREADY_EXISTS", () => {
    const ids = ["x", "x", "y"];
    const store = new LibraryStore({ newId: () => ids.shift()! });
    assert.equal(store.create("shelves/1", "", dune).name, "shelves/1/books/x");
    assert.equal(store.create("shelves/1", "", dune).name, "shelves/1/books/y");
    assert.equal(codeOf(() => store.create("shelves/1", "x", dune)), Code.AlreadyExists);
  });

  test("create: validation errors carry a BadRequest per field", () => {
    const store = new LibraryStore();
    assertBadRequest(() => store.create("shelves/1", "", { ...dune, title: " " }), ["book.title"]);
    assertBadRequest(() => store.create("shelves/1", "Bad_Id", { ...dune, title: "", pages: -1 }), [
      "book.title",
      "book.pages",
      "book_id",
    ]);
    assertBadRequest(() => store.create("shelves/1", "a".repeat(64), dune), ["book_id"]);
    assertBadRequest(() => store.create("shelf/1", "", dune), ["parent"]);
  });

  describe("update (AIP-134)", () => {
    const sent = { title: "New", author: "", pages: 0, tags: [] };
    const setup = () => {
      const store = new LibraryStore({ now: tickingClock() });
      return { store, before: store.create("shelves/1", "dune", dune) };
    };

    test("applies only the masked paths and bumps update_time", () => {
      const { store, before } = setup();
      const after = store.update(before.name, { ...sent, author: "ignored" }, ["title"]);
      assert.equal(after.title, "New");
      assert.equal(after.author, dune.author);
      assert.equal(after.createTime, before.createTime);
      assert.ok(after.updateTime > before.updateTime);
      assert.equal(store.get(before.name).title, "New");
    });

    test("a masked field may be cleared; output-only paths are ignored", () => {
      const { store, before } = setup();
      const after = store.update(before.name, sent, ["tags", "pages", "create_time", "served_by"]);
      assert.deepEqual(after.tags, []);
      assert.equal(after.pages, 0);
      assert.equal(after.title, dune.title);
      assert.equal(after.createTime, before.createTime);
    });

    test("an empty mask means the populated fields; * means every mutable field", () => {
      const { store, before } = setup();
      const patched = store.update(before.name, { title: "", author: "", pages: 500, tags: [] }, []);
      assert.deepEqual({ ...patched, updateTime: 0 }, { ...before, pages: 500, updateTime: 0 });
      const replaced = store.update(before.name, { ...sent, title: "Only" }, ["*"]);
      assert.deepEqual([replaced.title, replaced.author, replaced.pages, replaced.tags], ["Only", "", 0, []]);
    });

    test("errors: unknown path, empty title in the mask, missing, archived", () => {
      const { store, before } = setup();
      assertBadRequest(() => store.update(before.name, sent, ["title", "colour"]), ["update_mask"]);
      assertBadRequest(() => store.update(before.name, { ...sent, title: "" }, ["title"]), ["book.title"]);
      assertBadRequest(() => store.update("", sent, ["title"]), ["book.name"]);
      assert.equal(codeOf(() => store.update("shelves/1/books/none", sent, ["title"])), Code.NotFound);
      store.archive(before.name);
      assert.equal(codeOf(() => store.update(before.name, sent, ["title"])), Code.FailedPrecondition);
      assert.equal(store.get(before.name).title, dune.title);
    });
  });

  test("delete and archive", () => {
    const store = new LibraryStore();
    const book = store.create("shelves/1", "b", dune);
    assert.equal(store.archive(book.name).archived, true);
    assert.equal(codeOf(() => store.archive(book.name)), Code.FailedPrecondition);
    store.delete(book.name);
    assert.equal(codeOf(() => store.get(book.name)), Code.NotFound);
    assert.equal(codeOf(() => store.delete(book.name)), Code.NotFound);
    assert.equal(codeOf(() => store.archive(book.name)), Code.NotFound);
  });

  describe("list", () => {
    const store = new LibraryStore();
    for (let i = 0; i < 120; i++) {
      store.create("shelves/big", `b${i}`, { ...dune, tags: i % 3 === 0 ? ["three", "x"] : ["x"] });
    }
    store.create("shelves/other", "elsewhere", dune);

    test("page size: default 10, capped at 100, negative rejected", () => {
      assert.equal(store.list("shelves/big").books.length, 10);
      assert.equal(store.list("shelves/big", { pageSize: 500 }).books.length, 100);
      assert.equal(store.list("shelves/big", { pageSize: 7 }).books.length, 7);
      assertBadRequest(() => store.list("shelves/big", { pageSize: -1 }), ["page_size"]);
    });

    test("page tokens walk the whole shelf once, the last page has none", () => {
      const seen: string[] = [];
      let pageToken = "";
      for (let pages = 0; pages < 20; pages++) {
        const page = store.list("shelves/big", { pageSize: 50, pageToken });
        seen.push(...page.books.map((b) => b.name));
        pageToken = page.nextPageToken;
        if (pageToken === "") break;
        assert.match(pageToken, /^[A-Za-z0-9_-]+$/, "safe to paste into a query string");
      }
      assert.equal(pageToken, "");
      assert.equal(seen.length, 120);
      assert.equal(new Set(seen).size, 120);
      assert.ok(seen.every((n) => n.startsWith("shelves/big/books/")));
    });

    test("the tags filter keeps books carrying every tag", () => {
      const page = store.list("shelves/big", { pageSize: 100, tags: ["x", "three"] });
      assert.equal(page.books.length, 40);
      assert.equal(page.nextPageToken, "");
      assert.equal(store.list("shelves/big", { tags: ["x", "nope"] }).books.length, 0);
    });

    test("a bad token, or one from another query, is INVALID_ARGUMENT", () => {
      const { nextPageToken } = store.list("shelves/big", { tags: ["x"] });
      assert.notEqual(nextPageToken, "");
      assert.equal(store.list("shelves/big", { tags: ["x"], pageToken: nextPageToken }).books[0].name, "shelves/big/books/b10");
      assertBadRequest(() => store.list("shelves/big", { pageToken: nextPageToken }), ["page_token"]);
      assertBadRequest(() => store.list("shelves/other", { tags: ["x"], pageToken: nextPageToken }), ["page_token"]);
      for (const pageToken of ["%%%", btoa("not json"), btoa('{"offset":-1}'), btoa("null")]) {
        assertBadRequest(() => store.list("shelves/big", { pageToken }), ["page_token"]);
      }
      assertBadRequest(() => store.list("shelves/big/books/b1"), ["parent"]);
    });
  });

  test("watch: the shelf's books now, then only that shelf's changes until stop()", () => {
    const store = new LibraryStore();
    store.create("shelves/1", "a", dune);
    const changes: BookChange[] = [];
    const watch = store.watch("shelves/1", (c) => changes.push(c));
    assert.deepEqual(watch.existing.map((b) => b.name), ["shelves/1/books/a"]);
    store.create("shelves/2", "elsewhere", dune);
    store.create("shelves/1", "b", dune);
    store.update("shelves/1/books/a", { ...dune, pages: 1 }, ["pages"]);
    store.archive("shelves/1/books/b");
    store.delete("shelves/1/books/a");
    assert.deepEqual(
      changes.map((c) => `${c.kind} ${c.book.name}`),
      ["CREATED shelves/1/books/b", "UPDATED shelves/1/books/a", "UPDATED shelves/1/books/b", "DELETED shelves/1/books/a"],
    );
    assert.equal(changes[3].book.pages, 1, "DELETED carries the last state");
    assert.equal(store.watcherCount, 1);
    watch.stop();
    assert.equal(store.watcherCount, 0);
    store.create("shelves/1", "c", dune);
    assert.equal(changes.length, 4);
  });
});

// ---------------------------------------------------------------------------------------------

type Json = Record<string, any>;
interface LibraryClient {
  getBook(req: Json, options?: CallOptions): Promise<Json>;
  listBooks(req: Json, options?: CallOptions): Promise<Json>;
  createBook(req: Json, options?: CallOptions): Promise<Json>;
  updateBook(req: Json, options?: CallOptions): Promise<Json>;
  deleteBook(req: Json, options?: CallOptions): Promise<Json>;
  archiveBook(req: Json, options?: CallOptions): Promise<Json>;
  watchBooks(req: Json, options?: CallOptions): AsyncIterable<Json>;
}

const registry = createFileRegistry(
  fromBinary(FileDescriptorSetSchema, readFileSync(join(packageRoot(), "gen", "demo.binpb"))),
);
const librarySchema = registry.getService("demo.library.v1.Library")!;
const eventKind = (number: number) => registry.getEnum("demo.library.v1.BookEvent.Kind")!.value[number]?.name;
const seconds = (t: Timestamp) => timestampDate(t).getTime() / 1000;

function clientFor(address: string): LibraryClient {
  const transport = createGrpcTransport({ baseUrl: `http://${address}` });
  return createClient(librarySchema, transport) as unknown as LibraryClient;
}


/** Polls `predicate` every 10 ms for up to 2 s. */
async function eventually(predicate: () => boolean, what: string) {
  for (let i = 0; i < 200 && !predicate(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(predicate(), what);
}

describe("startDemoBackends", () => {
  let store: LibraryStore;
  let backends: DemoBackends;
  let a: LibraryClient;
  let b: LibraryClient;
  const timeoutMs = 5000;

  before(async () => {
    store = seededLibraryStore();
    backends = await startDemoBackends(2, { store });
    [a, b] = backends.addresses.map(clientFor);
  });
  after(() => backends.stop());

  test("each backend listens on its own loopback port and names itself in served_by", async () => {
    assert.equal(backends.addresses.length, 2);
    assert.equal(new Set(backends.addresses).size, 2);
    for (const address of backends.addresses) assert.match(address, /^127\.0\.0\.1:\d+$/);
    const fromA = await a.getBook({ name: "shelves/1/books/1" }, { timeoutMs });
    const fromB = await b.getBook({ name: "shelves/1/books/1" }, { timeoutMs });
    assert.equal(fromA.servedBy, backends.addresses[0]);
    assert.equal(fromB.servedBy, backends.addresses[1]);
    assert.equal(fromA.title, "Pride and Prejudice");
    assert.ok(seconds(fromA.createTime) > 0 && seconds(fromA.updateTime) > 0);
    const list = await b.listBooks({ parent: "shelves/1", pageSize: 2, tags: ["classic"] }, { timeoutMs });
    assert.equal(list.servedBy, backends.addresses[1]);
    assert.equal(list.books.length, 2);
    assert.ok(list.books.every((book: Json) => book.servedBy === backends.addresses[1] && book.tags.includes("classic")));
    const rest = await a.listBooks({ parent: "shelves/1", pageSize: 100, tags: ["classic"], pageToken: list.nextPageToken });
    assert.ok(rest.books.every((book: Json) => !list.books.some((seen: Json) => seen.name === book.name)));
  });

  test("CRUD across backends on one shared store, with an update mask", async () => {
    const created = await a.createBook({ parent: "shelves/1", book: { title: "Dune", author: "Frank Herbert", pages: 412 } });
    assert.match(created.name, /^shelves\/1\/books\/[a-z0-9-]+$/);
    assert.equal((await b.getBook({ name: created.name })).title, "Dune");

    const patched = await b.updateBook({
      book: { name: created.name, title: "ignored", pages: 500 },
      updateMask: { paths: ["pages"] },
    });
    assert.equal(patched.pages, 500);
    assert.equal(patched.title, "Dune");
    assert.ok(seconds(patched.updateTime) >= seconds(created.updateTime));
    const implied = await a.updateBook({ book: { name: created.name, author: "F. Herbert" } });
    assert.deepEqual([implied.title, implied.author, implied.pages], ["Dune", "F. Herbert", 500]);

    const archived = await a.archiveBook({ name: created.name });
    assert.equal(archived.archived, true);
    assert.equal((await rejection(b.archiveBook({ name: created.name }))).code, Code.FailedPrecondition);
    assert.equal(
      (await rejection(b.updateBook({ book: { name: created.name, title: "x" }, updateMask: { paths: ["title"] } }))).code,
      Code.FailedPrecondition,
    );

    await b.deleteBook({ name: created.name });
    const gone = await rejection(a.getBook({ name: created.name }));
    assert.equal(gone.code, Code.NotFound);
    assert.match(gone.rawMessage, new RegExp(created.name));
    assert.equal((await rejection(a.deleteBook({ name: created.name }))).code, Code.NotFound);
  });

  test("errors reach the client with their codes and the BadRequest detail", async () => {
    const noTitle = await rejection(a.createBook({ parent: "shelves/1", book: { title: "" } }));
    assert.equal(noTitle.code, Code.InvalidArgument);
    assert.deepEqual(
      noTitle.findDetails(BadRequestSchema).map((d) => d.fieldViolations.map((v) => v.field)),
      [["book.title"]],
    );
    assert.equal((await rejection(a.createBook({ parent: "shelves/1", bookId: "1", book: { title: "T" } }))).code, Code.AlreadyExists);
    assert.equal((await rejection(a.listBooks({ parent: "shelves/1", pageToken: "garbage" }))).code, Code.InvalidArgument);
    assert.equal((await rejection(a.listBooks({ parent: "nope" }))).code, Code.InvalidArgument);
    const badMask = await rejection(a.updateBook({ book: { name: "shelves/1/books/1" }, updateMask: { paths: ["isbn"] } }));
    assert.equal(badMask.code, Code.InvalidArgument);
  });

  test("watch: EXISTING books, then changes made through the other backend, then the end", async () => {
    const existing = (await a.listBooks({ parent: "shelves/1", pageSize: 100 })).books.length;
    const events: Json[] = [];
    const reading = (async () => {
      for await (const event of a.watchBooks({ parent: "shelves/1", maxEvents: existing + 2 }, { timeoutMs })) {
        events.push(event);
      }
    })();
    await eventually(() => events.length === existing, "the existing books arrive first");
    const created = await b.createBook({ parent: "shelves/1", bookId: "watched", book: { title: "Watched" } });
    await b.updateBook({ book: { name: created.name, pages: 9 } });
    await b.createBook({ parent: "shelves/1", bookId: "after-the-limit", book: { title: "Late" } });
    await reading;

    assert.deepEqual(
      events.map((e) => eventKind(e.kind)),
      [...Array(existing).fill("EXISTING"), "CREATED", "UPDATED"],
    );
    assert.equal(events.at(-1)!.book.pages, 9);
    assert.ok(events.every((e) => e.servedBy === backends.addresses[0] && e.book.servedBy === backends.addresses[0]));
    await eventually(() => store.watcherCount === 0, "the finished watch unsubscribed");
    await b.deleteBook({ name: created.name });
    await b.deleteBook({ name: "shelves/1/books/after-the-limit" });
  });

  test("watch: a DELETED event, and a client cancel ends the stream and its subscription", async () => {
    const cancel = new AbortController();
    const kinds: string[] = [];
    const reading = rejection((async () => {
      for await (const event of b.watchBooks({ parent: "shelves/9", maxEvents: 1000 }, { signal: cancel.signal })) {
        kinds.push(eventKind(event.kind)!);
      }
    })());
    await eventually(() => store.watcherCount === 1, "the watch subscribed");
    await a.createBook({ parent: "shelves/9", bookId: "short-lived", book: { title: "Gone soon" } });
    await a.deleteBook({ name: "shelves/9/books/short-lived" });
    await eventually(() => kinds.length === 2, "both changes arrive");
    cancel.abort();
    assert.equal((await reading).code, Code.Canceled);
    assert.deepEqual(kinds, ["CREATED", "DELETED"]);
    await eventually(() => store.watcherCount === 0, "the cancelled watch unsubscribed");
  });
});

test("stop() closes every backend even with a watch stream open", async () => {
  const store = seededLibraryStore();
  const backends = await startDemoBackends(3, { store });
  const client = clientFor(backends.addresses[2]);
  const received: Json[] = [];
  const reading = rejection((async () => {
    for await (const event of client.watchBooks({ parent: "shelves/1", maxEvents: 1000 }, { timeoutMs: 10_000 })) {
      received.push(event);
    }
  })());
  await eventually(() => received.length === 5, "the seeded books arrive");
  await backends.stop();
  assert.notEqual((await reading).code, Code.DeadlineExceeded, "the stream was cut, not timed out");
  await eventually(() => store.watcherCount === 0, "the cut watch unsubscribed");
  for (const address of backends.addresses) {
    assert.equal((await rejection(clientFor(address).getBook({ name: "shelves/1/books/1" }))).code, Code.Unavailable);
  }
});
