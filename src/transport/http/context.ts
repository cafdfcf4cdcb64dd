import type { HttpRequest, HttpResponse } from '../uws.ts';
import { ErrorCodes } from '../../errors/codes.ts';
import { GatewayError, toGatewayError } from '../../errors/gateway-error.ts';
import type { Logger } from '../../observability/logger.ts';
import { isPlainJson, MAX_PAYLOAD_DEPTH } from '../../protocol/plain-json.ts';

/** What a route handler sees: everything uWS gave us, copied before the first await. */
export interface HttpContext {
  method: string;
  path: string;
  params: string[];
  query: URLSearchParams;
  headers: { authorization: string; idempotencyKey: string; contentType: string };
  /** The parsed JSON body, for routes that take one; undefined for an empty body. */
  body: unknown;
  /** The body's bytes exactly as received, for routes that take a raw body (`body: 'raw'`). */
  rawBody?: Buffer;
}

export interface HttpReply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  /** Sent as is with this content type instead of JSON. */
  raw?: { contentType: string; text: string };
}

export type RouteHandler = (ctx: HttpContext) => Promise<HttpReply> | HttpReply;

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  410: '410 Gone',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  501: '501 Not Implemented',
  503: '503 Service Unavailable',
};

export function errorReply(err: GatewayError): HttpReply {
  return { status: err.status, body: { error: { code: err.code, message: err.message } } };
}

/**
 * Adapts a handler to uWS. uWS is unforgiving: `onAborted` must be attached before any
 * await, request data is only valid synchronously, and writes after an await must be
 * corked. This wrapper does all of that once, reads and bounds the body, and maps every
 * failure to the JSON error shape `{ error: { code, message } }`.
 */
export function route(
  handler: RouteHandler,
  options: {
    paramCount?: number;
    /** true: a JSON body (parsed); 'raw': any body, its bytes untouched in `ctx.rawBody`. */
    body?: boolean | 'raw';
    maxBodyBytes: number;
    logger: Logger;
  },
): (res: HttpResponse, req: HttpRequest) => void {
  return (res, req) => {
    const state = { aborted: false, done: false };
    res.onAborted(() => {
      state.aborted = true;
    });
    const params: string[] = [];
    let badParam = false;
    for (let i = 0; i < (options.paramCount ?? 0); i++) {
      const param = decodePathParam(req.getParameter(i) ?? '');
      badParam ||= param === undefined;
      params.push(param ?? '');
    }
    const ctx: HttpContext = {
      method: req.getMethod(),
      path: req.getUrl(),
      params,
      query: new URLSearchParams(req.getQuery() ?? ''),
      headers: {
        authorization: req.getHeader('authorization'),
        idempotencyKey: req.getHeader('idempotency-key'),
        contentType: req.getHeader('content-type'),
      },
      body: undefined,
    };
    const declaredLength = Number(req.getHeader('content-length') || '0');

    const respond = (reply: HttpReply): void => {
      if (state.aborted || state.done) return;
      state.done = true;
      let text: string;
      try {
        text = reply.raw ? reply.raw.text : JSON.stringify(reply.body);
      } catch (err) {
        // A body JSON cannot carry (an engine bug): a throw here would end the process
        // (respond runs in a promise callback with nothing to catch it).
        options.logger.error({ err, path: ctx.path }, 'response not serializable');
        reply = errorReply(new GatewayError('internal'));
        text = JSON.stringify(reply.body);
      }
      res.cork(() => {
        res.writeStatus(STATUS_TEXT[reply.status] ?? `${reply.status} Status`);
        for (const [k, v] of Object.entries(reply.headers ?? {})) res.writeHeader(k, v);
        if (reply.raw) {
          res.writeHeader('content-type', reply.raw.contentType).end(text);
        } else {
          // An oversized body may still be arriving: close rather than read it.
          res.writeHeader('content-type', 'application/json').end(text, reply.status === 413);
        }
      });
    };
    const fail = (err: unknown): void => {
      const error = toGatewayError(err);
      if (error.code === 'internal') options.logger.error({ err, path: ctx.path }, 'request failed');
      respond(errorReply(error));
    };
    const run = (): void => {
      if (badParam)
        return fail(new GatewayError('bad_request', 'a path segment is not valid percent-encoding'));
      try {
        Promise.resolve(handler(ctx)).then(respond, fail);
      } catch (err) {
        fail(err);
      }
    };

    if (!options.body) return run();
    if (declaredLength > options.maxBodyBytes) {
      fail(new GatewayError('payload_too_large'));
      return;
    }
    readBody(res, options.maxBodyBytes, (outcome) => {
      if (outcome === 'too_large') return fail(new GatewayError('payload_too_large'));
      if (options.body === 'raw') {
        ctx.rawBody = outcome;
      } else if (outcome.length > 0) {
        if (!/^application\/json\b/i.test(ctx.headers.contentType))
          return fail(new GatewayError('unsupported_media_type'));
        try {
          ctx.body = JSON.parse(outcome.toString('utf8')) as unknown;
        } catch {
          return fail(new GatewayError('bad_request', 'the body is not valid JSON'));
        }
        // Strings name keys and records (util/well-formed.ts); one level more than a payload
        // may have, for the envelope around it. Bounded: an unbounded walk of a body
        // nested 30,000 deep overflowed the stack inside the body callback.
        if (!isPlainJson(ctx.body, MAX_PAYLOAD_DEPTH + 1)) {
          return fail(
            new GatewayError(
              'bad_request',
              `the body holds a lone surrogate (\\ud800…) or is nested more than ${MAX_PAYLOAD_DEPTH + 1} deep`,
            ),
          );
        }
      }
      run();
    });
  };
}

/**
 * A path parameter, percent-decoded; undefined when it is not valid percent-encoding
 * (`%E0%A4%A`): decodeURIComponent throws, and a throw in a uWS handler ends the process.
 */
function decodePathParam(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** Collects a request body up to `max` bytes. uWS reuses chunk memory, so each is copied. */
function readBody(res: HttpResponse, max: number, done: (body: Buffer | 'too_large') => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let finished = false;
  res.onData((chunk, isLast) => {
    if (finished) return;
    size += chunk.byteLength;
    if (size > max) {
      finished = true;
      done('too_large');
      return;
    }
    chunks.push(Buffer.from(chunk.slice(0)));
    if (isLast) {
      finished = true;
      done(Buffer.concat(chunks, size));
    }
  });
}

/** A route's error for anything it does not handle. */
export function notFound(): HttpReply {
  return { status: 404, body: { error: { code: 'not_found', message: ErrorCodes.not_found.message } } };
}
