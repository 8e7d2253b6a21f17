/**
 * Expansion of the database globs of `[[databases]] path` (`*`, `?`, `[...]` in any path component).
 * Only regular files match; SQLite's companion files (`-wal`, `-shm`, `-journal`) and hidden files (unless
 * the pattern component starts with `.`) never do, so `data/*` cannot pick up a WAL file as a database.
 *
 * @module
 */

import { localIoError } from "../errors.ts";

/** Whether `path` contains a wildcard (`*`, `?` or a `[...]` class). */
export function hasGlob(path: string): boolean {
  return /[*?]/.test(path) || /\[[^\]/]+\]/.test(path);
}

/** Compiles one path component of a glob into an anchored regular expression. */
export function globSegmentToRegExp(segment: string): RegExp {
  let re = "";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = segment.indexOf("]", i + 2);
      if (end < 0) {
        re += "\\[";
        continue;
      }
      let body = segment.slice(i + 1, end);
      let neg = false;
      if (body[0] === "!" || body[0] === "^") {
        neg = true;
        body = body.slice(1);
      }
      // Keep ranges (a-z); escape everything a regex class treats specially.
      body = body.replace(/[\\\]^[]/g, (m) => `\\${m}`);
      re += `[${neg ? "^" : ""}${body}]`;
      i = end;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, (m) => `\\${m}`);
  }
  return new RegExp(`^${re}$`);
}

const COMPANION = /-(wal|shm|journal)$/;

/**
 * The regular files matching `pattern`, sorted. A relative pattern is relative to the working directory and
 * the results stay relative. Directories that cannot be read are skipped (they cannot hold a match we may
 * open anyway), except a permission error on the pattern's fixed prefix, which is reported.
 */
export async function expandGlob(pattern: string): Promise<string[]> {
  const abs = pattern.startsWith("/");
  const parts = pattern.split("/").filter((p, i) => p !== "" || i === 0);
  if (abs) parts.shift();
  let bases: string[] = [abs ? "/" : ""];
  const join = (
    base: string,
    name: string,
  ) => (base === "" ? name : base === "/" ? `/${name}` : `${base}/${name}`);
  for (let k = 0; k < parts.length; k++) {
    const seg = parts[k];
    const last = k === parts.length - 1;
    if (!hasGlob(seg)) {
      bases = bases.map((b) => join(b, seg));
      continue;
    }
    const re = globSegmentToRegExp(seg);
    const next: string[] = [];
    for (const base of bases) {
      let entries: Deno.DirEntry[];
      try {
        entries = await Array.fromAsync(Deno.readDir(base === "" ? "." : base));
      } catch (err) {
        if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) continue;
        throw localIoError(err, base === "" ? "." : base, "list");
      }
      for (const e of entries) {
        if (e.name.startsWith(".") && !seg.startsWith(".")) continue;
        if (!re.test(e.name)) continue;
        if (last && COMPANION.test(e.name)) continue;
        next.push(join(base, e.name));
      }
    }
    bases = next;
  }
  const files: string[] = [];
  for (const p of bases) {
    try {
      if ((await Deno.stat(p)).isFile) files.push(p);
    } catch {
      // Vanished or unreadable between listing and stat: not a match.
    }
  }
  return [...new Set(files)].sort();
}
