import { constants as osConstants } from 'node:os';

/**
 * The one error helper. Every coded error of audioloop is an
 * AudioloopError: `code` ('ECONNRESET'), positive `errno` (0 for our own
 * codes such as ECONFIG), `syscall` where there is one, shaped like Node's
 * own system errors. The kinds are subclasses, told apart with instanceof:
 * SystemError (an errno from a call: makeError/errnoError, native results),
 * ProtocolError (a refusal on the wire: `ERR CODE ERRNO message`),
 * ConfigError, WavFormatError, RtpError, SdpError.
 */
export class AudioloopError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;

  constructor(code: string, message: string, syscall = '', options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.errno = errnoOf(code);
    this.syscall = syscall;
  }
}

/** An errno from a call (a socket, the native addon, the sound server). */
export class SystemError extends AudioloopError {}

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
export function makeError(code: string, syscall: string, message?: string): SystemError {
  const text = message ?? DEFAULT_MESSAGES[code] ?? code;
  return new SystemError(code, `${syscall} ${code}: ${text}`, syscall);
}

/** Builds an error from a negative (or positive) errno returned by native code. */
export function errnoError(errno: number, syscall: string, message?: string): SystemError {
  return makeError(codeOf(errno), syscall, message);
}

export function isErrorWithCode(e: unknown, code?: string): e is AudioloopError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string' &&
    (code === undefined || (e as unknown as { code: string }).code === code);
}
