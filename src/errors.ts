/** Errors that cross workers and sockets travel as `{ code, message }`. */
export class FerryError extends Error {
  readonly code: string;
  /** The system error underneath, when there is one (ECONNREFUSED, ...). */
  readonly errno: string | undefined;
  constructor(code: string, message: string, errno?: string) {
    super(message);
    this.name = 'FerryError';
    this.code = code;
    this.errno = errno;
  }
  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message };
  }
}

/** Bad input from a user: the CLI exits with status 2. */
export class UsageError extends FerryError {
  constructor(message: string) {
    super('EUSAGE', message);
    this.name = 'UsageError';
  }
}

/**
 * A failed operation whose outcome the command has already printed (as JSON on stdout, say): the
 * CLI exits with status 1 and prints nothing more, so nothing is said twice.
 */
export class ReportedError extends FerryError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'ReportedError';
  }
}
