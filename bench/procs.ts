/**
 * Child processes for the benchmark: started with their output in bench/out/logs, waited for by
 * a line they print, stopped with SIGTERM (SIGKILL after a grace period); and what /proc says
 * about a process tree (CPU seconds, resident memory).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, readdirSync, readFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /**
   * Bytes the process's V8 heap allocated, summed over the `--trace-gc-nvp` lines it has printed
   * so far (each GC reports what was allocated since the one before); 0 without that flag.
   */
  allocatedBytes(): number;
  /** Resolves with the first match of `pattern` in stdout/stderr; rejects on exit or timeout. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 10 s). */
  stop(graceMs?: number): Promise<number | null>;
}

const running = new Set<Proc>();
/** The field of a `--trace-gc-nvp` line that says what was allocated since the previous GC. */
const gcAllocated = /\ballocated=(\d+)/;

export function startProc(name: string, command: string, args: readonly string[], logDir: string): Proc {
  const logFile = join(logDir, `${name.replace(/[^A-Za-z0-9_.-]+/g, "-")}.log`);
  const log = createWriteStream(logFile);
  const child: ChildProcess = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  let allocated = 0;
  let partialLine = "";
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    log.write(chunk);
    const text = chunk.toString();
    if (output.length < 1 << 20) output += text;
    const lines = (partialLine + text).split("\n");
    partialLine = lines.pop()!;
    for (const line of lines) {
      const m = gcAllocated.exec(line);
      if (m !== null) allocated += Number(m[1]);
    }
    for (const w of waiters) w();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
    for (const w of waiters) w();
  });

  const proc: Proc = {
    name,
    pid: child.pid!,
    logFile,
    allocatedBytes: () => allocated,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`${name}: no ${pattern} within ${timeoutMs} ms (see ${logFile})`)), timeoutMs);
        const check = () => {
          const m = output.match(pattern);
          if (m !== null) done(undefined, m);
          else if (gone) done(new Error(`${name} exited before printing ${pattern} (see ${logFile}):\n${output.slice(-2000)}`));
        };
        const done = (error?: Error, m?: RegExpMatchArray) => {
          clearTimeout(timer);
          waiters.delete(check);
          if (error) reject(error);
          else resolve(m!);
        };
        waiters.add(check);
        check();
      });
    },
    async stop(graceMs = 10_000) {
      running.delete(proc);
      if (!gone) {
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      log.end();
      return exited;
    },
  };
  running.add(proc);
  return proc;
}

/** Stops everything still running (in parallel). */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined; // gone
  }
}

/** `pid` and all its live descendants (node:cluster workers, for example). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const ppid = Number(statFields(Number(entry))?.[1]);
    if (!Number.isFinite(ppid)) continue;
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const out: number[] = [];
  const visit = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) visit(c);
  };
  visit(pid);
  return out;
}

/** Kernel clock ticks per second (USER_HZ): 100 on every Linux build that matters here. */
const ticksPerSecond = 100;

/** User + system CPU seconds the processes have used so far. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    const f = statFields(pid);
    if (f !== undefined) ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  }
  return ticks / ticksPerSecond;
}

/** Current and peak resident set size of each process, in MiB. */
export function memoryMiB(pids: readonly number[]): Array<{ pid: number; rss: number; peak: number }> {
  return pids.flatMap((pid) => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const kib = (key: string) => Number(status.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0);
      return [{ pid, rss: kib("VmRSS") / 1024, peak: kib("VmHWM") / 1024 }];
    } catch {
      return [];
    }
  });
}
