import type { Recorder } from './recorder.ts';

/**
 * What every client of the swarm shares: where the gateways are, the tokens to present,
 * the recorder, and the behaviour knobs a scenario sets.
 */
export interface Targets {
  /** Base HTTP URLs of the gateway nodes (or of the fault proxies in front of them). */
  readonly urls: readonly string[];
}

export function wsUrl(base: string): string {
  return base.replace(/^http/, 'ws') + '/v1/realtime';
}

export interface Behaviour {
  /** Subprotocol mix: probability that a connection uses msgpack. */
  msgpackShare: number;
  /** Probability that a resume sends `lastSeq` (otherwise the stored checkpoint decides). */
  resumeWithLastSeq: number;
  /** Honest cumulative acks after every 1..ackEveryMax deliveries. */
  ackEveryMax: number;
  /** Per ack: probabilities of sending an extra stale, repeated or ahead-of-delivery ack. */
  staleAck: number;
  repeatAck: number;
  aheadAck: number;
  /** Per ack: probability of also sending it again 0.2–2 s later (a late, out-of-order ack). */
  lateAck: number;
  /** Per resume: probability of naming an epoch the stream never had (must be 4011). */
  bogusEpochResume: number;
  /** Reconnect backoff (full jitter). */
  backoffBaseMs: number;
  backoffCapMs: number;
  /** No frame for this long on a welcomed connection: it is dead, drop it and resume. */
  deadAfterMs: number;
  /** Publisher: events per second per publisher, and unanswered publishes at most. */
  publishRate: number;
  publishWindow: number;
  /** Bytes of text per published event (slow-consumer scenarios want big frames). */
  payloadBytes: number;
}

export const DEFAULT_BEHAVIOUR: Behaviour = {
  msgpackShare: 0.5,
  resumeWithLastSeq: 0.5,
  ackEveryMax: 16,
  staleAck: 0.05,
  repeatAck: 0.05,
  aheadAck: 0.02,
  lateAck: 0.05,
  bogusEpochResume: 0,
  backoffBaseMs: 100,
  backoffCapMs: 2000,
  deadAfterMs: 6000,
  publishRate: 10,
  publishWindow: 16,
  payloadBytes: 32,
};

export interface SwarmContext {
  readonly targets: Targets;
  /** The slow lane: where slow subscribers connect (bandwidth-limited proxies). */
  readonly slowTargets: Targets;
  readonly recorder: Recorder;
  readonly behaviour: Behaviour;
  /** A bearer token for publishers (role service) and one for subscribers (role agent). */
  readonly publisherToken: string;
  readonly subscriberToken: string;
  /** An operator token, for the inspector (reports of subscribers that did not drain). */
  readonly operatorToken?: string;
}
