import type {
  LiveKitStore,
  ParticipantChange,
  ParticipantPresence,
  PresenceStatus,
  RoomBinding,
} from '../../livekit/store.ts';
import { createClient, createClusterClient, type EngineClient } from './client.ts';
import { mapRedisError } from './errors.ts';
import { DEFAULT_KEY_PREFIX } from './keys.ts';
import type { EngineLogger } from './persistence.ts';

/**
 * The LiveKit bridge's store on Redis (see src/livekit/store.ts for the contract), on its
 * own connection with the engine's client options (timeouts, no offline queue), so the
 * engine's connection stays the engine's. Key layout, under the engine's prefix:
 *
 *   <prefix>{<sid>}:lk            hash: room, created ("1" once createRoom succeeded), roomSid,
 *                                 roomSidAt (ms: when that instance was created, see noteRoomSid)
 *   <prefix>{<sid>}:lk:creating   string: the createRoom claim (PX)
 *   <prefix>{<sid>}:lk:p          hash: "<roomSid>|<participantSid>" → "<status>|<eventId>|<at>|<identity>"
 *   <prefix>lk:room:{<room>}      string: the session of a room (own slot)
 *   <prefix>lk:wh:{<webhookId>}   string: a webhook claim, SET NX PX (own slot)
 *   <prefix>lk:live               sorted set: live sessions, scored by when they went live
 *   <prefix>lk:lease:<name>       string: the lease holder (PX)
 *
 * Every multi-step change of one session is one script over that session's keys (one
 * slot). Ids are URI-encoded in keys, like the engine's.
 */
export class RedisLiveKitStore implements LiveKitStore {
  readonly #redis: EngineClient;
  readonly #prefix: string;
  readonly #logger: EngineLogger | undefined;
  #closed = false;
  #lastErrorLog = -Infinity;

  static async connect(options: {
    url?: string;
    clusterNodes?: readonly string[];
    clusterNatMap?: string;
    keyPrefix?: string;
    commandTimeoutMs: number;
    logger?: EngineLogger;
  }): Promise<RedisLiveKitStore> {
    const clusterNodes = options.clusterNodes ?? [];
    const redis =
      clusterNodes.length > 0
        ? createClusterClient({
            nodes: clusterNodes,
            natMap: options.clusterNatMap ?? '',
            commandTimeoutMs: options.commandTimeoutMs,
          })
        : createClient({ url: options.url ?? '', commandTimeoutMs: options.commandTimeoutMs });
    const store = new RedisLiveKitStore(redis, options.keyPrefix ?? DEFAULT_KEY_PREFIX, options.logger);
    try {
      await redis.connect();
    } catch (err) {
      redis.disconnect();
      throw mapRedisError(err, 'livekit store connect');
    }
    return store;
  }

  private constructor(redis: EngineClient, prefix: string, logger: EngineLogger | undefined) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#logger = logger;
    for (const [name, def] of Object.entries(LUA)) redis.defineCommand(name, def);
    redis.on('error', (err: Error) => this.#logError(err));
    redis.on('node error', (err: Error) => this.#logError(err));
  }

  async bindRoom(sessionId: string, room: string): Promise<RoomBinding> {
    const k = this.#keys(sessionId);
    const fields = await this.#script('bindRoom', 'lkBindRoom', [k.binding], [room]);
    const binding = parseBinding(sessionId, fields);
    if (!binding) throw new Error('redis livekit store: bindRoom left no binding');
    await this.#call('bindRoom', () => this.#redis.set(this.#roomKey(binding.room), sessionId));
    return binding;
  }

  async getBinding(sessionId: string): Promise<RoomBinding | undefined> {
    const fields = await this.#call('getBinding', () => this.#redis.hgetall(this.#keys(sessionId).binding));
    return parseBinding(sessionId, fields);
  }

  async sessionOfRoom(room: string): Promise<string | undefined> {
    const sessionId = await this.#call('sessionOfRoom', () => this.#redis.get(this.#roomKey(room)));
    return sessionId ?? undefined;
  }

  async claimRoomCreation(sessionId: string, ttlMs: number): Promise<boolean> {
    const k = this.#keys(sessionId);
    const claimed = await this.#script(
      'claimRoomCreation',
      'lkClaimRoomCreation',
      [k.binding, k.creating],
      [Math.max(1, Math.trunc(ttlMs))],
    );
    return Number(claimed) === 1;
  }

