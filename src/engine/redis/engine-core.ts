import type { Clock } from '../../util/clock.ts';
import { randomHex } from '../../util/random-pool.ts';
import { EngineUnavailableError } from '../../errors/gateway-error.ts';
import type { EngineLimits } from '../engine.ts';
import { isCluster, scriptRunner, type EngineClient, type ScriptRunner } from './client.ts';
import { DataFaults } from './data-faults.ts';
import { isDataFault, mapRedisError } from './errors.ts';
import { sessionKeys, type SessionKeys } from './keys.ts';
import type { EngineLogger } from './persistence.ts';
import { asArray } from './records.ts';
import { waitForReplicas } from './replication.ts';
import type { ScriptName } from './scripts/index.ts';
import { TickQueue, type QueuedCall } from './tick-queue.ts';

/** At most one connection-error log line per this many ms: an outage must not flood the logs. */
const ERROR_LOG_INTERVAL_MS = 5_000;
/** Sessions whose key names the engine keeps built (see keys): a few MB at most. */
const KEY_CACHE_MAX = 20_000;

export interface EngineCoreOptions {
  redis: EngineClient;
  clock: Clock;
  limits: EngineLimits;
  prefix: string;
  logger: EngineLogger | undefined;
  commandTimeoutMs: number;
  waitReplicas: number;
}

/**
 * What every part of the Redis engine shares (RedisEngine and its sessions, streams and
 * subscribers): the client, the script runner, key names, the mapping of Redis failures
 * to EngineUnavailableError, the per-tick batching of script calls, and the wait for
 * replicas. The parts hold it; none of them holds another part's state.
 */
export class EngineCore {
  readonly redis: EngineClient;
  readonly clock: Clock;
  readonly limits: EngineLimits;
  readonly prefix: string;
  readonly logger: EngineLogger | undefined;
  readonly commandTimeoutMs: number;
  /** Replicas that confirm writes and reads of streams (REDIS_WAIT_REPLICAS); 0 for none. */
  readonly waitReplicas: number;
  readonly #script: ScriptRunner;
  readonly #keyCache = new Map<string, SessionKeys>();
  /** Sessions whose calls go alone for now: Redis refused one for their data. */
  readonly #faults: DataFaults;
  #lastErrorLog = -Infinity;

  constructor(options: EngineCoreOptions) {
    this.redis = options.redis;
    this.clock = options.clock;
    this.limits = options.limits;
    this.prefix = options.prefix;
    this.logger = options.logger;
    this.commandTimeoutMs = options.commandTimeoutMs;
    this.waitReplicas = options.waitReplicas;
    this.#script = scriptRunner(options.redis);
    this.#faults = new DataFaults(options.clock);
  }

