import { DEFAULTS } from '../../client/client.ts';

/**
 * How long the G clients wait before a delayed ack: the client SDK's `acks.intervalMs`
 * default, as real clients do, unless BENCH_G_ACK_MS sets another for a diagnostic run
 * (what acks cost the gateway). Such a run says so and records it as `gatewayAckMs`.
 */
const override = process.env['BENCH_G_ACK_MS'];
export const GATEWAY_ACK_MS = override ? Number(override) : DEFAULTS.ackIntervalMs;
if (!(GATEWAY_ACK_MS > 0))
  throw new Error(`BENCH_G_ACK_MS must be a positive number of ms, got ${String(override)}`);
export const GATEWAY_ACK_OVERRIDDEN = override !== undefined && override !== '';
