import { constants as osConstants } from 'node:os';

/**
 * Errors shaped like Node's own system errors: `code` ('ECONNRESET'),
 * positive `errno`, `syscall`. Native calls return negative errno values;
 * this is the one place they become Error objects.
 */
export interface AudioloopError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

const DEFAULT_MESSAGES: Record<string, string> = {
  ECONNRESET: 'connection reset by peer',
  EBUSY: 'resource busy: the server end is already open',
  EINVAL: 'invalid argument',
  EAGAIN: 'resource temporarily unavailable',
  EBADF: 'bad file descriptor: the endpoint is closed',
  EPIPE: 'broken pipe',
  ECONNREFUSED: 'connection refused',
  ENOENT: 'no such file or directory',
  EPROTO: 'protocol error',
  ENODEV: 'no such device',
};

/** The errno number for a code name such as 'EBUSY' (0 when unknown). */
export function errnoOf(code: string): number {
  return (osConstants.errno as Record<string, number>)[code] ?? 0;
}

/** The code name for an errno number (positive or negative). */
export function codeOf(errno: number): string {
  return errnoNames.get(Math.abs(errno)) ?? `E${Math.abs(errno)}`;
}

/** Builds an error from a code name: `makeError('ECONNRESET', 'read')`. */
export function makeError(code: string, syscall: string, message?: string): AudioloopError {
  const text = message ?? DEFAULT_MESSAGES[code] ?? code;
  const err = new Error(`${syscall} ${code}: ${text}`) as AudioloopError;
  err.code = code;
  err.errno = errnoOf(code);
  err.syscall = syscall;
  return err;
}

/** Builds an error from a negative (or positive) errno returned by native code. */
export function errnoError(errno: number, syscall: string, message?: string): AudioloopError {
  return makeError(codeOf(errno), syscall, message);
}

export function isErrorWithCode(e: unknown, code?: string): e is AudioloopError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string' &&
    (code === undefined || (e as unknown as { code: string }).code === code);
}
