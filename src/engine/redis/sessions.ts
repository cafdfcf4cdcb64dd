import type { Envelope } from '../../protocol/envelope.ts';
import { envelopeText } from '../../protocol/envelope-text.ts';
import { GatewayError } from '../../errors/gateway-error.ts';
import type {
  NewSession,
  SessionChange,
  SessionChangeResult,
  SessionPage,
  SessionQuery,
  SessionRecord,
  StreamHead,
} from '../engine.ts';
import { idOfOrderKey, positionOfOrderKey, sessionOrderKey } from '../session-order.ts';
import { int, newEpoch, type EngineCore } from './engine-core.ts';
import { mapRedisError } from './errors.ts';
import { idempotencyKey, ownerIndexKey, tenantIndexKey } from './keys.ts';
import { asArray, parseHead, toInt } from './records.ts';
import type { QueuedCall, TickQueue } from './tick-queue.ts';

export const DEFAULT_IDEMPOTENCY_TTL_S = 86_400;
/**
 * A listing reads at most this many batches of index entries: entries whose record is
 * gone are skipped, and a page that had to skip this much ends early (with `next`).
 */
const LIST_MAX_ROUNDS = 8;
/**
 * A listing removes an index entry whose record is missing only once the entry is older
 * than this: a younger one may be a session whose record is being written right now
 * (the index is written first). Older ones expired after their stream ended.
 */
const LIST_PRUNE_GRACE_MS = 10 * 60_000;
/** Most session records one MGET reads. */
const MAX_SESSION_READ_BATCH = 512;

/** One session record read; every getSession of the session in that tick shares it. */
interface PendingSessionRead extends QueuedCall {
  key: string;
  read: Promise<string | null>;
  resolve(json: string | null): void;
  reject(err: unknown): void;
}

/**
 * The call sessions of the Redis engine: their records (JSON under the session's tag),
 * the tenant's and owner's listings (sorted sets under the tenant's tag), idempotent
 * creation and the lifecycle's compare-and-set. `endStream` is the streams' (a terminal
 * change ends the stream too).
 */
export class RedisSessions {
  readonly #core: EngineCore;
  readonly #idempotencyTtlS: number;
  readonly #endStream: (sessionId: string) => Promise<StreamHead>;
  /** getSession reads queued and not sent yet, by session (see getSession). */
  readonly #readsQueued = new Map<string, PendingSessionRead>();
  readonly #reads: TickQueue<PendingSessionRead>;