  async releaseRoomCreation(sessionId: string): Promise<void> {
    await this.#call('releaseRoomCreation', () => this.#redis.del(this.#keys(sessionId).creating));
  }

  async markRoomCreated(sessionId: string): Promise<void> {
    const k = this.#keys(sessionId);
    await this.#script('markRoomCreated', 'lkMarkRoomCreated', [k.binding, k.creating], []);
  }

  async noteRoomSid(sessionId: string, roomSid: string, createdAt: number): Promise<string | undefined> {
    if (roomSid === '') return (await this.getBinding(sessionId))?.roomSid;
    const at = Math.max(0, Math.trunc(createdAt));
    const current = await this.#script(
      'noteRoomSid',
      'lkNoteRoomSid',
      [this.#keys(sessionId).binding],
      [roomSid, at],
    );
    return typeof current === 'string' && current !== '' ? current : undefined;
  }

  async claimWebhook(webhookId: string, ttlMs: number): Promise<boolean> {
    const key = `${this.#prefix}lk:wh:{${encodeURIComponent(webhookId)}}`;
    const reply = await this.#call('claimWebhook', () =>
      this.#redis.set(key, '1', 'PX', Math.max(1, Math.trunc(ttlMs)), 'NX'),
    );
    return reply === 'OK';
  }

  async releaseWebhook(webhookId: string): Promise<void> {
    const key = `${this.#prefix}lk:wh:{${encodeURIComponent(webhookId)}}`;
    await this.#call('releaseWebhook', () => this.#redis.del(key));
  }

  async transitionParticipant(
    sessionId: string,
    roomSid: string,
    change: ParticipantChange,
  ): Promise<{ applied: boolean; previous: ParticipantPresence | undefined }> {
    const reply = (await this.#script(
      'transitionParticipant',
      'lkTransition',
      [this.#keys(sessionId).binding, this.#keys(sessionId).presence],
      [presenceField(roomSid, change.participantSid), encodePresence(change), change.to, change.eventId],
    )) as [number, string];
    return {
      applied: Number(reply[0]) === 1,
      previous: reply[1] === '' ? undefined : decodePresence(change.participantSid, String(reply[1])),
    };
  }

  async revertParticipant(
    sessionId: string,
    roomSid: string,
    change: ParticipantChange,
    previous: ParticipantPresence | undefined,
  ): Promise<void> {
    await this.#script(
      'revertParticipant',
      'lkRevert',
      [this.#keys(sessionId).presence],
      [
        presenceField(roomSid, change.participantSid),
        change.to,
        change.eventId,
        previous
          ? encodePresence({
              participantSid: previous.participantSid,
              identity: previous.identity,
              to: previous.status,
              eventId: previous.eventId,
              at: previous.at,
            })
          : '',
      ],
    );
  }

  async participants(sessionId: string, roomSid: string): Promise<ParticipantPresence[]> {
    const all = await this.#call('participants', () => this.#redis.hgetall(this.#keys(sessionId).presence));
    const prefix = `${encodeURIComponent(roomSid)}|`;
    const out: ParticipantPresence[] = [];
    for (const [field, value] of Object.entries(all)) {
      if (!field.startsWith(prefix)) continue;
      out.push(decodePresence(decodeURIComponent(field.slice(prefix.length)), value));
    }
    return out;
  }

  async markLive(sessionId: string): Promise<void> {
    await this.#call('markLive', () => this.#redis.zadd(this.#liveKey(), 'NX', Date.now(), sessionId));
  }

  async roomClosed(sessionId: string): Promise<void> {
    await this.#call('roomClosed', () => this.#redis.zrem(this.#liveKey(), sessionId));
    await this.#call('roomClosed', () => this.#redis.hdel(this.#keys(sessionId).binding, 'created'));
  }

  async retire(sessionId: string, retentionS: number): Promise<void> {
    const k = this.#keys(sessionId);
    const ttlMs = Math.max(1, Math.trunc(retentionS * 1000));
    await this.#call('retire', () => this.#redis.zrem(this.#liveKey(), sessionId));
    const room = await this.#call('retire', () => this.#redis.hget(k.binding, 'room'));
    await this.#script('retire', 'lkRetire', [k.binding, k.presence, k.creating], [ttlMs]);
    if (room !== null) await this.#call('retire', () => this.#redis.pexpire(this.#roomKey(room), ttlMs));
  }

  async liveSessions(cursor: number, limit: number): Promise<{ sessionIds: string[]; next: number }> {
    const start = Math.max(0, Math.trunc(cursor));
    const count = Math.max(0, Math.trunc(limit));
    if (count === 0) return { sessionIds: [], next: start };
    // One more than asked tells whether the walk goes on.
    let ids = await this.#call('liveSessions', () =>
      this.#redis.zrange(this.#liveKey(), String(start), String(start + count)),
    );
    if (ids.length === 0 && start > 0) {
      ids = await this.#call('liveSessions', () => this.#redis.zrange(this.#liveKey(), '0', String(count)));
      return { sessionIds: ids.slice(0, count), next: ids.length > count ? count : 0 };
    }
    return { sessionIds: ids.slice(0, count), next: ids.length > count ? start + count : 0 };
  }

  async tryLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const key = `${this.#prefix}lk:lease:${encodeURIComponent(name)}`;
    const reply = await this.#script('tryLease', 'lkLease', [key], [holder, Math.max(1, Math.trunc(ttlMs))]);
    return Number(reply) === 1;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }

  #keys(sessionId: string) {
    const base = `${this.#prefix}{${encodeURIComponent(sessionId)}}:lk`;
    return { binding: base, creating: `${base}:creating`, presence: `${base}:p` };
  }

  #roomKey(room: string): string {
    return `${this.#prefix}lk:room:{${encodeURIComponent(room)}}`;
  }

  #liveKey(): string {
    return `${this.#prefix}lk:live`;
  }

  async #call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapRedisError(err, `livekit ${operation}`);
    }
  }

  #script(
    operation: string,
    name: keyof typeof LUA,
    keys: string[],
    args: (string | number)[],
  ): Promise<unknown> {
    const commands = this.#redis as unknown as Record<
      string,
      (...a: (string | number)[]) => Promise<unknown>
    >;
    if (keys.length !== LUA[name].numberOfKeys) throw new Error(`livekit store: ${name} takes other keys`);
    return this.#call(operation, () => commands[name]!.call(this.#redis, ...keys, ...args));
  }

  #logError(err: Error): void {
    const t = performance.now();
    if (t - this.#lastErrorLog < 5_000) return;
    this.#lastErrorLog = t;
    this.#logger?.warn({ err: err.message }, 'livekit store: redis connection error');
  }
}

