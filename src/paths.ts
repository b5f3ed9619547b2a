/** Files that ship with grpc-edge (the demo's descriptor set), found from this module's URL. */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root: the nearest folder above this module whose package.json names grpc-edge. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).name === "grpc-edge") {
      return dir;
    }
    dir = dirname(dir);
  }
  throw new Error("cannot find the grpc-edge package root");
}
