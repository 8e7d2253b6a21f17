/**
 * `walrust ltx dump FILE [--json]` and `walrust ltx verify FILE|DIR... [--json] [-v]`: inspect and check LTX
 * files (the Litestream v0.5 backup format) on local disk, streaming — a file is never read whole.
 *
 * @module
 */

import { type CliIO, type Command, parseCommandArgs } from "./command.ts";
import {
  CorruptionError,
  ExitCode,
  exitCodeOf,
  localIoError,
  messageOf,
  NotFoundError,
  UsageError,
  WalrustError,
} from "../errors.ts";
import { LtxDecoder, type LtxPage } from "../ltx/decoder.ts";
import {
  formatChecksum,
  formatLtxFilename,
  HEADER_FLAG_NO_CHECKSUM,
  isSnapshot,
  type LtxHeader,
  type LtxTrailer,
  type PageIndexEntry,
  parseLtxFilename,
} from "../ltx/types.ts";
import { baseOf } from "../util/fs.ts";

const HELP = `Usage: walrust ltx dump FILE [--json]
       walrust ltx verify FILE|DIR... [--json] [-v]

Inspect LTX files, the format of walrust and Litestream v0.5 backups (local files; download objects first).

  dump FILE        print the header, every page frame (pgno, offset, size, flags), the page index and the
                   trailer; the whole file is verified on the way (checksums, page order, index)
  verify PATH...   verify files, and every *.ltx file below each directory: header, page order, each page
                   decompressing to the page size, index, trailer, file checksum, and that a file named
                   <min>-<max>.ltx holds those TXIDs. Prints one line per bad file and a summary.

Options:
      --json        machine-readable output
  -v, --verbose     verify: also list the files that are fine

Exit status: 0 when every file is valid, 7 when any is corrupt, 10 when a path does not exist or a
directory holds no .ltx file.

Examples:
  walrust ltx dump 0000000000000001-0000000000000040.ltx
  walrust ltx verify /backups/app.db/ltx`;

const OPTIONS = {
  json: { type: "boolean" },
  verbose: { type: "boolean", short: "v" },
} as const;

/** The `ltx` command. */
export const ltxCommand: Command = {
  name: "ltx",
  help: HELP,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("ltx", args, OPTIONS);
    const [sub, ...paths] = positionals;
    if (sub === "dump") {
      if (paths.length !== 1) {
        throw new UsageError("walrust ltx dump: expected exactly one FILE (see 'walrust ltx --help')");
      }
      if (values.verbose) throw new UsageError("walrust ltx dump: -v/--verbose applies to 'ltx verify' only");
      return await dump(paths[0], values.json === true, io);
    }
    if (sub === "verify") {
      if (paths.length === 0) {
        throw new UsageError("walrust ltx verify: expected FILE or DIR arguments (see 'walrust ltx --help')");
      }
      return await verify(paths, { json: values.json === true, verbose: values.verbose === true }, io);
    }
    throw new UsageError(
      sub === undefined
        ? "walrust ltx: expected a subcommand, dump or verify (see 'walrust ltx --help')"
        : `walrust ltx: unknown subcommand '${sub}'; expected dump or verify`,
    );
  },
};

/** Header fields as JSON: checksums and node id as 16 hex digits, the timestamp also as RFC 3339. */
export function headerJson(h: LtxHeader): Record<string, unknown> {
  return {
    flags: h.flags,
    noChecksum: (h.flags & HEADER_FLAG_NO_CHECKSUM) !== 0,
    pageSize: h.pageSize,
    commit: h.commit,
    minTXID: h.minTXID,
    maxTXID: h.maxTXID,
    snapshot: isSnapshot(h),
    timestamp: h.timestamp,
    time: isoTime(h.timestamp),
    preApplyChecksum: formatChecksum(h.preApplyChecksum),
    walOffset: h.walOffset,
    walSize: h.walSize,
    walSalt1: h.walSalt1,
    walSalt2: h.walSalt2,
    nodeID: formatChecksum(h.nodeID),
  };
}

function isoTime(ms: number): string | null {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, "0");
}

