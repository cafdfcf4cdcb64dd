import type { Envelope } from '../../protocol/envelope.ts';
import { envelopeText } from '../../protocol/envelope-text.ts';
import { GatewayError } from '../../errors/gateway-error.ts';
import type { AppendOutcome, AppendResult, ReadResult, SeenPosition, StreamHead } from '../engine.ts';
import { isCluster } from './client.ts';
import { int, newEpoch, type EngineCore } from './engine-core.ts';
import type { SessionKeys } from './keys.ts';
import { asArray, parseEntry, parseHead, toInt } from './records.ts';
import type { QueuedCall, TickQueue } from './tick-queue.ts';

/** read() returns at most this many events per call, whatever `limit` asks (the contract allows fewer). */
export const MAX_READ_LIMIT = 10_000;
/**
 * endStream passes the subscriber keys it read; a subscriber created between that read
 * and the script is reported back and covered by one more call (see END_STREAM_LUA).
 */
const END_STREAM_MAX_PASSES = 4;
/**
 * Most session batches, and events, one loAppend call carries (the rest go in further
 * calls of the same tick): a longer script blocks Redis longer.
 */
const MAX_APPEND_SESSIONS = 256;
const MAX_APPEND_EVENTS = 2048;

interface PendingAppend extends QueuedCall {
  k: SessionKeys;
  events: readonly Envelope[];
  seen: SeenPosition | undefined;
  resolve(result: AppendResult): void;
  reject(err: unknown): void;
}

/**
 * The event streams of the Redis engine: a Redis Stream per session with its meta (epoch,
 * head, end) and its dedupe ids, changed only by the scripts of scripts/stream-scripts.ts.
 */
export class RedisStreams {
  readonly #core: EngineCore;
  readonly #appends: TickQueue<PendingAppend>;

