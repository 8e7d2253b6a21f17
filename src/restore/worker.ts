/**
 * The decode Worker of `parallel.ts`: claims segments of a local snapshot LTX file from the top
 * ({@link WorkerRequest}, `claimSegment`) until none is left, decodes each with `decodeSegment`, writes its
 * pages into the output file at their own offset through its own file handle, and answers with the frames
 * read, each segment's CRC-64 and end ({@link WorkerReply}). Any failure is an answer, never an exception:
 * the restore then decodes the file again with the full decoder. With `rawCrc`, each segment's
 * CRC-64 over its raw bytes comes back too (the digest check of a directory replica's snapshot).
 *
 * @module
 */

import { Crc64 } from "../ltx/checksum.ts";
import { writeAll } from "../util/fs.ts";
import { claimSegment, type WorkerPart, type WorkerReply, type WorkerRequest } from "./parallel.ts";
import { fileRangeSource, releaseChunk, type ReleasingSink, SegmentDecoder } from "./segment.ts";

/** The worker's global scope (typed here: the project compiles with the window library). */
const scope = self as unknown as {
  onmessage: ((e: MessageEvent<WorkerRequest>) => void) | null;
  postMessage(message: WorkerReply): void;
  close(): void;
};

/** Decodes the segments it can claim; every failure becomes a `declined` answer. */
async function handle(req: WorkerRequest): Promise<WorkerReply> {
  let out: Deno.FsFile | undefined;
  const parts: WorkerPart[] = [];
  try {
    const decoder = new SegmentDecoder();
    for (let i = claimSegment(req.claims, true); i >= 0; i = claimSegment(req.claims, true)) {
      const seg = req.segments[i];
      out ??= await Deno.open(req.outPath, { write: true });
      await out.seek((seg.first - 1) * req.spec.pageSize, Deno.SeekMode.Start);
      const file = out;
      // One write in flight while the next chunk decodes; each chunk is handed back once written.
      let pending: Promise<void> = Promise.resolve();
      const sink: ReleasingSink = {
        releasesChunks: true,
        async write(chunk: Uint8Array): Promise<void> {
          await pending;
          pending = writeAll(file, chunk).finally(() => releaseChunk(chunk));
          pending.catch(() => {}); // awaited (and thrown) by the next write or the end
        },
      };
      const crc = new Crc64();
      const raw = req.rawCrc ? new Crc64() : null;
      const source = await fileRangeSource(req.ltxPath, seg.start, seg.end);
      try {
        const result = await decoder.decode(
          source,
          seg.start,
          { ...req.spec, first: seg.first },
          crc,
          raw,
          sink,
        );
        await pending;
        const part: WorkerPart = { index: i, result, crc: crc.digest(), consumed: result.consumed };
        if (raw) part.raw = raw.digest();
        parts.push(part);
      } finally {
        await pending.catch(() => {});
        source.close();
      }
    }
    return { ok: true, parts };
  } catch (err) {
    return { ok: false, declined: err instanceof Error ? `${err.name}: ${err.message}` : String(err) };
  } finally {
    try {
      out?.close();
    } catch { /* already closed */ }
  }
}

scope.onmessage = (e: MessageEvent<WorkerRequest>) => {
  void handle(e.data).then((reply) => scope.postMessage(reply));
};