/** Opens a local file for streaming, mapping failures to typed errors naming it. */
async function openFile(path: string): Promise<{ file: Deno.FsFile; size: number }> {
  try {
    const file = await Deno.open(path, { read: true });
    const st = await file.stat();
    if (!st.isFile) {
      file.close();
      throw new UsageError(`${path} is not a file`);
    }
    return { file, size: st.size };
  } catch (err) {
    throw localIoError(err, path, "read");
  }
}

function closeQuietly(f: Deno.FsFile): void {
  try {
    f.close();
  } catch {
    // Already closed by its stream reaching the end or being cancelled.
  }
}

async function dump(path: string, json: boolean, io: CliIO): Promise<number> {
  const { file, size } = await openFile(path);
  const pages: LtxPage[] = [];
  let header: LtxHeader | null = null;
  let trailer: LtxTrailer | null = null;
  let index: PageIndexEntry[] | null = null;
  let failure: unknown = undefined;
  try {
    const dec = new LtxDecoder(file.readable, path);
    header = await dec.readHeader();
    for (let p = await dec.nextPage(); p; p = await dec.nextPage()) {
      pages.push({ ...p, data: new Uint8Array(0) }); // keep the frame description, drop the page bytes
    }
    ({ trailer, index } = await dec.finish());
  } catch (err) {
    failure = err;
  } finally {
    closeQuietly(file);
  }
  if (json) {
    io.stdout(
      JSON.stringify(
        {
          file: path,
          size,
          valid: failure === undefined,
          header: header ? headerJson(header) : null,
          pages: pages.map((p) => ({ pgno: p.pgno, offset: p.offset, size: p.size, flags: p.flags })),
          index,
          trailer: trailer
            ? {
              postApplyChecksum: formatChecksum(trailer.postApplyChecksum),
              fileChecksum: formatChecksum(trailer.fileChecksum),
            }
            : null,
          ...(failure !== undefined ? { error: messageOf(failure) } : {}),
        },
        null,
        2,
      ) + "\n",
    );
  } else {
    io.stdout(dumpText(path, size, header, pages, index, trailer, failure));
  }
  if (failure !== undefined) throw failure;
  return ExitCode.OK;
}

/** The human-readable dump. */
function dumpText(
  path: string,
  size: number,
  h: LtxHeader | null,
  pages: LtxPage[],
  index: PageIndexEntry[] | null,
  t: LtxTrailer | null,
  failure: unknown,
): string {
  const out: string[] = [`file      ${path} (${size} bytes)`];
  if (h) {
    const kind = isSnapshot(h) ? "snapshot" : "incremental";
    out.push(
      `header    TXID ${h.minTXID}-${h.maxTXID} (${kind}), page size ${h.pageSize}, commit ${h.commit} pages`,
      `          flags 0x${hex32(h.flags)}${
        (h.flags & HEADER_FLAG_NO_CHECKSUM) !== 0 ? " (NoChecksum)" : ""
      }, ` +
        `timestamp ${h.timestamp} (${isoTime(h.timestamp) ?? "out of range"})`,
      `          pre-apply checksum ${formatChecksum(h.preApplyChecksum)}, node id ${
        formatChecksum(h.nodeID)
      }`,
      `          wal offset ${h.walOffset}, wal size ${h.walSize}, salts ${hex32(h.walSalt1)}/${
        hex32(h.walSalt2)
      }`,
    );
  }
  out.push(`pages     ${pages.length}`);
  if (pages.length > 0) {
    const w = Math.max(4, ...pages.map((p) => String(p.pgno).length));
    const wo = Math.max(6, ...pages.map((p) => String(p.offset).length));
    out.push(`  ${"pgno".padStart(w)}  ${"offset".padStart(wo)}    size  flags`);
    for (const p of pages) {
      const kind = p.flags === 1 ? "size + LZ4 block" : "LZ4 frame";
      out.push(
        `  ${String(p.pgno).padStart(w)}  ${String(p.offset).padStart(wo)}  ${String(p.size).padStart(6)}  ` +
          `0x${p.flags.toString(16).padStart(4, "0")} (${kind})`,
      );
    }
  }
  if (index) out.push(`index     ${index.length} entries, matching the frames`);
  if (t) {
    out.push(
      `trailer   post-apply checksum ${formatChecksum(t.postApplyChecksum)}`,
      `          file checksum ${formatChecksum(t.fileChecksum)} (verified)`,
    );
  }
  out.push(failure === undefined ? "valid" : `INVALID: ${messageOf(failure)}`);
  return out.join("\n") + "\n";
}