/**
 * The store's scripts. The participant transition mirrors `transitionApplies`
 * (src/livekit/store.ts): a presence value starts with "<status>|<eventId>|".
 */
const LUA = {
  // KEYS: binding. ARGV: room. HSETNX decides the one room of the session.
  lkBindRoom: {
    numberOfKeys: 1,
    lua: `redis.call('HSETNX', KEYS[1], 'room', ARGV[1])
return redis.call('HGETALL', KEYS[1])`,
  },
  // KEYS: binding, creating. ARGV: ttl ms.
  lkClaimRoomCreation: {
    numberOfKeys: 2,
    lua: `if redis.call('HEXISTS', KEYS[1], 'room') == 0 then return 0 end
if redis.call('HGET', KEYS[1], 'created') == '1' then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0`,
  },
  // KEYS: binding, creating.
  lkMarkRoomCreated: {
    numberOfKeys: 2,
    lua: `if redis.call('HEXISTS', KEYS[1], 'room') == 1 then redis.call('HSET', KEYS[1], 'created', '1') end
redis.call('DEL', KEYS[2])
return 1`,
  },
  // KEYS: binding. ARGV: room sid.
  // KEYS: binding. ARGV: roomSid, createdAt (ms). The newest instance wins (see
  // noteRoomSid). Returns the current sid after it ('' without a binding).
  lkNoteRoomSid: {
    numberOfKeys: 1,
    lua: `if redis.call('HEXISTS', KEYS[1], 'room') == 0 then return '' end
local cur = redis.call('HMGET', KEYS[1], 'roomSid', 'roomSidAt')
local curAt = tonumber(cur[2]) or 0
local at = tonumber(ARGV[2])
if cur[1] == ARGV[1] then
  if at > curAt then redis.call('HSET', KEYS[1], 'roomSidAt', ARGV[2]) end
  return cur[1]
end
if cur[1] and at < curAt then return cur[1] end
redis.call('HSET', KEYS[1], 'roomSid', ARGV[1], 'roomSidAt', ARGV[2])
return ARGV[1]`,
  },
  // KEYS: binding, presence. ARGV: field, value, to, eventId. Returns {applied, previous or ''}.
  lkTransition: {
    numberOfKeys: 2,
    lua: `if redis.call('HEXISTS', KEYS[1], 'room') == 0 then return {0, ''} end
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if not cur then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return {1, ''}
end
local status, eventId = string.match(cur, '^([^|]*)|([^|]*)|')
if (status == ARGV[3] and eventId == ARGV[4]) or (ARGV[3] == 'left' and status == 'joined') then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return {1, cur}
end
return {0, cur}`,
  },
  // KEYS: presence. ARGV: field, to, eventId, previous value or ''.
  lkRevert: {
    numberOfKeys: 1,
    lua: `local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local status, eventId = string.match(cur, '^([^|]*)|([^|]*)|')
if status ~= ARGV[2] or eventId ~= ARGV[3] then return 0 end
if ARGV[4] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) end
return 1`,
  },
  // KEYS: binding, presence, creating. ARGV: ttl ms.
  lkRetire: {
    numberOfKeys: 3,
    lua: `for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return 1`,
  },
  // KEYS: lease. ARGV: holder, ttl ms.
  lkLease: {
    numberOfKeys: 1,
    lua: `local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`,
  },
} as const satisfies Record<string, { numberOfKeys: number; lua: string }>;

