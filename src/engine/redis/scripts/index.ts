import { APPEND_LUA, END_STREAM_LUA, HEAD_LUA, READ_LUA } from './stream-scripts.ts';
import {
  CREATE_SUBSCRIBER_LUA,
  END_SUBSCRIBER_LUA,
  RELEASE_SUBSCRIBER_LUA,
  SAVE_CHECKPOINT_LUA,
  TAKEOVER_SUBSCRIBER_LUA,
} from './subscriber-scripts.ts';
import { IDEM_CLAIM_LUA, IDEM_COMMIT_LUA } from './session-scripts.ts';

/**
 * Every script the engine runs, with its fixed key count. Kept as TypeScript string
 * constants (not .lua files) so they ship with the code in any build without a
 * copy-the-assets step. They are registered with ioredis `defineCommand`, which sends
 * EVALSHA and falls back to EVAL on NOSCRIPT (after a Redis restart or SCRIPT FLUSH).
 */
export const SCRIPTS = {
  loAppend: { lua: APPEND_LUA, numberOfKeys: 3 },
  loRead: { lua: READ_LUA, numberOfKeys: 3 },
  loHead: { lua: HEAD_LUA, numberOfKeys: 3 },
  loEndStream: { lua: END_STREAM_LUA, numberOfKeys: 5 },
  loCreateSubscriber: { lua: CREATE_SUBSCRIBER_LUA, numberOfKeys: 3 },
  loTakeoverSubscriber: { lua: TAKEOVER_SUBSCRIBER_LUA, numberOfKeys: 2 },
  loSaveCheckpoint: { lua: SAVE_CHECKPOINT_LUA, numberOfKeys: 1 },
  loReleaseSubscriber: { lua: RELEASE_SUBSCRIBER_LUA, numberOfKeys: 1 },
  loEndSubscriber: { lua: END_SUBSCRIBER_LUA, numberOfKeys: 2 },
  loIdemClaim: { lua: IDEM_CLAIM_LUA, numberOfKeys: 1 },
  loIdemCommit: { lua: IDEM_COMMIT_LUA, numberOfKeys: 1 },
} as const satisfies Record<string, { lua: string; numberOfKeys: number }>;

export type ScriptName = keyof typeof SCRIPTS;
