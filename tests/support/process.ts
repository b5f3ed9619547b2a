/**
 * Child processes for tests: start one, wait for the line that says it is ready, stop it with a
 * signal and get its exit code. No child outlives the test process.
 */
import { spawn, type ChildProcess } from "node:child_process";

export interface StartProcessOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Matched against everything written to stdout and stderr so far. */
  readonly ready: RegExp;
  /** How long to wait for `ready`; default 20 s. */
  readonly timeoutMs?: number;
}

export interface RunningProcess {
  /** The match of `ready`, capture groups included. */
  readonly match: RegExpMatchArray;
  /** stdout and stderr so far, interleaved as they arrived. */
  output(): string;
  /** Sends `signal` (default SIGTERM), SIGKILL after 10 s; resolves with the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const defaultReadyTimeoutMs = 20_000;
const killAfterMs = 10_000;
/** After an early exit, how long to wait for the last output before rejecting. */
const drainOutputMs = 1_000;

const running = new Set<ChildProcess>();
// The last resort when a test forgets stop() or the test process ends early.
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export function startProcess(
  command: string,
  args: readonly string[],
  options: StartProcessOptions,
): Promise<RunningProcess> {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let output = "";
  let gone = false;
  const exited = new Promise<number | null>((resolve) => {
    const done = (code: number | null) => {
      gone = true;
      running.delete(child);
      resolve(code);
    };
    child.once("exit", done);
    // A spawn failure (ENOENT…) emits "error" and never "exit".
    child.once("error", () => done(null));
  });

  const stop = async (signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> => {
    if (gone) return exited;
    child.kill(signal);
    const escalation = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    try {
      return await exited;
    } finally {
      clearTimeout(escalation);
    }
  };

  // A global flag would make match() return every match without the capture groups.
  const ready = new RegExp(options.ready.source, options.ready.flags.replace("g", ""));
  const timeoutMs = options.timeoutMs ?? defaultReadyTimeoutMs;
  const describe = `${command} ${args.join(" ")}`;

  return new Promise<RunningProcess>((resolve, reject) => {
    let settled = false;
    const fail = async (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill("SIGKILL");
      await exited;
      reject(new Error(`${describe}: ${why}; output:\n${output}`));
    };
    const timer = setTimeout(() => fail(`not ready (${ready}) after ${timeoutMs} ms`), timeoutMs);
    const onData = (chunk: string) => {
      output += chunk;
      if (settled) return;
      const match = output.match(ready);
      if (match === null) return;
      settled = true;
      clearTimeout(timer);
      resolve({ match, output: () => output, stop });
    };
    child.stdout!.setEncoding("utf8").on("data", onData);
    child.stderr!.setEncoding("utf8").on("data", onData);
    child.once("error", (error) => fail(`could not start (${error.message})`));
    child.once("exit", (code, signal) => {
      // "exit" can come before the last output has been read; "close" comes after it, unless a
      // grandchild still holds the pipes, hence the bound.
      const why = `exited (code ${code}, signal ${signal}) before it was ready`;
      const bound = setTimeout(() => fail(why), drainOutputMs);
      child.once("close", () => {
        clearTimeout(bound);
        fail(why);
      });
    });
  });
}
