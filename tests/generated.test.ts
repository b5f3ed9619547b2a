// gen/ is committed: this fails when it no longer matches what `npm run generate` makes from proto/.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = join(import.meta.dirname, "..");
const buf = join(root, "node_modules", ".bin", "buf");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

test("gen/ matches what buf generates from proto/ (run `npm run generate` and commit)", () => {
  const out = mkdtempSync(join(tmpdir(), "grpc-edge-gen-"));
  try {
    execFileSync(buf, ["generate", "--output", out], { cwd: root, stdio: "pipe" });
    // The descriptor sets `npm run generate` builds (package.json), each from its folder.
    const sets = { demo: "proto/demo", mirror: "proto/mirror", health: "proto/grpc", testing: "proto/testing" };
    for (const [set, path] of Object.entries(sets)) {
      execFileSync(buf, ["build", "-o", join(out, "gen", `${set}.binpb`), "--path", path], {
        cwd: root,
        stdio: "pipe",
      });
    }
    const made = files(join(out, "gen")).map((f) => relative(join(out, "gen"), f)).sort();
    const committed = files(join(root, "gen")).map((f) => relative(join(root, "gen"), f)).sort();
    assert.deepEqual(committed, made, "gen/ has missing or extra files");
    for (const f of made) {
      const same = readFileSync(join(out, "gen", f)).equals(readFileSync(join(root, "gen", f)));
      assert.ok(same, `gen/${f} is stale`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
