/**
 * Scrubbing of text that leaves the process through the observe server or webhooks (labels, JSON fields):
 * credentials in URLs, query strings (pre-signed URLs carry signatures there) and registered secrets.
 *
 * @module
 */

import { redact } from "./log.ts";

const URL_LIKE = /\b([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^\s@]*@)?([^?#\s]*)(\?[^#\s]*)?(#\S*)?/g;

/**
 * Makes `text` safe to publish: user info (`user:pass@`), query strings and fragments are removed from
 * anything URL-shaped, and every secret registered with `registerSecret` is masked.
 */
export function scrub(text: string): string {
  return redact(
    text.replace(URL_LIKE, (_m, scheme: string, _user: string, rest: string) => `${scheme}${rest}`),
  );
}
