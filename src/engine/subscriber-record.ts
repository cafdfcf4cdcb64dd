import type { NewSubscriber, SubscriberRecord } from './engine.ts';

/**
 * A subscriber record as both engines build it. Records are one object literal plus the
 * node fields, not spreads: a spread copies property by property at run time (one record
 * per handshake), where a literal of fixed keys is allocated with its final shape at once
 * (issue 6).
 */

/** What createSubscriber stores for `sub`: generation 1, connected, checkpoint = after. */
export function newSubscriberRecord(sub: NewSubscriber): SubscriberRecord {
  const record: SubscriberRecord = {
    id: sub.id,
    userId: sub.userId,
    tenantId: sub.tenantId,
    after: sub.after,
    generation: 1,
    checkpoint: sub.after,
    connected: true,
    disconnectedAt: 0,
    ended: false,
  };
  if (sub.node !== undefined) withNode(record, sub.node, sub.connectedAt ?? 0);
  return record;
}

/** Adds the informational node fields: connectedAt only with node. */
export function withNode(record: SubscriberRecord, node: string, connectedAt: number): void {
  record.node = node;
  record.connectedAt = connectedAt;
}
