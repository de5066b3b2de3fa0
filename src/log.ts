import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Ferry's logger: JSON lines on stderr (stdout stays for command output), pretty-printed when
 * stderr is a terminal. FERRY_LOG_LEVEL sets the level (default info; 'silent' in tests).
 */
export function createLogger(bindings: Record<string, unknown> = {}): Logger {
  const level = process.env.FERRY_LOG_LEVEL ?? 'info';
  if (process.stderr.isTTY && level !== 'silent') {
    return pino({
      level,
      base: bindings,
      transport: { target: 'pino-pretty', options: { destination: 2, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  return pino({ level, base: bindings }, pino.destination({ dest: 2, sync: true }));
}
