/** The walrust version, printed by `walrust --version` and sent as the webhook User-Agent. */
export const VERSION = "0.1.0";
