/**
 * The 100-byte SQLite database header: page size, in-header page count, change counter and the read/write
 * format versions (2/2 means WAL mode). See https://www.sqlite.org/fileformat2.html#the_database_header.
 *
 * @module
 */

import { DatabaseError, messageOf } from "../errors.ts";

/** Size of the SQLite database header in bytes. */
export const DB_HEADER_SIZE = 100;

/** The 16 magic bytes every SQLite 3 database starts with: "SQLite format 3\0". */
export const SQLITE_MAGIC: Uint8Array = new TextEncoder().encode("SQLite format 3\0");

/** The fields of the database header walrust uses. */
export interface DbHeader {
  /** Page size in bytes (the stored value 1 means 65536). */
  pageSize: number;
  /**
   * In-header database size in pages. Only trustworthy when {@link DbHeader.versionValidFor} equals
   * {@link DbHeader.changeCounter}; in WAL mode it describes the database file as of the last checkpoint.
   */
  pageCount: number;
  /** File change counter (offset 24). */
  changeCounter: number;
  /** File format write version: 1 = rollback journal, 2 = WAL. */
  writeVersion: number;
  /** File format read version: 1 = rollback journal, 2 = WAL. */
  readVersion: number;
  /** Whether the database is in WAL mode (read and write versions both 2). */
  walMode: boolean;
  /** "Version-valid-for" number (offset 92): the change counter value for which `pageCount` is valid. */
  versionValidFor: number;
}

/**
 * Parses the first 100 bytes of a database file. `name` (a path) is used in error messages.
 * Throws {@link DatabaseError} when the bytes are too short, lack the SQLite magic, or hold an invalid page size.
 */
export function parseDbHeader(bytes: Uint8Array, name: string): DbHeader {
  if (bytes.length < DB_HEADER_SIZE) {
    throw new DatabaseError(
      `${name} is not a SQLite database: it is only ${bytes.length} bytes long (a database header is 100 bytes)`,
    );
  }
  for (let i = 0; i < SQLITE_MAGIC.length; i++) {
    if (bytes[i] !== SQLITE_MAGIC[i]) {
      throw new DatabaseError(
        `${name} is not a SQLite database (no "SQLite format 3" header); check the path`,
      );
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, DB_HEADER_SIZE);
  const rawPageSize = view.getUint16(16, false);
  const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new DatabaseError(
      `${name} is not a valid SQLite database: invalid page size ${rawPageSize} in its header`,
    );
  }
  const writeVersion = bytes[18];
  const readVersion = bytes[19];
  return {
    pageSize,
    pageCount: view.getUint32(28, false),
    changeCounter: view.getUint32(24, false),
    writeVersion,
    readVersion,
    walMode: writeVersion === 2 && readVersion === 2,
    versionValidFor: view.getUint32(92, false),
  };
}

/**
 * Reads and parses the header of the database file at `path`.
 * Throws {@link DatabaseError} naming the path when it is missing, unreadable, a directory, too short or not SQLite.
 */
export async function readDbHeader(path: string): Promise<DbHeader> {
  let f: Deno.FsFile;
  try {
    f = await Deno.open(path, { read: true });
  } catch (err) {
    throw openFailure(err, path);
  }
  try {
    const buf = new Uint8Array(DB_HEADER_SIZE);
    let got = 0;
    while (got < DB_HEADER_SIZE) {
      const n = await f.read(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got === 0) {
      throw new DatabaseError(
        `${path} is empty: not a SQLite database yet; create it with your application first`,
      );
    }
    return parseDbHeader(buf.subarray(0, got), path);
  } catch (err) {
    if (err instanceof DatabaseError) throw err;
    // Reading a directory fails with EISDIR here, not at open.
    throw openFailure(err, path);
  } finally {
    f.close();
  }
}

/** Synchronous variant of {@link readDbHeader}, for the (synchronous) replication connection. */
export function readDbHeaderSync(path: string): DbHeader {
  let f: Deno.FsFile;
  try {
    f = Deno.openSync(path, { read: true });
  } catch (err) {
    throw openFailure(err, path);
  }
  try {
    const buf = new Uint8Array(DB_HEADER_SIZE);
    let got = 0;
    while (got < DB_HEADER_SIZE) {
      const n = f.readSync(buf.subarray(got));
      if (n === null) break;
      got += n;
    }
    if (got === 0) {
      throw new DatabaseError(
        `${path} is empty: not a SQLite database yet; create it with your application first`,
      );
    }
    return parseDbHeader(buf.subarray(0, got), path);
  } catch (err) {
    if (err instanceof DatabaseError) throw err;
    throw openFailure(err, path);
  } finally {
    f.close();
  }
}

/** Maps a failure to open/read a database file to a one-line {@link DatabaseError} naming the path. */
function openFailure(err: unknown, path: string): DatabaseError {
  if (err instanceof Deno.errors.NotFound) {
    return new DatabaseError(`database ${path} does not exist; check the path`, { cause: err });
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new DatabaseError(`cannot read database ${path}: permission denied; check its owner and mode`, {
      cause: err,
    });
  }
  if (err instanceof Deno.errors.IsADirectory || /is a directory/i.test(messageOf(err))) {
    return new DatabaseError(`${path} is a directory, not a SQLite database file; check the path`, {
      cause: err,
    });
  }
  return new DatabaseError(`cannot read database ${path}: ${messageOf(err)}`, { cause: err });
}
