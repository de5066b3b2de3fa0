import { Command } from 'commander';
import { startHostProcess, type HostProcess } from '../host/spawn.ts';
import type { MigrationInfo } from '../migration/stats.ts';
import { FerryError } from '../errors.ts';
import { migrationSummary, waitForMigration } from './migrate-command.ts';
import { parseCount } from './parse.ts';

/**
 * `ferry demo`: two hosts on loopback, the `counter` guest booted on the first and migrated
 * live back and forth; its console is shown throughout and checked: `tick N` must never
 * repeat or skip across a migration.
 */
export function demoCommand(): Command {
  return new Command('demo')
    .description('Two hosts on loopback, a guest migrated live back and forth, console shown throughout (Ctrl-C ends)')
    .option('--interval <ms>', 'time between migrations', '2500')
    .option('--migrations <n>', 'stop after this many migrations (default: until Ctrl-C)')
    .option('--period <ms>', 'the guest prints a tick this often', '200')
    .action(async (o: { interval: string; migrations?: string; period: string }) => {
      const interval = parseCount(o.interval, 'interval');
      const limit = o.migrations === undefined ? Infinity : parseCount(o.migrations, 'migration count');
      const period = parseCount(o.period, 'tick period');
      const hosts: HostProcess[] = [];
      let stopping = false;
      const stopAll = async () => {
        stopping = true;
        await Promise.all(hosts.map((h) => h.stop()));
      };
      const onSigint = () => { void stopAll().then(() => process.exit(0)); };
      process.once('SIGINT', onSigint);
      process.once('SIGTERM', onSigint);
      try {
        hosts.push(await startHostProcess('a'), await startHostProcess('b'));
        process.stdout.write(`demo: host a at ${hosts[0]!.url}, host b at ${hosts[1]!.url}\n`);
        let lastTick = 0;
        let glitches = 0;
        let line = '';
        for (const h of hosts) {
          h.client.on('event', (event: string, vm: string | undefined, data: unknown) => {
            if (event !== 'console' || vm !== 'guest') return;
            const text = Buffer.from(data as Uint8Array).toString('latin1');
            process.stdout.write(text.replace(/^tick/gm, `[${h.name}] tick`));
            line += text;
            let nl: number;
            while ((nl = line.indexOf('\n')) >= 0) {
              const m = /^tick (\d+)/.exec(line.slice(0, nl));
              line = line.slice(nl + 1);
              if (!m) continue;
              const n = Number(m[1]);
              if (n !== lastTick + 1) {
                glitches++;
                process.stdout.write(`demo: console glitch: tick ${n} after tick ${lastTick}\n`);
              }
              lastTick = n;
            }
          });
        }
        for (const h of hosts) await h.client.request('console.attach', { name: 'guest', follow: true });
        await hosts[0]!.client.request('vm.create', { name: 'guest', program: 'counter', args: [`period_ms=${period}`], start: true });
        let at = 0;
        for (let i = 0; i < limit && !stopping; i++) {
          await new Promise((r) => setTimeout(r, interval));
          if (stopping) break;
          const from = hosts[at]!;
          const to = hosts[1 - at]!;
          process.stdout.write(`demo: migrating ${from.name} → ${to.name} ...\n`);
          const done = waitForMigration(from.client, 'guest');
          await from.client.request('migrate.start', { name: 'guest', to: to.url });
          const s: MigrationInfo = await done;
          process.stdout.write(`demo: ${migrationSummary(s)}\n`);
          if (s.status !== 'completed') throw new FerryError('EMIGRATE', migrationSummary(s));
          at = 1 - at;
        }
        // Let the last host print a few more ticks, then finish.
        if (!stopping) await new Promise((r) => setTimeout(r, Math.min(interval, 1000)));
        process.stdout.write(`demo: done; console ran from tick 1 to tick ${lastTick} with ${glitches} repeats or gaps\n`);
        if (glitches > 0) throw new FerryError('EDEMO', `${glitches} console glitches`);
      } finally {
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigint);
        if (!stopping) await stopAll();
      }
    });
}
