export interface HttpResult {
  status: number;
  body: any;
}

export interface HttpOptions {
  token?: string | undefined;
  body?: unknown;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

/**
 * One HTTP request to a test gateway: JSON in, JSON (or text) out. No keep-alive, so a
 * pooled socket never holds a test process open after its gateway stopped.
 */
export async function httpJson(
  baseUrl: string,
  method: string,
  path: string,
  options: HttpOptions = {},
): Promise<HttpResult> {
  const { token, body, timeoutMs = 5000, headers = {} } = options;
  const res = await fetch(baseUrl + path, {
    method,
    signal: AbortSignal.timeout(timeoutMs),
    headers: {
      connection: 'close',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    // Strings and bytes go out as they are (signed bodies must keep every byte).
    ...(body !== undefined
      ? { body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body) }
      : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body: parsed };
}
