/**
 * Binary FileDescriptorSets → one registry. Several sets may repeat the same file (every set
 * built with imports carries google/protobuf/*); identical duplicates are merged, a file that
 * differs between two sets is an error because routes and JSON would silently depend on order.
 */
import { readFile } from "node:fs/promises";
import { create, createFileRegistry, fromBinary, toBinary, type FileRegistry } from "@bufbuild/protobuf";
import {
  FileDescriptorSetSchema,
  FileDescriptorProtoSchema,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";

export class DescriptorError extends Error {
  override readonly name = "DescriptorError";
}

/** Reads and merges descriptor-set files. Throws DescriptorError naming the file. */
export async function loadDescriptorFiles(paths: readonly string[]): Promise<FileRegistry> {
  const sets: Array<{ source: string; bytes: Uint8Array }> = [];
  for (const path of paths) {
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (e) {
      throw new DescriptorError(`cannot read descriptor set ${path}: ${(e as Error).message}`);
    }
    sets.push({ source: path, bytes });
  }
  return registryFromDescriptorSets(sets);
}

/** Merges in-memory descriptor sets (the demo's embedded one, tests). */
export function registryFromDescriptorSets(
  sets: ReadonlyArray<{ source: string; bytes: Uint8Array }>,
): FileRegistry {
  const files = new Map<string, { proto: FileDescriptorProto; source: string; encoded: string }>();
  for (const { source, bytes } of sets) {
    let set;
    try {
      set = fromBinary(FileDescriptorSetSchema, bytes);
    } catch (e) {
      throw new DescriptorError(
        `${source} is not a binary FileDescriptorSet (${(e as Error).message}); build one with ` +
          "`buf build -o set.binpb` or `protoc --include_imports --descriptor_set_out=set.binpb`",
      );
    }
    for (const proto of set.file) {
      const encoded = Buffer.from(toBinary(FileDescriptorProtoSchema, proto)).toString("base64");
      const seen = files.get(proto.name);
      if (seen === undefined) files.set(proto.name, { proto, source, encoded });
      else if (seen.encoded !== encoded) {
        throw new DescriptorError(`${proto.name} differs between ${seen.source} and ${source}`);
      }
    }
  }
  try {
    return createFileRegistry(
      create(FileDescriptorSetSchema, { file: [...files.values()].map((f) => f.proto) }),
    );
  } catch (e) {
    // Usually a missing import: the set was built without --include_imports.
    throw new DescriptorError(
      `cannot link descriptors: ${(e as Error).message} (were the sets built with imports included?)`,
    );
  }
}