  constructor(
    core: EngineCore,
    idempotencyTtlS: number,
    endStream: (sessionId: string) => Promise<StreamHead>,
  ) {
    this.#core = core;
    this.#idempotencyTtlS = idempotencyTtlS;
    this.#endStream = endStream;
    this.#reads = core.tickQueue<PendingSessionRead>(
      (chunk) => this.#sendReads(chunk),
      MAX_SESSION_READ_BATCH,
    );
  }

  /**
   * With an idempotency key, in three steps, each safe to repeat:
   * 1. claim: one script on the idempotency key stores (session id, record JSON, event
   *    JSON) unless a claim exists, and returns the claim that holds. This is where
   *    concurrent calls are decided: exactly one of them claims.
   * 2. write the session: its listing entries (ZADD, in the tenant's slot), then the record
   *    with its `call.created` (loCreateSession: SET NX and the append, one script under
   *    the session's own tag). Every caller that sees an uncommitted claim does it, so a
   *    claimant that crashed or timed out between steps is repaired by the retry, and NX
   *    never overwrites a record that has moved on. Both writers would write the same JSON.
   * 3. mark the claim committed, so a later duplicate whose session has since expired
   *    (ended + retention) does not resurrect it; it gets the claimed snapshot instead.
   * The claim is remembered for `idempotencyTtlS`. Without a key: step 2 only.
   */
  async create(
    input: NewSession,
    idempotencyKeyValue?: string,
    event?: Envelope,
  ): Promise<{ session: SessionRecord; created: boolean }> {
    const core = this.#core;
    const result = await this.#create(input, idempotencyKeyValue, event);
    // the session's record and first event, and the idempotency claim in its tenant's slot
    const keys = [core.keys(result.session.id).session];
    if (idempotencyKeyValue !== undefined)
      keys.push(idempotencyKey(core.prefix, input.tenantId, input.ownerId, idempotencyKeyValue));
    await core.replicated('createSession', keys);
    // With replicas waited for, its script sends no head notice and none follows here: no
    // node watches a session before it exists, and one that starts to reads its head.
    return result;
  }

  async #create(
    input: NewSession,
    idempotencyKeyValue?: string,
    event?: Envelope,
  ): Promise<{ session: SessionRecord; created: boolean }> {
    const core = this.#core;
    const record: SessionRecord = { ...input, state: 'created', version: 1 };
    const json = JSON.stringify(record);
    const eventJson = event === undefined ? '' : envelopeText(event);
    if (idempotencyKeyValue === undefined) {
      await this.#write(record, json, eventJson);
      return { session: record, created: true };
    }
    const idem = idempotencyKey(core.prefix, input.tenantId, input.ownerId, idempotencyKeyValue);
    const claim = asArray(
      await core.run(
        'createSession',
        'loIdemClaim',
        [idem],
        [input.id, json, this.#idempotencyTtlS, eventJson],
      ),
      'claim',
    );
    const created = toInt(claim[0], 'created') === 1;
    const sessionId = String(claim[1]);
    const claimedJson = String(claim[2]);
    const claimed = JSON.parse(claimedJson) as SessionRecord;
    if (String(claim[3]) !== '1') {
      await this.#write(claimed, claimedJson, typeof claim[4] === 'string' ? claim[4] : '');
      // A repair of an old claim: its entry is old enough for a listing to have pruned it
      // while the record was missing, so it is entered again now that the record is there.
      if (!created) await this.#index(claimed);
      await core.run('createSession', 'loIdemCommit', [idem], []);
    }
    if (created) return { session: record, created: true };
    const current = await this.get(sessionId);
    return { session: current ?? claimed, created: false };
  }

  /** Listing entries first (see LIST_PRUNE_GRACE_MS), then the record and its first event. */
  async #write(record: SessionRecord, json: string, eventJson: string): Promise<void> {
    const core = this.#core;
    await this.#index(record);
    const k = core.keys(record.id);
    const args: (string | number)[] = [json, newEpoch(), core.limits.historyMaxEvents, k.channel];
    if (eventJson !== '') args.push((JSON.parse(eventJson) as Envelope).eventId, eventJson);
    await core.run('createSession', 'loCreateSession', [k.stream, k.meta, k.ids, k.session], args);
  }

  /** The session's entries in its tenant's and its owner's listing (one slot, one transaction). */
  async #index(record: SessionRecord): Promise<void> {
    const core = this.#core;
    const key = sessionOrderKey(record.createdAt, record.id);
    const tenantIndex = tenantIndexKey(core.prefix, record.tenantId);
    const ownerIndex = ownerIndexKey(core.prefix, record.tenantId, record.ownerId);
    const replies = await core.call('createSession', () =>
      core.redis.multi().zadd(tenantIndex, 0, key).zadd(ownerIndex, 0, key).exec(),
    );
    const failed = replies?.find(([err]) => err !== null)?.[0];
    if (!replies || failed) throw mapRedisError(failed ?? new Error('transaction aborted'), 'createSession');
  }

  /**
   * Reads made in the same tick, of any sessions, go to Redis as one MGET (see
   * TickQueue; on a Redis Cluster, one per session), and the reads of one session share
   * it: a crowd of fresh `hello`s to one session reads its record once per tick. A read
   * joins only a queued one, never one already sent: a read made after a write was
   * answered must see that write. Each caller gets its own copy of the record.
   */
  async get(sessionId: string): Promise<SessionRecord | undefined> {
    let pending = this.#readsQueued.get(sessionId);
    if (!pending) {
      let resolve!: (json: string | null) => void;
      let reject!: (err: unknown) => void;
      const read = new Promise<string | null>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      pending = { sessionId, weight: 1, key: this.#core.keys(sessionId).session, read, resolve, reject };
      this.#readsQueued.set(sessionId, pending);
      this.#reads.push(pending);
    }
    const json = await pending.read;
    return json === null ? undefined : (JSON.parse(json) as SessionRecord);
  }

  async #sendReads(chunk: readonly PendingSessionRead[]): Promise<void> {
    for (const read of chunk) this.#readsQueued.delete(read.sessionId);
    let values: (string | null)[];
    try {
      values = await this.#core.call('getSession', () =>
        this.#core.redis.mget(chunk.map((read) => read.key)),
      );
    } catch (err) {
      for (const read of chunk) read.reject(err);
      return;
    }
    chunk.forEach((read, i) => read.resolve(values[i] ?? null));
  }

  /**
   * One script (loTransitionSession) does the compare-and-set, the append and, for a
   * terminal change, the end of the stream. The end then also caps the session's
   * subscriber keys at the retention TTL, which needs their keys declared: that is one
   * more endStream call (a repeat of the end, see END_STREAM_LUA). If it fails the change
   * has happened all the same; this rejects, and a retry of the change is a replay.
   */
  async transition(sessionId: string, change: SessionChange): Promise<SessionChangeResult> {
    const core = this.#core;
    const k = core.keys(sessionId);
    const reply = asArray(
      await core.run(
        'transitionSession',
        'loTransitionSession',
        [k.stream, k.meta, k.ids, k.session, k.subs],
        [
          int(change.expectedVersion),
          JSON.stringify(change.next),
          change.endStream ? '1' : '0',
          core.limits.historyTtlAfterEndS,
          newEpoch(),
          core.limits.historyMaxEvents,
          k.channel,
          change.event.eventId,
          envelopeText(change.event),
        ],
      ),
      'transitionSession',
    );
    await core.replicated('transitionSession', [k.stream]);
    if (core.waitReplicas > 0 && String(reply[0]) === 'applied') {
      const { epoch, headSeq } = parseHead(reply.slice(1));
      core.noticeHeads([{ k, epoch, headSeq }]);
    }
    switch (String(reply[0])) {
      case 'not_found':
        return { status: 'not_found' };
      case 'conflict':
        return { status: 'conflict', current: JSON.parse(String(reply[1])) as SessionRecord };
      case 'ended':
        throw new GatewayError('session_ended', 'the stream has ended');
      case 'applied':
        break;
      default:
        throw new Error(`redis engine: unexpected transition reply ${String(reply[0])}`);
    }
    const head = parseHead(reply.slice(1));
    const flat = asArray(reply[4], 'outcome');
    const outcome = { seq: toInt(flat[0], 'seq'), duplicate: toInt(flat[1], 'duplicate') === 1 };
    if (change.endStream) await this.#endStream(sessionId);
    return { status: 'applied', session: change.next, outcome, head };
  }

  /**
   * Reads the index (ZRANGEBYLEX, one entry more than needed to know whether more
   * follow) and then each record. Entries whose record is missing are skipped, and
   * removed once older than LIST_PRUNE_GRACE_MS, so expired sessions do not pile up.
   */
  async list(query: SessionQuery): Promise<SessionPage> {
    const core = this.#core;
    const index =
      query.ownerId === undefined
        ? tenantIndexKey(core.prefix, query.tenantId)
        : ownerIndexKey(core.prefix, query.tenantId, query.ownerId);
    const limit = Math.max(1, Math.floor(query.limit));
    let from = query.after === undefined ? '-' : `(${sessionOrderKey(query.after.createdAt, query.after.id)}`;
    const sessions: SessionRecord[] = [];
    const missing: string[] = [];
    let last: string | undefined;
    let more = false;
    for (let round = 0; round < LIST_MAX_ROUNDS && sessions.length < limit; round++) {
      const want = limit - sessions.length;
      const keys = await core.call('listSessions', () =>
        core.redis.zrangebylex(index, from, '+', 'LIMIT', 0, want + 1),
      );
      const batch = keys.slice(0, want);
      more = keys.length > want;
      const records = await Promise.all(batch.map((key) => this.get(idOfOrderKey(key))));
      batch.forEach((key, i) => {
        const record = records[i];
        if (record) sessions.push(record);
        else missing.push(key);
      });
      last = batch.at(-1) ?? last;
      if (!more || last === undefined) break;
      from = `(${last}`;
    }
    await this.#pruneIndex(index, missing);
    return more && last !== undefined ? { sessions, next: positionOfOrderKey(last) } : { sessions };
  }

  async #pruneIndex(index: string, missing: readonly string[]): Promise<void> {
    const now = this.#core.clock.now();
    const stale = missing.filter(
      (key) => now - Date.parse(positionOfOrderKey(key).createdAt) > LIST_PRUNE_GRACE_MS,
    );
    if (stale.length > 0) await this.#core.call('listSessions', () => this.#core.redis.zrem(index, ...stale));
  }

  /** Sends the reads queued for this tick now (engine close: before QUIT). */
  flush(): void {
    this.#reads.flush();
  }
}
