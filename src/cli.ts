#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { ReportedError, UsageError } from './errors.ts';
import { collect } from './cli/parse.ts';
import { runCommand, type RunOptions } from './cli/run.ts';
import { hostCommand } from './cli/host-command.ts';
import { demoCommand } from './cli/demo.ts';
import { migrateCommand, migrationCommand } from './cli/migrate-command.ts';
import { monitorCommand } from './cli/monitor.ts';
import { DEFAULT_HOST_URL, vmCommand } from './cli/vm-commands.ts';
import { builtPrograms } from './vm/programs.ts';
import { completionCommands } from './cli/completion.ts';
import { FERRY_VERSION } from './version.ts';

/**
 * Exit codes (DESIGN §7): 0 success, 1 operation failed, 2 bad usage; 141 when stdout is closed
 * under a command (`| head`), quietly, as a tool killed by SIGPIPE.
 */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_STDOUT_CLOSED = 128 + 13;

/** Commander's own messages ("error: unknown command ...") in the CLI's voice: "ferry: ...". */
const OUTPUT = {
  outputError: (text: string, write: (s: string) => void) => write(text.replace(/^error: /, 'ferry: ')),
};

function buildProgram(): Command {
  const program = new Command('ferry')
    .description('Run RV32IM guest VMs in worker threads and move them live between hosts.')
    .version(FERRY_VERSION, '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .addOption(new Option('--host <url>', 'the host to talk to').env('FERRY_HOST').default(DEFAULT_HOST_URL))
    .addOption(new Option('--token-file <file>', 'cluster token for hosts that require one (or FERRY_TOKEN)'))
    .addOption(new Option('--tls-ca <file>', 'CA certificate a wss:// host\'s certificate must chain to (default: the system\'s CAs)').env('FERRY_TLS_CA'))
    .addOption(new Option('--tls-cert <file>', 'this side\'s certificate (a host\'s own; a client\'s if the host asks for one)').env('FERRY_TLS_CERT'))
    .addOption(new Option('--tls-key <file>', 'the private key of --tls-cert').env('FERRY_TLS_KEY'));

  program
    .command('run')
    .description('Boot a guest locally (no host): UART on stdio, exit code from the guest')
    .argument('<program>', `a built guest (${builtPrograms().join(', ') || 'none built'}) or a path to an RV32 ELF`)
    .option('--memory <size>', 'guest RAM, e.g. 64M or 1G (4 KiB multiple, 1M..2G)', '128M')
    .option('--icount', 'deterministic mode: guest time derives from retired instructions')
    .option('--insn-limit <n>', 'halt after exactly N retired instructions')
    .option('--digest', 'print "digest: <sha256>" of RAM + CPU + devices as the last line')
    .addOption(new Option('--arg <key=value>', 'boot argument passed to the guest (repeatable)').default([]).argParser(collect))
    .action(async (prog: string, opts: RunOptions) => {
      process.exitCode = await runCommand(prog, opts);
    });

  program.addCommand(hostCommand());
  program.addCommand(vmCommand());
  program.addCommand(migrateCommand());
  program.addCommand(migrationCommand());
  program.addCommand(monitorCommand());
  program.addCommand(demoCommand());
  const [completion, answer] = completionCommands();
  program.addCommand(completion!);
  program.addCommand(answer!, { hidden: true });
  // Subcommands inherit exitOverride only if set before they are added; set it on all of them.
  const override = (c: Command): void => {
    c.exitOverride();
    c.configureOutput(OUTPUT);
    c.showHelpAfterError('(run with --help for usage)');
    c.commands.forEach(override);
  };
  override(program);
  program.hook('preAction', (_root, action) => {
    // A closed stdout ends a command quietly; a host keeps running (its output is a log).
    const isHost = action.name() === 'start' && action.parent?.name() === 'host';
    process.stdout.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE' && !isHost) process.exit(EXIT_STDOUT_CLOSED);
    });
  });
  return program;
}

async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; commander has already printed its message.
      process.exitCode = err.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    const usage = err instanceof UsageError;
    if (!(err instanceof ReportedError)) process.stderr.write(`ferry: ${err instanceof Error ? err.message : String(err)}\n`);
    // Nothing a failed command left behind (a connection, a timer) keeps it from ending.
    // (stdout and stderr are synchronous on pipes and files here: nothing written is lost.)
    process.exit(usage ? EXIT_USAGE : EXIT_FAILED);
  }
}

await main(process.argv);
