/**
 * The embedded demo's gRPC backends: `demo.library.v1.Library` served by N connect-node servers
 * on loopback that share one in-memory store, so the gateway's per-request balancing shows in
 * `served_by` while the data stays consistent.
 *
 * `LibraryStore` is the whole behaviour (validation, field masks, pagination, change events) as
 * plain synchronous methods; the servers only translate messages and stream watch events.
 */
import { readFileSync } from "node:fs";
import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { create, createFileRegistry, fromBinary, type DescMessage, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.ts";
import { packageRoot } from "../paths.ts";

// ---------------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------------

/** The fields a client may set on a book. */
export interface BookFields {
  readonly title: string;
  readonly author: string;
  readonly pages: number;
  readonly tags: readonly string[];
}

export interface BookRecord extends BookFields {
  /** `shelves/{shelf}/books/{book}` */
  readonly name: string;
  readonly archived: boolean;
  readonly createTime: Date;
  readonly updateTime: Date;
}

export type BookChangeKind = "CREATED" | "UPDATED" | "DELETED";

export interface BookChange {
  readonly kind: BookChangeKind;
  /** The book after the change; for DELETED, its last state. */
  readonly book: BookRecord;
}

export interface ListBooksQuery {
  readonly pageSize?: number;
  readonly pageToken?: string;
  /** Only books carrying every one of these tags. */
  readonly tags?: readonly string[];
}

export interface BookPage {
  readonly books: readonly BookRecord[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

export interface StoreOptions {
  readonly now?: () => Date;
  /** A candidate id for a book created without `book_id`. */
  readonly newId?: () => string;
}

const mutableFields = ["title", "author", "pages", "tags"] as const satisfies ReadonlyArray<keyof BookFields>;
type MutableField = (typeof mutableFields)[number];
/** AIP-203: output-only fields in an update mask are ignored rather than rejected, so a client
 * may send back a book it read (the gateway derives the mask from every key of a PATCH body). */
const outputOnlyFields = new Set(["name", "archived", "create_time", "update_time", "served_by"]);

const pageSizes = { default: 10, max: 100 } as const;
const bookIdPattern = /^[a-z0-9-]{1,63}$/;
const shelfPattern = /^shelves\/[^/]+$/;
const bookNamePattern = /^shelves\/[^/]+\/books\/[^/]+$/;

export class LibraryStore {
  readonly #books = new Map<string, BookRecord>();
  readonly #listeners = new Set<(change: BookChange) => void>();
  readonly #now: () => Date;
  readonly #newId: () => string;

  constructor(options: StoreOptions = {}) {
    this.#now = options.now ?? (() => new Date());
    this.#newId = options.newId ?? randomBookId;
  }

  get(name: string): BookRecord {
    return this.#existing(name);
  }

  list(parent: string, query: ListBooksQuery = {}): BookPage {
    checkShelf(parent);
    const pageSize = query.pageSize ?? 0;
    if (pageSize < 0) throw invalidField("page_size", "must not be negative");
    const limit = Math.min(pageSize || pageSizes.default, pageSizes.max);
    const tags = [...new Set(query.tags ?? [])].sort();
    // A token only continues the query it came from (AIP-158): bind it to parent and filter.
    const queryKey = `${parent}\n${tags.join(",")}`;
    const offset = query.pageToken ? decodePageToken(query.pageToken, queryKey) : 0;
    const matching = this.#onShelf(parent).filter((b) => tags.every((t) => b.tags.includes(t)));
    const books = matching.slice(offset, offset + limit);
    const next = offset + books.length;
    return { books, nextPageToken: next < matching.length ? encodePageToken(next, queryKey) : "" };
  }

  create(parent: string, bookId: string, fields: BookFields): BookRecord {
    checkShelf(parent);
    const violations = fieldViolations("book.", fields, mutableFields);
    if (bookId !== "" && !bookIdPattern.test(bookId)) {
      violations.push({ field: "book_id", description: "must match [a-z0-9-]{1,63}" });
    }
    if (violations.length > 0) throw badRequest("invalid book", violations);
    const name = bookId === "" ? this.#freeName(parent) : `${parent}/books/${bookId}`;
    if (this.#books.has(name)) throw new ConnectError(`book "${name}" already exists`, Code.AlreadyExists);
    const now = this.#now();
    const book: BookRecord = { name, ...copyFields(fields), archived: false, createTime: now, updateTime: now };
    this.#books.set(name, book);
    this.#emit({ kind: "CREATED", book });
    return book;
  }

  /**
   * AIP-134: applies the `mask` paths of `sent` to the book `name`. An empty mask means every
   * mutable field the client populated; `*` replaces every mutable field.
   */
  update(name: string, sent: BookFields, mask: readonly string[]): BookRecord {
    checkBookName(name, "book.name");
    const paths = fieldsToUpdate(sent, mask);
    const violations = fieldViolations("book.", sent, paths);
    if (violations.length > 0) throw badRequest("invalid book", violations);
    const current = this.#existing(name);
    if (current.archived) {
      throw new ConnectError(`book "${name}" is archived and read-only`, Code.FailedPrecondition);
    }
    if (paths.length === 0) return current;
    const copy = copyFields(sent);
    const changes = Object.fromEntries(paths.map((p) => [p, copy[p]]));
    return this.#replace({ ...current, ...changes, updateTime: this.#now() });
  }

  delete(name: string): void {
    const book = this.#existing(name);
    this.#books.delete(name);
    this.#emit({ kind: "DELETED", book });
  }

  archive(name: string): BookRecord {
    const current = this.#existing(name);
    if (current.archived) {
      throw new ConnectError(`book "${name}" is already archived`, Code.FailedPrecondition);
    }
    return this.#replace({ ...current, archived: true, updateTime: this.#now() });
  }

  /**
   * The shelf's books now, and every later change to it until `stop()`: taken together so no
   * change falls between the snapshot and the subscription.
   */
  watch(parent: string, onChange: (change: BookChange) => void): { existing: BookRecord[]; stop(): void } {
    checkShelf(parent);
    const listener = (change: BookChange) => {
      if (shelfOf(change.book.name) === parent) onChange(change);
    };
    this.#listeners.add(listener);
    return { existing: this.#onShelf(parent), stop: () => this.#listeners.delete(listener) };
  }

  /** How many watches are subscribed (tests check that ended watches leave none behind). */
  get watcherCount(): number {
    return this.#listeners.size;
  }

  #existing(name: string): BookRecord {
    checkBookName(name, "name");
    const book = this.#books.get(name);
    if (book === undefined) throw new ConnectError(`book "${name}" not found`, Code.NotFound);
    return book;
  }

  #onShelf(parent: string): BookRecord[] {
    return [...this.#books.values()].filter((b) => shelfOf(b.name) === parent);
  }

  #replace(book: BookRecord): BookRecord {
    this.#books.set(book.name, book);
    this.#emit({ kind: "UPDATED", book });
    return book;
  }

  #freeName(parent: string): string {
    for (let attempt = 0; attempt < 16; attempt++) {
      const name = `${parent}/books/${this.#newId()}`;
      if (!this.#books.has(name)) return name;
    }
    throw new ConnectError("cannot find a free book id", Code.Internal);
  }

  #emit(change: BookChange): void {
    for (const listener of [...this.#listeners]) listener(change);
  }
}

/** A store with shelf `shelves/1` holding a few classics (ids 1–5). */
export function seededLibraryStore(options: StoreOptions = {}): LibraryStore {
  const store = new LibraryStore(options);
  const classics: Array<[string, BookFields]> = [
    ["1", { title: "Pride and Prejudice", author: "Jane Austen", pages: 432, tags: ["classic", "romance"] }],
    ["2", { title: "Moby-Dick", author: "Herman Melville", pages: 635, tags: ["classic", "adventure"] }],
    ["3", { title: "Frankenstein", author: "Mary Shelley", pages: 280, tags: ["classic", "horror"] }],
    ["4", { title: "The Hobbit", author: "J. R. R. Tolkien", pages: 310, tags: ["fantasy"] }],
    ["5", { title: "Neuromancer", author: "William Gibson", pages: 271, tags: ["science-fiction"] }],
  ];
  for (const [id, fields] of classics) store.create("shelves/1", id, fields);
  return store;
}

type FieldViolation = { field: string; description: string };

function fieldsToUpdate(sent: BookFields, mask: readonly string[]): MutableField[] {
  if (mask.length === 0) return mutableFields.filter((f) => isPopulated(sent[f]));
  if (mask.length === 1 && mask[0] === "*") return [...mutableFields];
  const unknown = mask.filter((p) => !isMutableField(p) && !outputOnlyFields.has(p));
  if (unknown.length > 0) {
    throw badRequest(
      `update_mask names unknown fields: ${unknown.join(", ")}`,
      unknown.map((p) => ({ field: "update_mask", description: `"${p}" is not a field of Book` })),
    );
  }
  return [...new Set(mask.filter(isMutableField))];
}

function isMutableField(path: string): path is MutableField {
  return (mutableFields as readonly string[]).includes(path);
}

function isPopulated(value: BookFields[MutableField]): boolean {
  return typeof value === "object" ? value.length > 0 : value !== "" && value !== 0;
}

function fieldViolations(prefix: string, fields: BookFields, paths: readonly MutableField[]): FieldViolation[] {
  const violations: FieldViolation[] = [];
  if (paths.includes("title") && fields.title.trim() === "") {
    violations.push({ field: `${prefix}title`, description: "a book needs a title" });
  }
  if (paths.includes("pages") && fields.pages < 0) {
    violations.push({ field: `${prefix}pages`, description: "must not be negative" });
  }
  return violations;
}

function copyFields(fields: BookFields): BookFields {
  return { title: fields.title, author: fields.author, pages: fields.pages, tags: [...fields.tags] };
}

function badRequest(message: string, violations: readonly FieldViolation[]): ConnectError {
  return new ConnectError(message, Code.InvalidArgument, undefined, [
    { desc: BadRequestSchema, value: { fieldViolations: [...violations] } },
  ]);
}

function invalidField(field: string, description: string): ConnectError {
  return badRequest(`${field} ${description}`, [{ field, description }]);
}

function checkShelf(parent: string): void {
  if (!shelfPattern.test(parent)) throw invalidField("parent", `must be shelves/{shelf}, got "${parent}"`);
}

function checkBookName(name: string, field: string): void {
  if (!bookNamePattern.test(name)) {
    throw invalidField(field, `must be shelves/{shelf}/books/{book}, got "${name}"`);
  }
}

function shelfOf(bookName: string): string {
  return bookName.slice(0, bookName.indexOf("/books/"));
}

/** base64url, so a token pasted into a query string survives unescaped (`+` would become a space). */
function encodePageToken(offset: number, queryKey: string): string {
  const base64 = btoa(JSON.stringify({ offset, queryKey }));
  return base64.replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

function decodePageToken(token: string, queryKey: string): number {
  let decoded: unknown;
  try {
    decoded = JSON.parse(atob(token.replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    throw invalidField("page_token", "is not a token this server issued");
  }
  const { offset, queryKey: issuedFor } = (decoded ?? {}) as { offset?: unknown; queryKey?: unknown };
  if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
    throw invalidField("page_token", "is not a token this server issued");
  }
  if (issuedFor !== queryKey) throw invalidField("page_token", "belongs to a different parent or tags filter");
  return offset;
}

function randomBookId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(5));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------------------------

export interface DemoBackends {
  /** `HOST:PORT`, one per backend. */
  readonly addresses: readonly string[];
  /**
   * Closes every server. Graceful: GOAWAY, in-flight calls and watch streams run to their end;
   * otherwise (the default, for the embedded demo's exit) open connections are cut.
   */
  stop(options?: { readonly graceful?: boolean }): Promise<void>;
}

export interface DemoBackendOptions {
  /** Interface to bind (default 127.0.0.1; a pod serving its Service binds 0.0.0.0). */
  readonly host?: string;
  /** Port of the first backend (default: any free port); the others take free ports. */
  readonly port?: number;
  readonly store?: LibraryStore;
  /** What `served_by` reports (default: the backend's address); a pod reports its own name. */
  readonly name?: string;
}

const watchLimits = { default: 10, max: 1000 } as const;

/** Starts `count` Library backends, all serving one store. */
export async function startDemoBackends(count: number, options: DemoBackendOptions = {}): Promise<DemoBackends> {
  const registry = createFileRegistry(
    fromBinary(FileDescriptorSetSchema, readFileSync(join(packageRoot(), "gen", "demo.binpb"))),
  );
  const store = options.store ?? seededLibraryStore();
  const host = options.host ?? "127.0.0.1";
  const servers: ServerHandle[] = [];
  try {
    for (let i = 0; i < count; i++) {
      servers.push(await startBackend(registry, store, host, i === 0 ? (options.port ?? 0) : 0, options.name));
    }
  } catch (e) {
    await Promise.all(servers.map((s) => s.stop(false)));
    throw e;
  }
  return {
    addresses: servers.map((s) => s.address),
    stop: async (stopOptions) => {
      await Promise.all(servers.map((s) => s.stop(stopOptions?.graceful ?? false)));
    },
  };
}

interface ServerHandle {
  readonly address: string;
  stop(graceful: boolean): Promise<void>;
}

async function startBackend(
  registry: FileRegistry,
  store: LibraryStore,
  host: string,
  port: number,
  name: string | undefined,
): Promise<ServerHandle> {
  const sessions = new Set<ServerHttp2Session>();
  let address = "";
  const impl = libraryImplementation(registry, store, () => name ?? address);
  const server: Http2Server = createServer(
    connectNodeAdapter({
      routes: (router) => router.service(registry.getService("demo.library.v1.Library")!, impl as never),
    }),
  );
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => {}); // a peer that vanishes must not crash the demo
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  address = bound.family === "IPv6" ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  return {
    address,
    stop: (graceful) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) {
        if (graceful) session.close();
        else session.destroy();
      }
      return closed;
    },
  };
}

/** The request fields the handlers read (messages come from the registry, so untyped). */
interface BookMessage extends BookFields {
  readonly name: string;
}
interface NameRequest {
  readonly name: string;
}
interface ListBooksRequest {
  readonly parent: string;
  readonly pageSize: number;
  readonly pageToken: string;
  readonly tags: readonly string[];
}
interface CreateBookRequest {
  readonly parent: string;
  readonly bookId: string;
  readonly book?: BookMessage;
}
interface UpdateBookRequest {
  readonly book?: BookMessage;
  readonly updateMask?: { readonly paths: readonly string[] };
}
interface WatchBooksRequest {
  readonly parent: string;
  readonly maxEvents: number;
}

const emptyBook: BookMessage = { name: "", title: "", author: "", pages: 0, tags: [] };

function libraryImplementation(registry: FileRegistry, store: LibraryStore, servedBy: () => string) {
  const message = (typeName: string): DescMessage => registry.getMessage(typeName)!;
  const bookSchema = message("demo.library.v1.Book");
  const listSchema = message("demo.library.v1.ListBooksResponse");
  const eventSchema = message("demo.library.v1.BookEvent");
  const emptySchema = message("google.protobuf.Empty");
  const kinds = registry.getEnum("demo.library.v1.BookEvent.Kind")!;
  const kindNumber = (name: string) => kinds.values.find((v) => v.name === name)!.number;

  const bookMessage = (book: BookRecord) =>
    create(bookSchema, {
      ...book,
      tags: [...book.tags],
      createTime: timestampFromDate(book.createTime),
      updateTime: timestampFromDate(book.updateTime),
      servedBy: servedBy(),
    } as never);
  const eventMessage = (kind: string, book: BookRecord) =>
    create(eventSchema, { kind: kindNumber(kind), book: bookMessage(book), servedBy: servedBy() } as never);

  return {
    getBook: (req: NameRequest) => bookMessage(store.get(req.name)),
    listBooks: (req: ListBooksRequest) => {
      const page = store.list(req.parent, req);
      return create(listSchema, {
        books: page.books.map(bookMessage),
        nextPageToken: page.nextPageToken,
        servedBy: servedBy(),
      } as never);
    },
    createBook: (req: CreateBookRequest) => bookMessage(store.create(req.parent, req.bookId, req.book ?? emptyBook)),
    updateBook: (req: UpdateBookRequest) => {
      const book = req.book ?? emptyBook;
      return bookMessage(store.update(book.name, book, req.updateMask?.paths ?? []));
    },
    deleteBook: (req: NameRequest) => {
      store.delete(req.name);
      return create(emptySchema);
    },
    archiveBook: (req: NameRequest) => bookMessage(store.archive(req.name)),
    async *watchBooks(req: WatchBooksRequest, ctx: HandlerContext) {
      if (req.maxEvents < 0) throw invalidField("max_events", "must not be negative");
      const limit = Math.min(req.maxEvents || watchLimits.default, watchLimits.max);
      for await (const change of watchShelf(store, req.parent, limit, ctx.signal)) {
        yield eventMessage(change.kind, change.book);
      }
    },
  };
}

/**
 * EXISTING for each current book, then the shelf's changes, `limit` events in all. Ends early
 * when `signal` aborts; subscription and abort listener go away when the generator ends.
 */
async function* watchShelf(
  store: LibraryStore,
  parent: string,
  limit: number,
  signal: AbortSignal,
): AsyncGenerator<{ kind: "EXISTING" | BookChangeKind; book: BookRecord }> {
  const pending: Array<{ kind: "EXISTING" | BookChangeKind; book: BookRecord }> = [];
  let sent = 0;
  let wake: (() => void) | undefined;
  const watch = store.watch(parent, (change) => {
    // Events past the limit would never be sent: keep the queue bounded by what is left.
    if (sent + pending.length < limit) pending.push(change);
    wake?.();
  });
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    // No change can arrive before this line runs: the store only notifies on later calls.
    pending.push(...watch.existing.slice(0, limit).map((book) => ({ kind: "EXISTING" as const, book })));
    while (sent < limit && !signal.aborted) {
      const next = pending.shift();
      if (next === undefined) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      sent++;
      yield next;
    }
  } finally {
    watch.stop();
    signal.removeEventListener("abort", onAbort);
  }
}
