const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

interface CryptoLike {
  getRandomValues(array: Uint8Array): Uint8Array;
}

/**
 * A random publish id: 22 characters of [A-Za-z0-9] (about 130 bits), inside the
 * envelope's `eventId` alphabet. Uses `crypto.getRandomValues` where it exists (browsers,
 * Node ≥ 19, React Native with a polyfill), else Math.random.
 */
export function randomId(): string {
  const crypto = (globalThis as { crypto?: CryptoLike }).crypto;
  const bytes = new Uint8Array(22);
  if (crypto?.getRandomValues) crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  let out = '';
  // 248 = 4 × 62: values above it are re-drawn from Math.random to keep the draw uniform.
  for (const b of bytes) out += ALPHABET[b < 248 ? b % 62 : Math.floor(Math.random() * 62)];
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function base64UrlDecode(input: string): string {
  let bits = 0;
  let value = 0;
  const bytes: number[] = [];
  for (const ch of input.replace(/=+$/, '')) {
    const i = B64.indexOf(ch === '+' ? '-' : ch === '/' ? '_' : ch);
    if (i < 0) throw new Error('bad base64url');
    value = (value << 6) | i;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >> bits) & 0xff);
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/**
 * The `exp` claim of a JWT in ms since the epoch, read without verifying anything (the
 * gateway verifies); undefined when the token has none or is not a JWT.
 */
export function jwtExpiryMs(token: string): number | undefined {
  const part = token.split('.')[1];
  if (part === undefined) return undefined;
  try {
    const claims = JSON.parse(base64UrlDecode(part)) as { exp?: unknown };
    return typeof claims.exp === 'number' ? claims.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
