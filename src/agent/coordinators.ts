// The coordinators an agent may talk to: every `--coordinator` URL, and every address a
// name in one of them resolves to, each its own endpoint. Calls go to the current one;
// a transient failure there moves the agent on to the next (replicas share one
// database, so any of them takes its stream, uploads and reports).
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { lookup as lookupAll } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { SecureClientSessionOptions } from 'node:http2';
import type { DescMessage } from '@bufbuild/protobuf';
import { createClient, type Client, type Interceptor, type StreamResponse, type Transport } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AgentService } from '../../gen/kiln/v1/agent_pb.js';
import { AGENT_ID_HEADER, AGENT_PASSWORD_HEADER } from '../protocol/credentials.js';
import type { Logger } from '../logger.js';
import { traceHeaders } from '../telemetry/agent-telemetry.js';
import { isTransient } from './backoff.js';

export interface Endpoint {
  /** The URL as given (its host name kept for TLS and the :authority). */
  url: string;
  /** The address this endpoint dials, when the name resolved to several. */
  address?: string;
  transport: Transport;
  client: Client<typeof AgentService>;
  /** Where this coordinator's binary cache is, once its Welcome said so. */
  cacheUrl?: string;
}

/**
 * The agent's transport to one coordinator: credentials and trace context on every call,
 * HTTP/2 pings so that a coordinator that vanished behind NAT is noticed in seconds.
 * `address` pins the connection to one of the addresses the URL's host resolves to.
 */
export function agentTransport(url: string, agentId: string, password: string, address?: string): Transport {
  const credentials: Interceptor = (next) => (req) => {
    req.header.set(AGENT_ID_HEADER, agentId);
    req.header.set(AGENT_PASSWORD_HEADER, password);
    return next(req);
  };
  const family = address ? isIP(address) : 0;
  // Node's http2.connect hands its options to net/tls.connect, which take a lookup.
  const pinned: SecureClientSessionOptions | undefined = address
    ? {
        lookup: ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
          if (options?.all) callback(null, [{ address, family } satisfies LookupAddress]);
          else callback(null, address, family);
        }) as unknown as typeof dnsLookup,
      }
    : undefined;
  return createGrpcTransport({
    baseUrl: url,
    interceptors: [credentials, traceHeaders],
    pingIntervalMs: 10_000,
    pingTimeoutMs: 10_000,
    ...(pinned ? { nodeOptions: pinned } : {}),
  });
}

/** A client of one coordinator, for callers that know only one. */
export function agentClient(url: string, agentId: string, password: string): Client<typeof AgentService> {
  return createClient(AgentService, agentTransport(url, agentId, password));
}

/** Every address a host name resolves to. */
export type HostResolver = (host: string) => Promise<string[]>;

const systemResolver: HostResolver = async (host) => (await lookupAll(host, { all: true })).map((a) => a.address);

/** The addresses `url`'s host resolves to (one entry, unpinned, for an IP or one address). */
async function addressesOf(url: string, resolveHost: HostResolver): Promise<(string | undefined)[]> {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) return [undefined];
  try {
    const found = [...new Set(await resolveHost(host))];
    return found.length > 1 ? found : [undefined];
  } catch {
    return [undefined]; // unresolvable now: dialled by name, and retried as any other failure
  }
}

export class Coordinators {
  private endpoints: Endpoint[];
  private index = 0;
  /** A transport that sends each call to the current endpoint and moves on when it fails. */
  readonly transport: Transport;
  /** A client of whichever coordinator is current. */
  readonly client: Client<typeof AgentService>;

  constructor(
    private readonly urls: string[],
    private readonly credentials: { agentId: string; password: string },
    private readonly log: Logger,
    private readonly resolveHost: HostResolver = systemResolver,
  ) {
    if (urls.length === 0) throw new Error('an agent needs at least one coordinator URL');
    this.endpoints = urls.map((url) => this.endpoint(url));
    this.transport = {
      unary: async (method, signal, timeoutMs, header, input, contextValues) => {
        const at = this.current();
        try {
          return await at.transport.unary(method, signal, timeoutMs, header, input, contextValues);
        } catch (err) {
          this.failed(at, err);
          throw err;
        }
      },
      stream: async (method, signal, timeoutMs, header, input, contextValues) => {
        const at = this.current();
        try {
          const response = await at.transport.stream(method, signal, timeoutMs, header, input, contextValues);
          return { ...response, message: this.watched(at, response) };
        } catch (err) {
          this.failed(at, err);
          throw err;
        }
      },
    };
    this.client = createClient(AgentService, this.transport);
  }

  /** Expands names that resolve to several addresses into an endpoint per address. */
  async resolve(): Promise<void> {
    const expanded: Endpoint[] = [];
    for (const url of this.urls) for (const address of await addressesOf(url, this.resolveHost)) expanded.push(this.endpoint(url, address));
    this.endpoints = expanded;
    this.index = 0;
    if (expanded.length > 1) this.log.info({ coordinators: expanded.map(describe) }, 'coordinators');
  }

  current(): Endpoint {
    return this.endpoints[this.index % this.endpoints.length]!;
  }

  all(): readonly Endpoint[] {
    return this.endpoints;
  }

  /** A call to `at` failed: if it was transient and `at` is still current, the next one is. */
  failed(at: Endpoint, err: unknown): void {
    if (this.endpoints.length < 2 || at !== this.current() || !isTransient(err)) return;
    this.index = (this.index + 1) % this.endpoints.length;
    this.log.warn({ from: describe(at), to: describe(this.current()), err: (err as Error).message }, 'coordinator out of reach; moving to the next');
  }

  /** The binary caches to fetch from: the current coordinator's first, then the others' known so far. */
  cacheUrls(): string[] {
    const ordered = [this.current(), ...this.endpoints.filter((e) => e !== this.current())];
    return [...new Set(ordered.map((e) => e.cacheUrl).filter((u): u is string => u !== undefined))];
  }

  private endpoint(url: string, address?: string): Endpoint {
    const transport = agentTransport(url, this.credentials.agentId, this.credentials.password, address);
    return { url, ...(address ? { address } : {}), transport, client: createClient(AgentService, transport) };
  }

  private async *watched<I extends DescMessage, O extends DescMessage>(at: Endpoint, response: StreamResponse<I, O>) {
    try {
      yield* response.message;
    } catch (err) {
      this.failed(at, err);
      throw err;
    }
  }
}

function describe(e: Endpoint): string {
  return e.address ? `${e.url} (${e.address})` : e.url;
}
