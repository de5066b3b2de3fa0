import { hostname, totalmem } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import { PolicyRegistry } from '../migration/policies.ts';
import { UsageError } from '../errors.ts';
import { loadToken } from '../wire/auth.ts';
import { loadHostTls, type HostTls } from '../wire/tls.ts';
import { Host } from '../host/host.ts';
import { limitsFromEnv, type HostLimits } from '../host/limits.ts';
import { createLogger } from '../log.ts';
import { collect, parseSize } from './parse.ts';
import { drainCommand } from './drain.ts';
import { metricsKey } from '../host/metrics.ts';

/** "HOST:PORT", "[::1]:PORT" or ":PORT" → parts; port 0 picks a free one. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`invalid --listen "${text}": expected HOST:PORT, e.g. 127.0.0.1:7400`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** A URL other hosts reach this one at: ws:// or wss://, a host, a port. */
export function parseAdvertise(text: string): string {
  let u: URL | undefined;
  try {
    u = new URL(text);
  } catch { /* reported below */ }
  if (!u || (u.protocol !== 'ws:' && u.protocol !== 'wss:') || !u.hostname || (u.pathname !== '/' && u.pathname !== '')) {
    throw new UsageError(`invalid --advertise "${text}": expected ws://HOST:PORT (the address other hosts reach this one at)`);
  }
  return u.origin;
}

interface StartOpts {
  listen: string;
  advertise?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsAllow?: string;
  name?: string;
  tokenFile?: string;
  maxMemory?: string;
  policyModule: string[];
}

export function hostCommand(): Command {
  const host = new Command('host').description('Run a Ferry host (start), empty one (drain), or print its metrics scrape key');
  host.command('start')
    .description('Run a host in the foreground: VMs, the control API and migration over WebSocket, and GET /metrics')
    .option('--listen <host:port>', 'address to listen on; anything but loopback needs a token', '127.0.0.1:7400')
    .option('--advertise <url>', 'the address other hosts reach this one at, when it is not the listen address (NAT, a proxy, a wildcard listen)')
    .option('--tls-allow <names>', 'with TLS: only hosts whose certificate carries one of these names (comma-separated) may migrate here')
    .option('--name <name>', 'host name shown to clients (default: this machine\'s hostname)')
    .option('--token-file <file>', 'cluster token (first line); FERRY_TOKEN works too')
    .option('--max-memory <size>', 'refuse VMs beyond this much guest RAM in total (default: half of this machine\'s memory)')
    .addOption(new Option('--policy-module <file>', 'an ES module exporting convergencePolicies and/or pushOrders that migrations from here may name (repeatable)').default([]).argParser(collect))
    .action(async (_o: StartOpts, cmd: Command) => {
      const o = cmd.optsWithGlobals<StartOpts>();
      const listen = parseListen(o.listen);
      const advertise = o.advertise === undefined ? undefined : parseAdvertise(o.advertise);
      const maxMemory = o.maxMemory !== undefined ? parseSize(o.maxMemory, 'max memory') : Math.floor(totalmem() / 2);
      let token: string | undefined;
      let limits: HostLimits;
      let tls: HostTls | undefined;
      try {
        token = loadToken(o.tokenFile);
        limits = limitsFromEnv();
        const allow = o.tlsAllow?.split(',').map((n) => n.trim()).filter((n) => n.length > 0);
        tls = loadHostTls({ cert: o.tlsCert, key: o.tlsKey, ca: o.tlsCa, ...(allow ? { allow } : {}) });
        if (allow && !tls) throw new Error('--tls-allow needs TLS (--tls-cert F --tls-key F --tls-ca F)');
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      const name = o.name ?? hostname();
      const log = createLogger({ host: name });
      const policies = new PolicyRegistry();
      for (const file of o.policyModule) {
        try {
          const added = policies.addModule(await import(pathToFileURL(resolve(file)).href) as Record<string, unknown>, file);
          log.info({ module: file, added }, 'policies loaded');
        } catch (e) {
          throw new UsageError(`--policy-module ${file}: ${(e as Error).message}`);
        }
      }
      let h: Host;
      try {
        h = new Host({ ...listen, name, maxMemory, log, limits, policies, ...(token !== undefined ? { token } : {}), ...(advertise !== undefined ? { advertise } : {}), ...(tls ? { tls } : {}) });
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      // Signals are handled before anyone can learn the address: a stop never finds them unhandled.
      const stopped = new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ signal }, 'signal received');
          void h.stop().then(resolve);
        };
        process.once('SIGINT', () => stop('SIGINT'));
        process.once('SIGTERM', () => stop('SIGTERM'));
      });
      const url = await h.start();
      process.stdout.write(`ferry host ${name} listening on ${url}\n`);
      await stopped;
    });
  host.addCommand(drainCommand());
  host.command('metrics-key')
    .description('Print the scrape key for GET /metrics of hosts with this cluster token (--token-file F or FERRY_TOKEN): it opens nothing else')
    .action((_o: unknown, cmd: Command) => {
      let token: string | undefined;
      try {
        token = loadToken(cmd.optsWithGlobals<{ tokenFile?: string }>().tokenFile);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      if (token === undefined) throw new UsageError('no cluster token: pass --token-file F or set FERRY_TOKEN (a host without one serves /metrics to its own machine, no key needed)');
      process.stdout.write(`${metricsKey(token)}\n`);
    });
  return host;
}
