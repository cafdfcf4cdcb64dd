import type { ProviderCorrelation, SessionRecord, SessionState, TransitionFields } from '../engine/engine.ts';
import type { EventType } from '../protocol/event-types.ts';
import { GatewayError } from '../errors/gateway-error.ts';

/**
 * The call session lifecycle as a pure state machine: which moves are legal, what a
 * move changes in the record, which event announces it, and when a request is a replay
 * or a conflict. No I/O: the call service reads the record, asks `decide`, and lets the
 * engine apply the result atomically (compare-and-set on the version it decided on).
 *
 *   created → connecting → active → ending → ended
 *                              └──────────────→ ended   (the provider already hung up)
 *   created | connecting | active | ending → failed
 *
 * `ended` and `failed` are terminal: their event ends the session's stream.
 */
export const SessionStates = [
  'created',
  'connecting',
  'active',
  'ending',
  'ended',
  'failed',
] as const satisfies readonly SessionState[];

/** Where each state may go. */
export const Transitions: Readonly<Record<SessionState, readonly SessionState[]>> = {
  created: ['connecting', 'failed'],
  connecting: ['active', 'failed'],
  active: ['ending', 'ended', 'failed'],
  ending: ['ended', 'failed'],
  ended: [],
  failed: [],
};

export const TerminalStates: ReadonlySet<SessionState> = new Set(['ended', 'failed']);

/** The event each state is announced by. */
export const StateEvents = {
  created: 'call.created',
  connecting: 'call.connecting',
  active: 'call.activated',
  ending: 'call.ending',
  ended: 'call.ended',
  failed: 'call.failed',
} as const satisfies Record<SessionState, EventType>;

export const CorrelationFields = [
  'provider',
  'providerRoomId',
  'providerParticipantId',
  'providerCallId',
] as const satisfies readonly (keyof ProviderCorrelation)[];

/** What a caller asks for (`POST /v1/call/sessions/:id/transitions`). */
export interface TransitionRequest extends TransitionFields {
  to: SessionState;
  expectedVersion?: number;
}

/** The fields each target takes besides `to` and `expectedVersion` (required ones first). */
const Fields: Readonly<
  Record<
    SessionState,
    { required: readonly (keyof TransitionFields)[]; optional: readonly (keyof TransitionFields)[] }
  >
> = {
  created: { required: [], optional: [] },
  // what is being set up; the correlation itself is fixed by the move to active
  connecting: { required: ['provider'], optional: ['providerRoomId'] },
  active: { required: ['provider', 'providerRoomId'], optional: ['providerParticipantId', 'providerCallId'] },
  // correlation fields are accepted on the other targets only as the values already set
  ending: { required: [], optional: ['reason', ...CorrelationFields] },
  ended: { required: [], optional: ['reason', ...CorrelationFields] },
  failed: { required: ['reason'], optional: [...CorrelationFields] },
};

const MAX_TEXT = 256;

/**
 * Checks a request body's shape: a known `to`, exactly the fields that target takes
 * (strings of 1–256 characters), `expectedVersion` an integer ≥ 1. Formats the event
 * schema defines (the provider name) are checked when the event is built. Throws
 * GatewayError `bad_request`.
 */
export function parseTransitionRequest(body: unknown): TransitionRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new GatewayError('bad_request', 'the body must be a JSON object');
  }
  const input = body as Record<string, unknown>;
  const to = input.to;
  if (typeof to !== 'string' || !(SessionStates as readonly string[]).includes(to)) {
    throw new GatewayError('bad_request', `"to" must be one of ${SessionStates.join(', ')}`);
  }
  const target = to as SessionState;
  const { required, optional } = Fields[target];
  const request: TransitionRequest = { to: target };
  for (const [key, value] of Object.entries(input)) {
    if (key === 'to') continue;
    if (key === 'expectedVersion') {
      if (!Number.isSafeInteger(value) || (value as number) < 1) {
        throw new GatewayError('bad_request', 'expectedVersion must be an integer ≥ 1');
      }
      request.expectedVersion = value as number;
      continue;
    }
    const field = key as keyof TransitionFields;
    if (!required.includes(field) && !optional.includes(field)) {
      throw new GatewayError('bad_request', `"${key}" is not a field of a transition to ${target}`);
    }
    if (typeof value !== 'string' || value.length < 1 || value.length > MAX_TEXT) {
      throw new GatewayError('bad_request', `${key} must be a string of 1–${MAX_TEXT} characters`);
    }
    request[field] = value;
  }
  for (const field of required) {
    if (request[field] === undefined) {
      throw new GatewayError('bad_request', `a transition to ${target} needs ${field}`);
    }
  }
  return request;
}

