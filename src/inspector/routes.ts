import type { JwtVerifier } from '../auth/jwt.ts';
import { decodeCursor, encodeCursor } from '../calls/session-cursor.ts';
import { LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX } from '../calls/call-service.ts';
import { GatewayError } from '../errors/gateway-error.ts';
import { authenticate } from '../transport/http/auth.ts';
import { notFound, type HttpContext, type HttpReply, type RouteHandler } from '../transport/http/context.ts';
import { CONSOLE_INDEX, CONSOLE_SDK, type ConsoleAssets } from './assets.ts';
import type { Inspector } from './inspector.ts';

export interface InspectorRouteDeps {
  jwt: JwtVerifier;
  inspector: Inspector;
  assets: ConsoleAssets;
}

export interface InspectorRoute {
  path: string;
  handler: RouteHandler;
  paramCount: number;
}

/**
 * The inspector's GET routes, registered only when CONSOLE_ENABLED=true (otherwise the
 * paths fall through to the gateway's 404):
 *
 *   /v1/inspector/sessions?limit=&cursor=   the tenant's sessions with their heads (operator)
 *   /v1/inspector/sessions/:id              one session, its stream and subscribers (operator)
 *   /console, /console/, /console/:file     the page, its assets and the SDK bundle (public:
 *                                           the page asks for the operator token itself)
 */
export function inspectorRoutes(deps: InspectorRouteDeps): InspectorRoute[] {
  const index = (): Promise<HttpReply> => asset(deps.assets, CONSOLE_INDEX);
  return [
    { path: '/v1/inspector/sessions', handler: (ctx) => listSessions(deps, ctx), paramCount: 0 },
    { path: '/v1/inspector/sessions/:id', handler: (ctx) => inspectSession(deps, ctx), paramCount: 1 },
    { path: '/console', handler: index, paramCount: 0 },
    { path: '/console/', handler: index, paramCount: 0 },
    { path: '/console/:file', handler: (ctx) => asset(deps.assets, ctx.params[0]!), paramCount: 1 },
  ];
}

const NO_STORE = { 'cache-control': 'no-store' };

async function listSessions(deps: InspectorRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  const raw = ctx.query.get('limit') || String(LIST_LIMIT_DEFAULT);
  const limit = Number(raw);
  if (!/^\d{1,3}$/.test(raw) || limit < 1 || limit > LIST_LIMIT_MAX) {
    throw new GatewayError('bad_request', `limit must be between 1 and ${LIST_LIMIT_MAX}`);
  }
  const cursor = ctx.query.get('cursor');
  const page = await deps.inspector.listSessions(principal, {
    limit,
    ...(cursor ? { after: decodeCursor(cursor) } : {}),
  });
  return {
    status: 200,
    body: { sessions: page.sessions, ...(page.next ? { nextCursor: encodeCursor(page.next) } : {}) },
    headers: NO_STORE,
  };
}

async function inspectSession(deps: InspectorRouteDeps, ctx: HttpContext): Promise<HttpReply> {
  const principal = await authenticate(deps.jwt, ctx);
  return { status: 200, body: await deps.inspector.session(principal, ctx.params[0]!), headers: NO_STORE };
}

/**
 * The page may talk only to its own origin (the inspector API and `/v1/realtime`), runs
 * only its own scripts, and cannot be framed: the operator token it holds stays in it.
 */
const CONSOLE_HEADERS = {
  ...NO_STORE,
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

async function asset(assets: ConsoleAssets, name: string): Promise<HttpReply> {
  let file = assets.files.get(name);
  if (!file && name === CONSOLE_SDK) {
    try {
      file = await assets.sdk();
    } catch {
      throw new GatewayError(
        'unavailable',
        'the client SDK bundle is not available on this gateway (see its log)',
      );
    }
  }
  if (!file) return notFound();
  return { status: 200, body: undefined, headers: CONSOLE_HEADERS, raw: file };
}
