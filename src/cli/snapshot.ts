/**
 * `walrust snapshot <db> -b <url>`: takes a level-9 snapshot (`0000000000000001-<txid>.ltx`, the whole
 * database at that TXID) now and uploads it, standalone.
 *
 * It takes the same local lock as `watch` (so it refuses while a watch replicates the database: that watch
 * takes snapshots on its own schedule) and the replica lease, and it keeps the TXID chain contiguous: if the
 * database changed since the replica's newest TXID, it first ships an L0 file for the new TXID, exactly as
 * `watch` would. Files queued by an earlier watch are shipped too.
 *
 * @module
 */

import { type CliIO, type Command, parseCommandArgs } from "./command.ts";
import { REPLICA_HELP, REPLICA_OPTIONS, resolveDatabaseSettings } from "../config/cli.ts";
import { UsageError } from "../errors.ts";
import { formatTxid } from "../ltx/types.ts";
import { EventBus } from "../observe/events.ts";
import { DbReplicator } from "../replicate/db.ts";
import { openObjectStore } from "../storage/open.ts";
import { ReplicaClient } from "../storage/replica_client.ts";
import { Progress } from "../util/progress.ts";

const OPTIONS = { ...REPLICA_OPTIONS, json: { type: "boolean" } } as const;

const HELP = `Usage: walrust snapshot <db> -b <replica-url> [--json]

Writes a full snapshot of the database (level 9: 0000000000000001-<txid>.ltx) to the replica now. If the
database changed since the replica's newest TXID, an L0 file for the new TXID is shipped first so the chain
stays contiguous. <db> is a database path, or a name from walrust.toml.

Refuses (exit 11) while 'walrust watch' replicates the database: the running watch takes snapshots on its
own schedule (--snapshot-interval).

${REPLICA_HELP}
      --json               print the result as JSON

Progress (bytes, rate, ETA) is shown on a terminal only.
Exit codes: 0 done, 3 database missing/not WAL, 4 credentials rejected, 5 replica unreachable,
11 the database is being replicated by another process.`;

/** The `snapshot` command. */
export const snapshotCommand: Command = {
  name: "snapshot",
  help: HELP,
  async run(args: string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs("snapshot", args, OPTIONS);
    if (positionals.length !== 1) {
      throw new UsageError("walrust snapshot: give exactly one database (walrust snapshot app.db -b <url>)");
    }
    const settings = await resolveDatabaseSettings(positionals[0], values, io);
    const bus = new EventBus();
    const store = openObjectStore(settings.replica, { retry: settings.retry, bus, db: settings.name });
    const client = new ReplicaClient(store, settings.name);
    // Reading and encoding the database is the long part; shown on a terminal only.
    const progress = new Progress(io, { label: `snapshotting ${settings.name}` });
    const rep = new DbReplicator(settings, client, bus, {
      background: false,
      lockHint: "; the running watch takes snapshots on its own schedule",
      onSnapshotProgress: progress.active ? (done, total) => progress.update(done, total) : undefined,
    });
    let bytes = 0;
    bus.subscribe((e) => {
      if (e.type === "snapshot") bytes = e.bytes;
    });
    try {
      await rep.start();
      const txid = await rep.snapshot();
      progress.finish();
      await rep.upload();
      const result = { database: settings.name, replica: client.displayUrl, txid, bytes };
      if (values.json) {
        io.stdout(JSON.stringify({ ...result, txidHex: formatTxid(txid) }) + "\n");
      } else {
        io.stdout(
          `snapshot of ${settings.name} at TXID ${
            formatTxid(txid)
          } (${bytes} bytes) uploaded to ${client.displayUrl}\n`,
        );
      }
      return 0;
    } finally {
      progress.finish();
      await rep.stop({ flushTimeoutMs: 0, finalSync: false });
      store.close();
    }
  },
};
