/**
 * SHA-256 of object bodies, stored as S3 user metadata so a download can be checked end to end.
 * Kept apart from `s3.ts` so file-only code paths need not load the AWS SDK.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** The metadata key holding the body's hex SHA-256 (`x-amz-meta-sha256` on the wire). */
export const SHA256_METADATA_KEY = "sha256";

/** Hex SHA-256 of bytes (node:crypto: synchronous and SHA-NI fast). */
export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