function parseBinding(sessionId: string, fields: unknown): RoomBinding | undefined {
  const map = new Map<string, string>();
  if (Array.isArray(fields)) {
    for (let i = 0; i + 1 < fields.length; i += 2) map.set(String(fields[i]), String(fields[i + 1]));
  } else if (fields && typeof fields === 'object') {
    for (const [k, v] of Object.entries(fields as Record<string, string>)) map.set(k, v);
  }
  const room = map.get('room');
  if (room === undefined) return undefined;
  const roomSid = map.get('roomSid');
  return { sessionId, room, roomCreated: map.get('created') === '1', ...(roomSid ? { roomSid } : {}) };
}

function presenceField(roomSid: string, participantSid: string): string {
  return `${encodeURIComponent(roomSid)}|${encodeURIComponent(participantSid)}`;
}

function encodePresence(change: ParticipantChange): string {
  return `${change.to}|${change.eventId}|${Math.trunc(change.at)}|${change.identity}`;
}

function decodePresence(participantSid: string, value: string): ParticipantPresence {
  const [status = '', eventId = '', at = '0'] = value.split('|', 3);
  const identity = value.split('|').slice(3).join('|');
  return {
    participantSid,
    identity,
    status: (status === 'left' ? 'left' : 'joined') satisfies PresenceStatus,
    eventId,
    at: Number(at),
  };
}
