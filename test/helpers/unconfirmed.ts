import assert from 'node:assert/strict';
import { EngineUnavailableError } from '../../src/errors/gateway-error.ts';

/**
 * For assert.rejects: the engine refused a write because its one wanted replica did not
 * confirm it (REDIS_WAIT_REPLICAS=1) within `waitMs`, half the command timeout.
 */
export function unconfirmedWithin(waitMs: number): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof EngineUnavailableError, String(err));
    assert.match(err.message, new RegExp(`0 of 1 replicas confirmed the write within ${waitMs} ms`));
    return true;
  };
}
