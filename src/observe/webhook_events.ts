/**
 * The names of webhook events, apart from the delivery code in `webhooks.ts` so the config loader can check
 * them without loading what deliveries need (`node:crypto` for signatures).
 *
 * @module
 */

/** Every event a webhook can receive; also the default set. */
export const WEBHOOK_EVENTS = [
  "upload_failed",
  "auth_failure",
  "corruption_detected",
  "circuit_breaker_open",
  "circuit_breaker_closed",
  "checkpoint_emergency",
  "verify_failed",
] as const;

/** The name of a webhook event. */
export type WebhookEventName = typeof WEBHOOK_EVENTS[number];