  constructor(core: EngineCore) {
    this.#core = core;
    this.#appends = core.tickQueue<PendingAppend>(
      (chunk) => this.#sendAppends(chunk),
      MAX_APPEND_SESSIONS,
      MAX_APPEND_EVENTS,
    );
  }

  /**
   * Calls made in the same tick, for any number of sessions, go to Redis together (see
   * TickQueue): one loAppend call for all of them on one Redis, one per session on a
   * cluster, where a script may only touch keys of one slot. Each batch is applied
   * atomically and gets its own outcome; calls for one session are applied in the order
   * they were made. A failed call (a timeout, Redis unreachable) rejects every batch it
   * carried; like any append, that is safe to retry (dedupe by eventId).
   */
  append(sessionId: string, events: readonly Envelope[], seen?: SeenPosition): Promise<AppendResult> {
    return new Promise((resolve, reject) =>
      this.#appends.push({
        sessionId,
        weight: Math.max(1, events.length),
        k: this.#core.keys(sessionId),
        events,
        seen,
        resolve,
        reject,
      }),
    );
  }

  #sendAppends(chunk: readonly PendingAppend[]): Promise<void> {
    const core = this.#core;
    return core.sendChunk(
      chunk,
      'append',
      'loAppend',
      [core.limits.historyMaxEvents, newEpoch()],
      ({ k, events, seen }, keys, args) => {
        keys.push(k.stream, k.meta, k.ids);
        // the session's header (see appendLua); epochs are hex, so never '-'
        args.push(`${events.length} ${Math.max(0, int(seen?.headSeq ?? 0))} ${seen?.epoch || '-'}`);
        for (const event of events) args.push(event.eventId, envelopeText(event));
      },
      (reply, pending) => parseAppendReply(reply, pending.events.length),
      // nothing to confirm (and no closure, no key list) unless replicas are waited for
      core.waitReplicas > 0
        ? async (replies) => {
            await core.replicated(
              'append',
              chunk.map((call) => call.k.stream),
            );
            // Duplicates too: a retry's events may be ones whose first attempt the replicas
            // did not confirm, so no node has heard of them yet.
            const heads: Array<{ k: SessionKeys; epoch: string; headSeq: number }> = [];
            chunk.forEach((call, i) => {
              const head = appendReplyHead(replies[i]);
              if (head) heads.push({ k: call.k, ...head });
            });
            core.noticeHeads(heads);
          }
        : undefined,
    );
  }

  async read(sessionId: string, after: number, limit: number): Promise<ReadResult> {
    const core = this.#core;
    const k = core.keys(sessionId);
    const from = Number.isFinite(after) ? Math.max(0, Math.floor(after)) : 0;
    const count = Number.isFinite(limit) ? Math.min(MAX_READ_LIMIT, Math.max(0, Math.floor(limit))) : 0;
    const reply = asArray(
      await core.run('read', 'loRead', [k.stream, k.meta, k.ids], [newEpoch(), from, count]),
      'read',
    );
    if (core.waitReplicas > 0) await core.readConfirmed('read', k);
    const events = asArray(reply[4], 'entries').map(parseEntry);
    return { events, firstSeq: toInt(reply[3], 'firstSeq'), ...parseHead(reply) };
  }

  async head(sessionId: string, seen?: SeenPosition): Promise<StreamHead> {
    const core = this.#core;
    const k = core.keys(sessionId);
    const ttlMs = Math.max(1, Math.trunc(core.limits.historyTtlAfterEndS * 1000));
    const args = [newEpoch(), seen?.epoch ?? '', seen?.headSeq ?? 0, ttlMs];
    const reply = asArray(
      await core.run('head', 'loHead', [k.stream, k.meta, k.ids, k.session], args),
      'head',
    );
    if (core.waitReplicas > 0) await core.readConfirmed('head', k);
    return parseHead(reply);
  }

  /**
   * HMGET of each stream's meta: one pipeline on one Redis; on a cluster one command per
   * session (a pipeline there must stay in one slot), sent in the same turn, each settling
   * alone: a read its master did not answer is null, and only if none was answered does
   * the call reject. Read only, and not confirmed with WAIT: a caller acts on what it
   * finds through `head` and `read`, which are.
   */
  async peekHeads(sessionIds: readonly string[]): Promise<Array<StreamHead | undefined | null>> {
    if (sessionIds.length === 0) return [];
    const core = this.#core;
    const redis = core.redis;
    const metas = sessionIds.map((id) => core.keys(id).meta);
    const replies = await core.call('peekHeads', async () => {
      if (isCluster(redis)) {
        let failure: Error | undefined;
        const settled = await Promise.all(
          metas.map((meta) =>
            redis.hmget(meta, 'epoch', 'head', 'endedAt').catch((err: Error) => {
              failure = err;
              return null;
            }),
          ),
        );
        if (failure && settled.every((reply) => reply === null)) throw failure;
        return settled;
      }
      const pipeline = redis.pipeline();
      for (const meta of metas) pipeline.hmget(meta, 'epoch', 'head', 'endedAt');
      const results = (await pipeline.exec()) ?? [];
      return results.map(([err, reply]) => {
        if (err) throw err;
        return reply as Array<string | null>;
      });
    });
    return replies.map((reply) => {
      if (reply === null) return null;
      return reply[0] === null || reply[0] === undefined ? undefined : parseHead(reply);
    });
  }

  async endStream(sessionId: string): Promise<StreamHead> {
    const core = this.#core;
    const k = core.keys(sessionId);
    const epoch = newEpoch();
    // The script may only touch keys it is given, so it gets the subscriber keys from the
    // subs index read just before; members it reports as missing (created in between)
    // are added for another pass. See END_STREAM_LUA.
    let members = await core.call('endStream', () => core.redis.smembers(k.subs));
    for (let pass = 1; ; pass++) {
      const reply = asArray(
        await core.run(
          'endStream',
          'loEndStream',
          [k.stream, k.meta, k.ids, k.session, k.subs, ...members.map((m) => k.subPrefix + m)],
          [epoch, core.limits.historyTtlAfterEndS, ...members],
        ),
        'endStream',
      );
      const missing = asArray(reply[3], 'missing').map(String);
      if (missing.length === 0 || pass >= END_STREAM_MAX_PASSES) return parseHead(reply);
      members = [...members, ...missing];
    }
  }

  /** Sends the appends queued for this tick now (engine close: before QUIT). */
  flush(): void {
    this.#appends.flush();
  }
}

/**
 * The `<epoch> <head>` an append reply opens with (see parseAppendReply), for the notice
 * the engine sends after WAIT; undefined when the reply does not carry them.
 */
function appendReplyHead(raw: unknown): { epoch: string; headSeq: number } | undefined {
  if (typeof raw !== 'string') return undefined;
  const [epoch, head] = raw.split(' ', 2);
  const headSeq = Number(head);
  return epoch && Number.isSafeInteger(headSeq) ? { epoch, headSeq } : undefined;
}

/** One session's part of a loAppend reply (see appendLua): `<epoch> <head> <endedAt|-> <refused|-> <seq> <dup> …`. */
function parseAppendReply(raw: unknown, count: number): AppendResult {
  if (typeof raw !== 'string') throw new Error('redis engine: an append reply is not a string');
  const parts = raw.split(' ');
  if (parts[3] === 'ended') throw new GatewayError('session_ended', 'the stream has ended');
  if (parts.length !== 4 + 2 * count)
    throw new Error('redis engine: append returned a wrong number of outcomes');
  const outcomes: AppendOutcome[] = [];
  for (let i = 4; i < parts.length; i += 2) {
    outcomes.push({ seq: toInt(parts[i], 'seq'), duplicate: parts[i + 1] === '1' });
  }
  const headSeq = toInt(parts[1], 'head');
  const epoch = parts[0]!;
  return parts[2] === '-'
    ? { outcomes, headSeq, epoch }
    : { outcomes, headSeq, epoch, endedAt: toInt(parts[2], 'endedAt') };
}
