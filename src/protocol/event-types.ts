import type { Static, TSchema } from '@sinclair/typebox';
import { Roles, type Role } from './roles.ts';
import { BillingEvents, BillingRefinements } from './events/billing.ts';
import { CallEvents, CallRefinements } from './events/call.ts';
import type { Refinement } from './events/common.ts';
import { OrchestrationEvents, OrchestrationRefinements } from './events/orchestration.ts';
import { SafetyEvents, SafetyRefinements } from './events/safety.ts';
import { TranscriptEvents, TranscriptRefinements } from './events/transcript.ts';

/**
 * Every supported event type of schema v1 and its payload schema (PROTOCOL.md §1), one
 * file per family under `./events/`. docs/events.md is the human catalogue.
 *
 * Changing a type, adding one or changing who may publish it changes the contract:
 * regenerate test/fixtures/event-contract.v1.json (`npx tsx scripts/event-contract.ts
 * --write`) and schema/lifeos.event.v1.json (`npx tsx scripts/export-json-schema.ts
 * --write`); test/unit/event-contract.test.ts fails until both match. Within v1 a change
 * must not reject an event that was valid before (add optional fields, add types);
 * anything else needs schema v2.
 */
export const EventTypes = {
  ...CallEvents,
  ...TranscriptEvents,
  ...OrchestrationEvents,
  ...SafetyEvents,
  ...BillingEvents,
} satisfies Record<string, TSchema>;

export type EventType = keyof typeof EventTypes;

/** The payload of one event type, e.g. `EventPayload<'transcript.final'>`. */
export type EventPayload<T extends EventType> = Static<(typeof EventTypes)[T]>;

/** The families of PROTOCOL.md §1; every type's name starts with one of them. */
export const EventFamilies = ['call', 'transcript', 'orchestration', 'safety', 'billing'] as const;
export type EventFamily = (typeof EventFamilies)[number];

export function isEventType(type: string): type is EventType {
  return Object.hasOwn(EventTypes, type);
}

export function familyOf(type: EventType): EventFamily {
  return type.slice(0, type.indexOf('.')) as EventFamily;
}

/**
 * Checks JSON Schema cannot express, run by `validateEventBody` after the payload
 * passed its schema (endMs ≥ startMs, periodEnd ≥ periodStart, calendar-valid times).
 */
export const EventRefinements: { readonly [T in EventType]?: Refinement<(typeof EventTypes)[T]> } = {
  ...CallRefinements,
  ...TranscriptRefinements,
  ...OrchestrationRefinements,
  ...SafetyRefinements,
  ...BillingRefinements,
};

/** Types that end a session's stream: subscribers get `eos` after them. */
export const TerminalEventTypes: ReadonlySet<string> = new Set<EventType>(['call.ended', 'call.failed']);

const allTypes = Object.keys(EventTypes) as EventType[];
const transcriptTypes = allTypes.filter((t) => familyOf(t) === 'transcript');

/**
 * What each token role may publish (PROTOCOL.md §1): `agent` and `service` every
 * `transcript.*` type and `orchestration.action.requested`; `user` only
 * `orchestration.action.requested`; `operator` nothing. Everything else is emitted by
 * the gateway itself, which may emit any type. A publish outside this table is
 * `forbidden_type`.
 */
export const ClientPublishable: Readonly<Record<Role, ReadonlySet<EventType>>> = {
  user: new Set(['orchestration.action.requested']),
  agent: new Set([...transcriptTypes, 'orchestration.action.requested']),
  service: new Set([...transcriptTypes, 'orchestration.action.requested']),
  operator: new Set(),
};

/**
 * Whether a client holding a token of `role` may publish `type`. False for a type that
 * does not exist, so check the event (`invalid_event`) before the right (`forbidden_type`)
 * when the client should learn which one it got wrong.
 */
export function mayPublish(role: Role, type: string): boolean {
  return isEventType(type) && ClientPublishable[role].has(type);
}

/** Who may produce `type`: always the gateway, then the client roles allowed to publish it. */
export type Producer = 'gateway' | Role;
export function producersOf(type: EventType): Producer[] {
  return ['gateway', ...Roles.filter((role) => ClientPublishable[role].has(type))];
}
