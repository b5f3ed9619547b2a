/**
 * Reads a V8 .cpuprofile (`node --cpu-prof`) and ranks where the time went: self time per
 * function and per source (package or file), as shares of the busy (non-idle) sampled time.
 *
 *   node bench/profile-summary.ts bench/out/profiles/CPU.*.cpuprofile [--top 30] [--focus "unary src/transcode"]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface Ranked {
  readonly name: string;
  readonly share: number;
}

export interface Summary {
  /** Time spent in the function itself. */
  readonly functions: Ranked[];
  /** Time spent in the function or anything it called (each sample counted once per function). */
  readonly inclusive: Ranked[];
  readonly sources: Ranked[];
  /** For the native entries with the most self time: who called them. */
  readonly nativeCallers: Array<{ name: string; callers: Ranked[] }>;
  /** With a focus (a substring of a function label): inclusive time of what the outermost match calls directly. */
  readonly focus: Ranked[];
}

/** Self and inclusive time per function, self time per source, largest first. `focus`: see Summary.focus. */
export function summarize(profile: Profile, focus?: string): Summary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (id: number) => {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    return `${functionName || "(anonymous)"} ${shortSource(url)}${url ? `:${lineNumber + 1}` : ""}`;
  };
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i];
    if (byId.get(id)?.callFrame.functionName === "(idle)") continue; // waiting is not cost
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0) || 1;
  const add = (m: Map<string, number>, key: string, us: number) => m.set(key, (m.get(key) ?? 0) + us);
  const functions = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const sources = new Map<string, number>();
  const callers = new Map<string, Map<string, number>>();
  const focused = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (focus !== undefined) {
      let below: number | undefined; // the frame called by the outermost frame matching `focus`
      let hit: string | undefined;
      for (let at: number | undefined = id, prev: number | undefined; at !== undefined; prev = at, at = parent.get(at)) {
        if (label(at).includes(focus)) [hit, below] = [label(at), prev];
      }
      if (hit !== undefined) add(focused, below === undefined ? `(self) ${hit}` : label(below), us);
    }
    const fn = label(id);
    add(functions, fn, us);
    add(sources, shortSource(byId.get(id)!.callFrame.url), us);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) seen.add(label(at));
    for (const f of seen) add(inclusive, f, us);
    if (byId.get(id)!.callFrame.url === "") {
      const up = parent.get(id);
      if (up !== undefined) add(callers.get(fn) ?? callers.set(fn, new Map()).get(fn)!, label(up), us);
    }
  }
  const rank = (m: Map<string, number>, of = total) =>
    [...m].map(([name, us]) => ({ name, share: us / of })).sort((a, b) => b.share - a.share);
  const nativeCallers = rank(functions)
    .filter((r) => callers.has(r.name))
    .slice(0, 4)
    .map((r) => ({ name: r.name, callers: rank(callers.get(r.name)!).slice(0, 5) }));
  return {
    functions: rank(functions),
    inclusive: rank(inclusive).filter((r) => !r.name.startsWith("(root)")),
    sources: rank(sources),
    nativeCallers,
    focus: rank(focused),
  };
}

/** `node_modules/hono/dist/...` → `hono/dist/...`; our files relative to the repository; V8 internals as named. */
function shortSource(url: string): string {
  if (url === "") return "(native / V8)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + "node_modules/".length);
  const repo = url.indexOf("/dist/");
  if (repo >= 0) return url.slice(repo + "/dist/".length);
  return url.replace(/^file:\/\//, "");
}

export function formatSummary(summary: Summary, top: number): string {
  const pct = (s: number) => `${(s * 100).toFixed(1)}%`.padStart(6);
  const list = (rows: Ranked[], indent = "  ") => rows.slice(0, top).map((r) => `${indent}${pct(r.share)}  ${r.name}`);
  return [
    `self time by function (top ${top}):`,
    ...list(summary.functions),
    `inclusive time by function (top ${top}):`,
    ...list(summary.inclusive),
    `self time by source (top ${top}):`,
    ...list(summary.sources),
    "callers of the largest native entries (share of all busy time):",
    ...summary.nativeCallers.flatMap((n) => [`  ${n.name}`, ...list(n.callers, "    ")]),
    ...(summary.focus.length > 0 ? ["direct callees of the focus (inclusive):", ...list(summary.focus)] : []),
  ].join("\n");
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    options: { top: { type: "string", default: "30" }, focus: { type: "string" } },
    allowPositionals: true,
  });
  for (const file of positionals) {
    const summary = summarize(JSON.parse(readFileSync(file, "utf8")) as Profile, values.focus);
    console.log(`${file}\n${formatSummary(summary, Number(values.top))}`);
  }
}