export type Decision =
  /** Apply: the engine stores `next` and appends the event, if the version is still current. */
  | { kind: 'apply'; next: SessionRecord; event: { type: EventType; payload: Record<string, unknown> } }
  /** The request repeats the change that produced the current state: answer with it as is. */
  | { kind: 'replay' }
  | {
      kind: 'reject';
      code: 'invalid_transition' | 'version_conflict' | 'provider_correlation_immutable';
      message: string;
    };

/**
 * Decides a request against the current record, at time `at` (RFC 3339). In this order:
 * 1. provider correlation: once set (by the move to `active`) every correlation field a
 *    request names must equal the stored one; before that only `connecting` and
 *    `active` may name them. Otherwise `provider_correlation_immutable`.
 * 2. replay: `to` is the current state and the request's fields equal those of the change
 *    that produced it → `replay` (whatever `expectedVersion` says: a retry of a change
 *    that succeeded is answered, not refused).
 * 3. `expectedVersion` other than the current version → `version_conflict`.
 * 4. a move the state machine does not have → `invalid_transition`.
 */
export function decide(current: SessionRecord, request: TransitionRequest, at: string): Decision {
  const fields = fieldsOf(request);
  const correlated = current.provider !== undefined;
  for (const name of CorrelationFields) {
    const value = fields[name];
    if (value === undefined) continue;
    if (correlated ? value !== current[name] : request.to !== 'connecting' && request.to !== 'active') {
      return {
        kind: 'reject',
        code: 'provider_correlation_immutable',
        message: correlated
          ? `${name} is set (${current[name] ?? 'empty'}) and cannot change`
          : `${name} is set with the move to active`,
      };
    }
  }
  if (current.lastTransition && request.to === current.state && sameFields(fields, current.lastTransition)) {
    return { kind: 'replay' };
  }
  if (request.expectedVersion !== undefined && request.expectedVersion !== current.version) {
    return {
      kind: 'reject',
      code: 'version_conflict',
      message: `the session is at version ${current.version}, not ${request.expectedVersion}`,
    };
  }
  if (!Transitions[current.state].includes(request.to)) {
    return {
      kind: 'reject',
      code: 'invalid_transition',
      message: `a session that is ${current.state} cannot become ${request.to}`,
    };
  }

  const version = current.version + 1;
  const next: SessionRecord = {
    ...current,
    state: request.to,
    version,
    lastTransition: { to: request.to, at, ...fields },
  };
  const payload: Record<string, unknown> = { state: request.to, version };
  switch (request.to) {
    case 'connecting':
      Object.assign(payload, pick(fields, ['provider', 'providerRoomId']));
      break;
    case 'active': {
      const correlation = pick(fields, CorrelationFields);
      Object.assign(next, correlation, { activatedAt: at });
      Object.assign(payload, correlation);
      break;
    }
    case 'ending':
    case 'failed':
      Object.assign(payload, pick(fields, ['reason']));
      break;
    case 'ended': {
      Object.assign(payload, pick(fields, ['reason']));
      const activated = current.activatedAt === undefined ? NaN : Date.parse(current.activatedAt);
      if (Number.isFinite(activated)) payload.durationMs = Math.max(0, Date.parse(at) - activated);
      break;
    }
    case 'created':
      break; // unreachable: no state moves to created
  }
  return { kind: 'apply', next, event: { type: StateEvents[request.to], payload } };
}

/** The request's change fields, without `to` and `expectedVersion`. */
function fieldsOf(request: TransitionRequest): TransitionFields {
  const { to: _to, expectedVersion: _version, ...fields } = request;
  return fields;
}

const FieldNames = ['reason', ...CorrelationFields] as const;

function sameFields(a: TransitionFields, b: TransitionFields): boolean {
  return FieldNames.every((name) => a[name] === b[name]);
}

/** The named fields that are set. */
function pick(fields: TransitionFields, names: readonly (keyof TransitionFields)[]): TransitionFields {
  const out: TransitionFields = {};
  for (const name of names) if (fields[name] !== undefined) out[name] = fields[name];
  return out;
}
