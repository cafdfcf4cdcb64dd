import type { JwtVerifier, Principal } from '../../auth/jwt.ts';
import { bearerToken } from '../../auth/jwt.ts';
import { GatewayError } from '../../errors/gateway-error.ts';
import type { HttpContext } from './context.ts';

/** The caller of an HTTP request, from its `Authorization: Bearer` header. */
export async function authenticate(jwt: JwtVerifier, ctx: HttpContext): Promise<Principal> {
  const token = bearerToken(ctx.headers.authorization);
  if (token === undefined) throw new GatewayError('unauthorized', 'send Authorization: Bearer <JWT>');
  return jwt.verify(token);
}
