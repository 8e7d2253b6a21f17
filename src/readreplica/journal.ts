/**
 * SQLite's rollback journal ("hot journal") format, written by walrust so that SQLite itself can undo a
 * half-applied LTX file: if `walrust replicate` dies while it is writing pages into the replica, the next
 * SQLite connection that opens the replica read-write finds `<db>-journal`, sees that no process holds a
 * RESERVED lock, and plays the journal back (restoring every journaled page and the original file size)
 * before anyone reads. See https://www.sqlite.org/fileformat2.html#the_rollback_journal and SQLite's
 * pager.c (`writeJournalHdr`, `readJournalHdr`, `pager_playback`, `pager_cksum`).
 *
 * Layout (all integers big-endian):
 * - header, padded to `sectorSize` bytes: magic `d9 d5 05 f9 20 a1 63 d7`, u32 record count, u32 checksum
 *   nonce, u32 original database size in pages, u32 sector size, u32 page size;
 * - records: u32 page number, the page's original content, u32 checksum
 *   (`nonce + data[pageSize-200] + data[pageSize-400] + …` over indices > 0, modulo 2^32).
 *
 * A journal is "hot" (SQLite rolls it back) only if its first byte is non-zero, so a partly created file
 * cannot be mistaken for one; records whose checksum does not match stop the playback, which is harmless
 * because walrust fsyncs the whole journal before it changes the database file.
 *
 * @module
 */

/** The 8 magic bytes every rollback journal starts with. */
export const JOURNAL_MAGIC: Uint8Array = new Uint8Array([0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);

/**
 * Sector size written into the journal header (the header occupies one sector). SQLite's unix VFS reports
 * 4096 (SQLITE_DEFAULT_SECTOR_SIZE); playback uses whatever the header says.
 */
export const JOURNAL_SECTOR_SIZE = 4096;

/** The fields of a journal header. */
export interface JournalHeader {
  /** Number of page records that follow. */
  records: number;
  /** Random nonce that seeds every record checksum (so stale bytes from an old journal never verify). */
  nonce: number;
  /** Database size in pages before the change: playback truncates or extends the file back to this. */
  originalPages: number;
  /** Page size of the database. */
  pageSize: number;
  /** Sector size (the header's padded length). */
  sectorSize: number;
}

/** SQLite's `pager_cksum`: the nonce plus every 200th byte counted back from the end of the page. */
export function journalChecksum(nonce: number, page: Uint8Array): number {
  let sum = nonce >>> 0;
  for (let i = page.length - 200; i > 0; i -= 200) sum = (sum + page[i]) >>> 0;
  return sum;
}

/** Encodes a journal header into one sector. */
export function encodeJournalHeader(h: JournalHeader): Uint8Array {
  const out = new Uint8Array(h.sectorSize);
  const v = new DataView(out.buffer);
  out.set(JOURNAL_MAGIC, 0);
  v.setUint32(8, h.records >>> 0);
  v.setUint32(12, h.nonce >>> 0);
  v.setUint32(16, h.originalPages >>> 0);
  v.setUint32(20, h.sectorSize >>> 0);
  v.setUint32(24, h.pageSize >>> 0);
  return out;
}

/** Parses a journal header; null when the bytes are not one (wrong magic, bad sizes, too short). */
export function parseJournalHeader(b: Uint8Array): JournalHeader | null {
  if (b.length < 28) return null;
  for (let i = 0; i < JOURNAL_MAGIC.length; i++) if (b[i] !== JOURNAL_MAGIC[i]) return null;
  const v = new DataView(b.buffer, b.byteOffset, 28);
  const h: JournalHeader = {
    records: v.getUint32(8),
    nonce: v.getUint32(12),
    originalPages: v.getUint32(16),
    sectorSize: v.getUint32(20),
    pageSize: v.getUint32(24),
  };
  const pow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (!pow2(h.pageSize) || h.pageSize < 512 || h.pageSize > 65536) return null;
  if (!pow2(h.sectorSize) || h.sectorSize < 32 || h.sectorSize > 65536) return null;
  return h;
}

/** Encodes one record: page number, original page content, checksum. */
export function encodeJournalRecord(pgno: number, page: Uint8Array, nonce: number): Uint8Array {
  const out = new Uint8Array(page.length + 8);
  const v = new DataView(out.buffer);
  v.setUint32(0, pgno >>> 0);
  out.set(page, 4);
  v.setUint32(4 + page.length, journalChecksum(nonce, page));
  return out;
}

/** One decoded record. */
export interface JournalRecord {
  /** Page number. */
  pgno: number;
  /** The page's original content. */
  data: Uint8Array;
}

/**
 * Decodes a whole journal the way SQLite's playback reads it (for tests and diagnostics): the header, then
 * records until the count is reached, the bytes run out, or a checksum does not match.
 */
export function parseJournal(b: Uint8Array): { header: JournalHeader; records: JournalRecord[] } | null {
  const header = parseJournalHeader(b);
  if (!header) return null;
  const records: JournalRecord[] = [];
  const size = header.pageSize + 8;
  let off = header.sectorSize;
  for (let i = 0; i < header.records && off + size <= b.length; i++, off += size) {
    const v = new DataView(b.buffer, b.byteOffset + off, size);
    const pgno = v.getUint32(0);
    const data = b.slice(off + 4, off + 4 + header.pageSize);
    if (pgno === 0 || v.getUint32(4 + header.pageSize) !== journalChecksum(header.nonce, data)) break;
    records.push({ pgno, data });
  }
  return { header, records };
}
