/**
 * The command registry: one entry per subcommand, in the order `walrust --help` lists them. Each command's
 * module is imported only when that command runs (or its help is shown): a `restore` or `--version` does not
 * pay for parsing and compiling `watch`, the dashboard or the config loader. Start-up matters for the
 * restore-on-boot path of a container (bench/restore_compare.ts).
 *
 * @module
 */

import type { Command } from "./command.ts";

/** A subcommand as `walrust --help` lists it, with the loader of its module. */
export interface CommandEntry {
  /** Name as typed: `restore`. */
  readonly name: string;
  /** One line for `walrust --help`. */
  readonly summary: string;
  /** Imports the command's module (string-literal imports, so `deno compile` and `deno bundle` include it). */
  load(): Promise<Command>;
}

/** Every subcommand. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: "watch",
    summary: "replicate databases continuously (WAL → LTX → S3 or a directory)",
    load: async () => (await import("./watch.ts")).watchCommand,
  },
  {
    name: "snapshot",
    summary: "take a full snapshot now and upload it",
    load: async () => (await import("./snapshot.ts")).snapshotCommand,
  },
  {
    name: "restore",
    summary: "restore a database (latest, a TXID, or as of a time) into a new file",
    load: async () => (await import("./restore.ts")).restoreCommand,
  },
  {
    name: "list",
    summary: "list the databases in a replica with their TXID ranges per level",
    load: async () => (await import("./list.ts")).listCommand,
  },
  {
    name: "verify",
    summary: "check every backup object, the TXID chain and (optionally) a test restore",
    load: async () => (await import("./verify.ts")).verifyCommand,
  },
  {
    name: "compact",
    summary: "compact backup files and delete what GFS retention does not need (dry run unless --force)",
    load: async () => (await import("./compact.ts")).compactCommand,
  },
  {
    name: "replicate",
    summary: "keep a local read replica of one database, updated in place from its backups",
    load: async () => (await import("./replicate.ts")).replicateCommand,
  },
  {
    name: "explain",
    summary: "show effective settings, where each comes from, and an estimated monthly cost",
    load: async () => (await import("./explain.ts")).explainCommand,
  },
  {
    name: "ltx",
    summary: "inspect (dump) and check (verify) LTX backup files on disk",
    load: async () => (await import("./ltx.ts")).ltxCommand,
  },
  {
    name: "demo",
    summary: "replicate a demo database to a local directory, write, restore, and compare",
    load: async () => (await import("./demo.ts")).demoCommand,
  },
];
