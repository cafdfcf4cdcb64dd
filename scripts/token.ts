/**
 * Mints a development JWT: `npm run token -- --sub alice --tid acme --role user [--ttl 3600]`.
 * Uses AUTH_JWT_SECRET from the environment: start the gateway with the same one.
 */
import { parseArgs } from 'node:util';
import { JwtVerifier } from '../src/auth/jwt.ts';
import { isRole } from '../src/protocol/roles.ts';

const { values } = parseArgs({
  options: {
    sub: { type: 'string' },
    tid: { type: 'string' },
    role: { type: 'string', default: 'user' },
    ttl: { type: 'string', default: '3600' },
  },
});
const secret = process.env.AUTH_JWT_SECRET;
if (!secret) {
  process.stderr.write('AUTH_JWT_SECRET is not set: export the secret the gateway runs with.\n');
  process.exit(1);
}
if (!values.sub || !values.tid || !isRole(values.role)) {
  process.stderr.write(
    'usage: npm run token -- --sub <user> --tid <tenant> --role user|agent|operator|service [--ttl s]\n',
  );
  process.exit(1);
}
const token = await new JwtVerifier(secret).sign(
  { sub: values.sub, tid: values.tid, role: values.role },
  Number(values.ttl),
);
process.stdout.write(`${token}\n`);
