// No ioredis here: the configuration loader checks REDIS_CLUSTER_NAT_MAP with it.

/** Reachable addresses by the `host:port` a cluster node announces. */
export type NatMap = Record<string, { host: string; port: number }>;

/**
 * REDIS_CLUSTER_NAT_MAP: comma-separated `announced=reachable` pairs, each side
 * `host:port` (`[v6addr]:port` for IPv6), for a cluster whose nodes announce addresses
 * the gateway cannot reach as they are (Docker or Kubernetes port mapping, NAT, a proxy).
 * The seeds are given as reachable addresses already. Throws a RangeError for a malformed
 * list: a configuration error, reported at start-up.
 */
export function parseNatMap(text: string): NatMap {
  const map: NatMap = {};
  for (const raw of text.split(',')) {
    const entry = raw.trim();
    if (entry === '') continue;
    const sides = entry.split('=');
    if (sides.length !== 2)
      throw new RangeError(`REDIS_CLUSTER_NAT_MAP: not announced=reachable: ${JSON.stringify(raw)}`);
    const [announced, reachable] = sides.map((side) => hostPort(side.trim(), raw)) as [HostPort, HostPort];
    const key = `${announced.host}:${announced.port}`;
    if (key in map) throw new RangeError(`REDIS_CLUSTER_NAT_MAP: ${key} is mapped twice`);
    map[key] = reachable;
  }
  return map;
}

interface HostPort {
  host: string;
  port: number;
}

function hostPort(text: string, raw: string): HostPort {
  const match = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535)
    throw new RangeError(`REDIS_CLUSTER_NAT_MAP: needs host:port on both sides: ${JSON.stringify(raw)}`);
  // ioredis names an IPv6 node by its bare address, as CLUSTER SLOTS gives it
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}