  /**
   * The session's key names, built once and kept while the session is busy: every append
   * and checkpoint needs them, and building them is seven strings and an encode. Bounded:
   * past KEY_CACHE_MAX sessions the cache starts over.
   */
  keys(sessionId: string): SessionKeys {
    let keys = this.#keyCache.get(sessionId);
    if (keys === undefined) {
      if (this.#keyCache.size >= KEY_CACHE_MAX) this.#keyCache.clear();
      keys = sessionKeys(this.prefix, sessionId);
      this.#keyCache.set(sessionId, keys);
    }
    return keys;
  }

  /** Runs a Redis call; a failure to reach Redis rejects as EngineUnavailableError (see errors.ts). */
  async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapRedisError(err, operation);
    }
  }

  /** One script call (see scripts/), failures mapped as by `call`. */
  run(
    operation: string,
    name: ScriptName,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    return this.call(operation, () => this.#script(name, keys, args));
  }

  /**
   * A TickQueue: chunks of at most maxItems calls and maxWeight weight, one session per
   * chunk on a cluster; paced with `pace` (at most `items` in flight, a chunk out for
   * `stallMs` no longer counting).
   */
  tickQueue<T extends QueuedCall>(
    send: (chunk: T[]) => Promise<void>,
    maxItems: number,
    maxWeight = maxItems,
    pace?: { items: number; stallMs: number },
  ): TickQueue<T> {
    return new TickQueue<T>({
      send,
      maxItems,
      maxWeight,
      perSession: isCluster(this.redis),
      alone: this.#faults,
      ...(pace && { maxRoundItems: pace.items, stallMs: pace.stallMs }),
    });
  }

  /**
   * Redis refused one of the session's calls for what its keys hold: its calls go alone
   * for a while (see DataFaults), in every queue. Logged once per quarantine.
   */
  dataFault(sessionId: string, err: unknown): void {
    if (!this.#faults.add(sessionId)) return;
    this.logger?.warn(
      { sessionId, err: err instanceof Error ? err.message : String(err) },
      "redis engine: a session's keys refused a script; its calls are not batched for a minute",
    );
  }

  /**
   * One script call for a round's queued calls of one kind (see TickQueue): `add` puts each
   * call's keys and arguments after `head`, in order, and each call gets its own reply,
   * parsed. A failed call rejects every call it carried (their outcome is unknown, like a
   * timed-out single one); a reply that does not parse rejects only its own call.
   * `confirm`, when given, runs after the reply and before any call resolves; if it
   * rejects, so does every call (appends wait for replicas there).
   *
   * A script that Redis refused for what one call's keys hold (a key of the wrong type,
   * left by another program or an older layout) would fail every session batched with
   * it, on every round it shares with that session. So a chunk refused with such an error
   * (not an outage: see errors.ts) is sent again one call per script, and only the call
   * whose data is at fault fails. Running a call again is safe for every batched script:
   * appends dedupe by event id, checkpoints and releases are fenced by generation, and a
   * takeover run twice leaves the later generation, as two takeovers would. The session
   * at fault is then quarantined (dataFault): its later calls are not batched with
   * others', so the next rounds cost one more call instead of a refusal and a resend.
   */
  async sendChunk<R, T extends { sessionId: string; resolve(value: R): void; reject(err: unknown): void }>(
    chunk: readonly T[],
    operation: string,
    script: ScriptName,
    head: (string | number)[],
    add: (call: T, keys: string[], args: (string | number)[]) => void,
    parse: (reply: unknown, call: T) => R,
    confirm?: (replies: unknown[]) => Promise<void>,
  ): Promise<void> {
    const headLength = head.length;
    let replies: unknown[];
    /** With a chunk sent again call by call: why each call that failed alone failed. */
    let failures: unknown[] | undefined;
    try {
      try {
        replies = await this.#runChunk(chunk, operation, script, head, add);
      } catch (err) {
        if (!isDataFault(err)) throw err;
        if (chunk.length === 1) {
          this.dataFault(chunk[0]!.sessionId, err);
          throw err;
        }
        failures = new Array<unknown>(chunk.length);
        replies = await Promise.all(
          chunk.map((call, i) =>
            this.#runChunk([call], operation, script, head.slice(0, headLength), add).then(
              (reply) => reply[0],
              (alone: unknown) => {
                failures![i] = alone ?? err;
                if (isDataFault(alone)) this.dataFault(call.sessionId, alone);
              },
            ),
          ),
        );
      }
      await confirm?.(replies);
    } catch (err) {
      for (const call of chunk) call.reject(err);
      return;
    }
    chunk.forEach((call, i) => {
      const failure = failures?.[i];
      if (failure !== undefined) return call.reject(failure);
      try {
        call.resolve(parse(replies[i], call));
      } catch (err) {
        call.reject(err);
      }
    });
  }

  async #runChunk<T>(
    chunk: readonly T[],
    operation: string,
    script: ScriptName,
    args: (string | number)[],
    add: (call: T, keys: string[], args: (string | number)[]) => void,
  ): Promise<unknown[]> {
    const keys: string[] = [];
    for (const call of chunk) add(call, keys, args);
    const replies = asArray(await this.run(operation, script, keys, args), operation);
    if (replies.length !== chunk.length)
      throw new Error(`redis engine: ${operation} returned a wrong number of replies`);
    return replies;
  }

  /**
   * With waitReplicas, resolves once that many replicas of the master holding `keys`
   * have the writes made so far (WAIT; see replication.ts). A write acknowledged after
   * this survives a failover to one of them; one not confirmed in time rejects with
   * EngineUnavailableError, which callers report as a retryable `unavailable`, and the
   * retry is deduplicated. WAIT blocks its connection while it waits, so it is bounded by
   * half the command timeout: commands queued behind it still fit in theirs. A retry that
   * finds its events stored writes nothing, possibly on a new connection, and its WAIT
   * still covers the first attempt (replication.ts says why).
   *
   * What waits: writes of events (append, sessions created and changed), subscribers
   * created and taken over, checkpoints, and reads of streams (readConfirmed). A lost
   * subscriber record closes its connection 4009 after the failover (the resync's
   * generation check finds no record); a lost takeover leaves the record a generation
   * behind its connection, whose checkpoints are then fenced and whose generation the next
   * resume takes again; a lost checkpoint replays acknowledged events to a resume without
   * lastSeq. Releases and ends do not wait: nobody is answered for them, and losing one
   * only leaves a resume token valid longer than asked.
   */
  async replicated(operation: string, keys: readonly string[], what = 'the write'): Promise<void> {
    if (this.waitReplicas === 0) return;
    const timeoutMs = Math.max(1, Math.floor(this.commandTimeoutMs / 2));
    const confirmed = await this.call(operation, () =>
      waitForReplicas(this.redis, keys, this.waitReplicas, timeoutMs),
    );
    if (confirmed < this.waitReplicas) {
      const err = new EngineUnavailableError(
        `redis ${operation}: ${confirmed} of ${this.waitReplicas} replicas confirmed ${what} within ${timeoutMs} ms`,
      );
      // The same throttle as connection errors: a lagging replica must not flood the log.
      this.logConnectionError(err, 'redis engine: replicas did not confirm a write');
      throw err;
    }
  }

  /**
   * sendChunk's `confirm` for a chunk of writes that must reach the replicas (replicated),
   * each call's key naming its master on a cluster. Undefined unless replicas are waited
   * for: then no closure and no key list.
   */
  confirmer<T>(
    operation: string,
    what: string,
    chunk: readonly T[],
    keyOf: (call: T) => string,
  ): (() => Promise<void>) | undefined {
    if (this.waitReplicas === 0) return undefined;
    return () => this.replicated(operation, chunk.map(keyOf), what);
  }

  /**
   * With waitReplicas, what a read returned counts only once the replicas have it: the
   * read moved its connection's replication offset past every entry it saw (see
   * replication.ts), so WAIT on it confirms them. A node then never delivers, nor takes
   * for its head, an event that a failover could still lose (another node's append may
   * not be confirmed yet); unconfirmed, the read fails as `unavailable` and is retried.
   */
  readConfirmed(operation: string, k: SessionKeys): Promise<void> {
    return this.replicated(operation, [k.stream], 'the events read');
  }

  /**
   * With waitReplicas the scripts send no head notice (scriptsFor's headNotices): they go
   * out here, once WAIT confirmed the writes, so another node never hears of a head a
   * failover could take back (it would take that head for seen, and its resync would
   * start a new epoch: 4011 for its subscribers). One loNotify call for all of them on one
   * Redis, an SPUBLISH each on a cluster. Fire and forget, like the scripts' notices: the
   * stream stays the truth, and a lost notice only delays a node until its next notice
   * or read.
   */
  noticeHeads(heads: ReadonlyArray<{ k: SessionKeys; epoch: string; headSeq: number }>): void {
    const redis = this.redis;
    if (isCluster(redis)) {
      for (const { k, epoch, headSeq } of heads)
        redis.spublish(k.channel, `${headSeq} ${epoch}`).catch(() => {});
      return;
    }
    const args: string[] = [];
    for (const { k, epoch, headSeq } of heads) args.push(k.channel, `${headSeq} ${epoch}`);
    this.#script('loNotify', [], args).catch(() => {});
  }

  logConnectionError(err: Error, message = 'redis engine: connection error'): void {
    const t = performance.now();
    if (t - this.#lastErrorLog < ERROR_LOG_INTERVAL_MS) return;
    this.#lastErrorLog = t;
    this.logger?.warn({ err: err.message, status: this.redis.status }, message);
  }
}

/** A fresh candidate epoch for a script to adopt if it finds the session's meta missing. */
export function newEpoch(): string {
  return randomHex(8);
}

/** Script arguments must be integers (PEXPIRE and friends reject fractions). */
export function int(n: number): number {
  return Number.isFinite(n) ? Math.trunc(n) : 0;
}