/** What verify found for one file. */
interface VerifyResult {
  file: string;
  ok: boolean;
  error?: string;
  exitCode?: number;
  minTXID?: number;
  maxTXID?: number;
  pages?: number;
  size?: number;
}

/** Every *.ltx file under `dir`, sorted, recursing into subdirectories (symlinked directories are not followed). */
async function findLtxFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries: Deno.DirEntry[] = [];
    try {
      for await (const e of Deno.readDir(d)) entries.push(e);
    } catch (err) {
      throw localIoError(err, d, "read directory");
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = `${d.replace(/\/+$/, "")}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.isFile && e.name.endsWith(".ltx")) found.push(p);
    }
  };
  await walk(dir);
  return found;
}

async function verifyOne(path: string): Promise<VerifyResult> {
  let opened: { file: Deno.FsFile; size: number };
  try {
    opened = await openFile(path);
  } catch (err) {
    return { file: path, ok: false, error: messageOf(err), exitCode: exitCodeOf(err) };
  }
  const { file, size } = opened;
  try {
    const dec = new LtxDecoder(file.readable, path);
    const h = await dec.readHeader();
    const named = parseLtxFilename(baseOf(path));
    if (named && (named.minTXID !== h.minTXID || named.maxTXID !== h.maxTXID)) {
      throw new CorruptionError(
        `file name says TXIDs ${named.minTXID}-${named.maxTXID} but the header holds ${h.minTXID}-${h.maxTXID} ` +
          `(expected name ${formatLtxFilename(h.minTXID, h.maxTXID)})`,
        { object: path, offset: 16 },
      );
    }
    let pages = 0;
    while ((await dec.nextPage()) !== null) pages++;
    await dec.finish();
    return { file: path, ok: true, minTXID: h.minTXID, maxTXID: h.maxTXID, pages, size };
  } catch (err) {
    const typed = err instanceof WalrustError ? err : localIoError(err, path, "read");
    if (!(typed instanceof WalrustError)) throw err; // a bug: let main print the stack
    return { file: path, ok: false, error: messageOf(typed), exitCode: exitCodeOf(typed), size };
  } finally {
    closeQuietly(file);
  }
}

async function verify(
  paths: string[],
  opts: { json: boolean; verbose: boolean },
  io: CliIO,
): Promise<number> {
  const files: string[] = [];
  for (const p of paths) {
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(p);
    } catch (err) {
      throw localIoError(err, p, "verify");
    }
    if (st.isDirectory) {
      const found = await findLtxFiles(p);
      if (found.length === 0) throw new NotFoundError(`no .ltx files found under ${p}`);
      files.push(...found);
    } else {
      files.push(p);
    }
  }
  const results: VerifyResult[] = [];
  for (const f of files) {
    const r = await verifyOne(f);
    results.push(r);
    if (!opts.json) {
      if (!r.ok) io.stdout(`BAD ${r.error}\n`);
      else if (opts.verbose) io.stdout(`ok  ${r.file} (TXID ${r.minTXID}-${r.maxTXID}, ${r.pages} pages)\n`);
    }
  }
  const bad = results.filter((r) => !r.ok);
  if (opts.json) {
    io.stdout(
      JSON.stringify(
        { files: results.length, ok: results.length - bad.length, bad: bad.length, results },
        null,
        2,
      ) + "\n",
    );
  } else {
    io.stdout(
      `verified ${results.length} LTX file${results.length === 1 ? "" : "s"}: ${
        results.length - bad.length
      } ok, ` +
        `${bad.length} bad\n`,
    );
  }
  if (bad.length === 0) return ExitCode.OK;
  // Corruption wins; otherwise the first other failure's code (e.g. permission denied → 12).
  return bad.some((r) => r.exitCode === ExitCode.CORRUPTION)
    ? ExitCode.CORRUPTION
    : bad[0].exitCode ?? ExitCode.CORRUPTION;
}
