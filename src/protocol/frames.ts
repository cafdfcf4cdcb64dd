import { Type, type Static } from '@sinclair/typebox';
import { compileCheck } from './closed-check.ts';
import type { Envelope } from './envelope.ts';

/**
 * Client → gateway frames (PROTOCOL.md §3–4). A frame that fails these schemas is a
 * protocol violation (close 4000); a `pub` whose event is invalid is answered with a
 * `nack` instead, because the frame itself was well formed.
 */
const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Closed = { additionalProperties: false } as const;

export const HelloFrame = Type.Object(
  {
    op: Type.Literal('hello'),
    sessionId: Type.String({ minLength: 1, maxLength: 128 }),
    token: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 })),
    after: Type.Optional(Type.Union([Seq, Type.Literal('latest')])),
    resume: Type.Optional(
      Type.Object(
        {
          token: Type.String({ minLength: 1, maxLength: 2048 }),
          lastSeq: Type.Optional(Seq),
          epoch: Type.Optional(Type.String({ maxLength: 128 })),
        },
        Closed,
      ),
    ),
  },
  Closed,
);
export const AckFrame = Type.Object({ op: Type.Literal('ack'), seq: Seq }, Closed);
export const PubFrame = Type.Object(
  {
    op: Type.Literal('pub'),
    id: Type.String({ minLength: 1, maxLength: 128 }),
    type: Type.String({ maxLength: 128 }),
    payload: Type.Unknown(),
    ts: Type.Optional(Type.String({ maxLength: 64 })),
  },
  Closed,
);
export const PingFrame = Type.Object(
  { op: Type.Literal('ping'), n: Type.Optional(Type.Union([Type.Number(), Type.String({ maxLength: 64 })])) },
  Closed,
);
export const ByeFrame = Type.Object({ op: Type.Literal('bye') }, Closed);

export type HelloFrame = Static<typeof HelloFrame>;
export type AckFrame = Static<typeof AckFrame>;
export type PubFrame = Static<typeof PubFrame>;
export type PingFrame = Static<typeof PingFrame>;
export type ByeFrame = Static<typeof ByeFrame>;
export type ClientFrame = HelloFrame | AckFrame | PubFrame | PingFrame | ByeFrame;

// The same allocation-free checks as the events' (every `pub` frame goes through one).
const checks = {
  hello: compileCheck(HelloFrame),
  ack: compileCheck(AckFrame),
  pub: compileCheck(PubFrame),
  ping: compileCheck(PingFrame),
  bye: compileCheck(ByeFrame),
} as const;

export type ParsedFrame = { ok: true; frame: ClientFrame } | { ok: false; message: string };

/** Validates a decoded client frame; the message names the first problem. */
export function parseClientFrame(value: unknown): ParsedFrame {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, message: 'a frame must be an object' };
  }
  const op = (value as { op?: unknown }).op;
  if (typeof op !== 'string' || !Object.hasOwn(checks, op)) {
    return { ok: false, message: `unknown op ${JSON.stringify(op)?.slice(0, 40) ?? 'undefined'}` };
  }
  const check = checks[op as keyof typeof checks];
  if (check(value)) return { ok: true, frame: value as ClientFrame };
  const error = check.errors.Errors(value).First();
  return { ok: false, message: `${op}${error?.path ?? ''}: ${error?.message ?? 'invalid'}` };
}

/** Gateway → client frames. */
export interface WelcomeFrame {
  op: 'welcome';
  connectionId: string;
  sessionId: string;
  subscriberId: string;
  resumeToken: string;
  resumeWindowMs: number;
  epoch: string;
  headSeq: number;
  after: number;
  resumed: boolean;
  heartbeatMs: number;
  maxInFlight: number;
}
export interface EventFrame {
  op: 'ev';
  seq: number;
  event: Envelope;
}
export type ServerFrame =
  | WelcomeFrame
  | EventFrame
  | { op: 'replayed'; seq: number }
  | { op: 'puback'; id: string; seq: number }
  | { op: 'nack'; id: string; code: string; message: string; retryable: boolean }
  | { op: 'pong'; n?: number | string }
  | { op: 'error'; code: string; message: string; retryable: boolean }
  | { op: 'eos'; seq: number };
