import { createServer } from 'node:net';

/**
 * Binds port 0 on `host`, reads the port the OS picked, and releases it, so every worker
 * can listen on the same one (each worker binding port 0 itself would get a different
 * port). Another process could take the port in between; a worker then fails to start
 * and the primary exits 1.
 */
export function pickFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`no free port on ${host}`))));
    });
  });
}
