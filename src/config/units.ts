/** The config file's value syntaxes: durations, byte sizes, host:port. Pure. */
import { isIP } from "node:net";

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const durationUnits: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001 };

/**
 * Go-style durations (`15s`, `250ms`, `1m30s`, `1.5s`, `2h`, `100us`) → milliseconds.
 * A bare `0` is zero; other numbers need a unit so that "15" is never guessed at.
 */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === "0") return 0;
  const part = /(\d+(?:\.\d+)?|\.\d+)(ms|us|µs|h|m|s)/y;
  let total = 0;
  let at = 0;
  while (at < s.length) {
    part.lastIndex = at;
    const m = part.exec(s);
    if (m === null) {
      throw new Error(`invalid duration ${JSON.stringify(text)}: use a number and a unit (h, m, s, ms, us), e.g. "15s" or "1m30s"`);
    }
    total += Number(m[1]) * durationUnits[m[2]];
    at = part.lastIndex;
  }
  if (s.length === 0) throw new Error("invalid duration: empty");
  return total;
}

const sizeUnits: Record<string, number> = {
  "": 1, b: 1, kb: 1000, mb: 1e6, gb: 1e9, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};

/** `4194304`, `512KiB`, `4MiB`, `1MB` → bytes. */
export function parseByteSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m?.[2].toLowerCase() ?? "";
  if (m === null || !(unit in sizeUnits)) {
    throw new Error(`invalid size ${JSON.stringify(text)}: use bytes or a unit (KiB, MiB, GiB, kB, MB, GB)`);
  }
  const bytes = Math.round(Number(m[1]) * sizeUnits[unit]);
  if (bytes <= 0) throw new Error(`invalid size ${JSON.stringify(text)}: must be positive`);
  return bytes;
}

/** `127.0.0.1:8080`, `[::1]:8080`, `localhost:0` → host and port (0 = any free port). */
export function parseHostPort(text: string): HostPort {
  const m = /^\[([0-9A-Fa-f:.%\w]+)\]:(\d+)$/.exec(text) ?? /^([^:\s[\]]+):(\d+)$/.exec(text);
  if (m === null) {
    throw new Error(`invalid address ${JSON.stringify(text)}: expected host:port or [ipv6]:port`);
  }
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port > 65535) {
    throw new Error(`invalid port in ${JSON.stringify(text)}: must be 0-65535`);
  }
  return { host: m[1], port };
}

/**
 * A name server as `dns.Resolver#setServers` takes it: an IP address, with an optional port
 * (`10.96.0.10`, `127.0.0.1:5353`, `::1`, `[::1]:53`). Returned in that form.
 */
export function parseNameServer(text: string): string {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const withPort = /^([^:]+):(\d+)$/.exec(text);
  const [host, port] = bracketed ? [bracketed[1], bracketed[2]] : withPort ? [withPort[1], withPort[2]] : [text, undefined];
  if (isIP(host) === 0) throw new Error(`invalid name server ${JSON.stringify(text)}: expected an IP address, optionally with :port`);
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    throw new Error(`invalid port in ${JSON.stringify(text)}: must be 1-65535`);
  }
  return text;
}
