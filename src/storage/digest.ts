/**
 * SHA-256 of object bodies, stored as S3 user metadata so a download can be checked end to end.
 * Kept apart from `s3.ts` so file-only code paths need not load the AWS SDK.
 *
 * @module
 */

import { nodeCrypto } from "../util/node_crypto.ts";

/** The metadata key holding the body's hex SHA-256 (`x-amz-meta-sha256` on the wire). */
export const SHA256_METADATA_KEY = "sha256";

/** Hex SHA-256 of bytes (node:crypto: SHA-NI fast; loaded on first use). */
export async function sha256Hex(data: Uint8Array): Promise<string> {
  const { createHash } = await nodeCrypto();
  return createHash("sha256").update(data).digest("hex");
}
