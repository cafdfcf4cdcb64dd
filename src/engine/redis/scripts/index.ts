import { appendLua, END_STREAM_LUA, HEAD_LUA, NOTIFY_LUA, READ_LUA } from './stream-scripts.ts';
import {
  CREATE_SUBSCRIBERS_LUA,
  END_SUBSCRIBER_LUA,
  PRUNE_SUBSCRIBERS_LUA,
  RELEASE_SUBSCRIBERS_LUA,
  SAVE_CHECKPOINT_LUA,
  takeoverSubscriberLua,
} from './subscriber-scripts.ts';
import {
  createSessionLua,
  IDEM_CLAIM_LUA,
  IDEM_COMMIT_LUA,
  transitionSessionLua,
} from './session-scripts.ts';

/**
 * How the scripts publish notices: `PUBLISH` on one Redis, `SPUBLISH` (sharded pub/sub)
 * on a Redis Cluster, where a script may publish on a channel of its own slot only.
 */
export type PublishCommand = 'PUBLISH' | 'SPUBLISH';

/**
 * Every script the engine runs, with its key count (`numberOfKeys: undefined` means the
 * caller passes the count first: a script with a variable number of keys). Kept as
 * TypeScript string constants (not .lua files) so they ship with the code in any build
 * without a copy-the-assets step. They are registered with ioredis `defineCommand`, which
 * sends EVALSHA and falls back to EVAL on NOSCRIPT (after a Redis restart or SCRIPT FLUSH).
 *
 * Cluster rules, which every script keeps (test/engine/redis-cluster.test.ts checks them
 * against what Redis actually ran): every key a script touches is declared in KEYS, all
 * of them in one slot (the session's hash tag, or the tenant's for the idempotency
 * scripts), and a notice goes to a channel of that same hash tag.
 */
export function scriptsFor(publish: PublishCommand, headNotices = true) {
  // Without head notices the engine publishes them itself once replicas confirm (WAIT).
  const notice = headNotices ? publish : undefined;
  return {
    loAppend: { lua: appendLua(notice), numberOfKeys: undefined },
    loNotify: { lua: NOTIFY_LUA, numberOfKeys: 0 },
    loRead: { lua: READ_LUA, numberOfKeys: 3 },
    loHead: { lua: HEAD_LUA, numberOfKeys: 4 },
    loEndStream: { lua: END_STREAM_LUA, numberOfKeys: undefined },
    loCreateSubscribers: { lua: CREATE_SUBSCRIBERS_LUA, numberOfKeys: undefined },
    loPruneSubscribers: { lua: PRUNE_SUBSCRIBERS_LUA, numberOfKeys: undefined },
    loTakeoverSubscriber: { lua: takeoverSubscriberLua(publish), numberOfKeys: undefined },
    loSaveCheckpoint: { lua: SAVE_CHECKPOINT_LUA, numberOfKeys: undefined },
    loReleaseSubscribers: { lua: RELEASE_SUBSCRIBERS_LUA, numberOfKeys: undefined },
    loEndSubscriber: { lua: END_SUBSCRIBER_LUA, numberOfKeys: 2 },
    loIdemClaim: { lua: IDEM_CLAIM_LUA, numberOfKeys: 1 },
    loIdemCommit: { lua: IDEM_COMMIT_LUA, numberOfKeys: 1 },
    loCreateSession: { lua: createSessionLua(notice), numberOfKeys: 4 },
    loTransitionSession: { lua: transitionSessionLua(notice), numberOfKeys: 5 },
  } as const satisfies Record<string, { lua: string; numberOfKeys: number | undefined }>;
}

export type ScriptDefinitions = ReturnType<typeof scriptsFor>;
export type ScriptName = keyof ScriptDefinitions;

/** The scripts of one Redis (PUBLISH). */
export const SCRIPTS = scriptsFor('PUBLISH');
