/**
 * Leveled, structured logging to stderr. Two formats:
 *   text: `2026-11-25T14:00:00.000Z info  audioloop/audioloop0: idle -> waiting {"k":"v"}`
 *   json: `{"time":"...","level":"info","scope":"audioloop/audioloop0","msg":"idle -> waiting","k":"v"}`
 * A logger and all its children share one level and format, so a config
 * reload (SIGHUP) changes them everywhere at once.
 */
import type { LogFormat, LogLevel } from './config';

const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface Logger {
  error(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
  child(scope: string): Logger;
  /** changes level and/or format for this logger, its parent and every child */
  configure(o: { level?: LogLevel; format?: LogFormat }): void;
}

interface Shared {
  level: LogLevel;
  format: LogFormat;
  sink: (line: string) => void;
}

export function createLogger(
  level: LogLevel,
  scope = 'audioloop',
  sink: (line: string) => void = (l) => process.stderr.write(l + '\n'),
  format: LogFormat = 'text',
): Logger {
  return make({ level, format, sink }, scope);
}

function make(shared: Shared, scope: string): Logger {
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>): void => {
    if (ORDER[lvl] > ORDER[shared.level]) return;
    const time = new Date().toISOString();
    if (shared.format === 'json') {
      shared.sink(JSON.stringify({ time, level: lvl, scope, msg, ...fields }));
      return;
    }
    const extra = fields && Object.keys(fields).length ? ' ' + JSON.stringify(fields) : '';
    shared.sink(`${time} ${lvl.padEnd(5)} ${scope}: ${msg}${extra}`);
  };
  return {
    error: (m, f) => emit('error', m, f),
    warn: (m, f) => emit('warn', m, f),
    info: (m, f) => emit('info', m, f),
    debug: (m, f) => emit('debug', m, f),
    child: (s) => make(shared, `${scope}/${s}`),
    configure: (o) => {
      if (o.level) shared.level = o.level;
      if (o.format) shared.format = o.format;
    },
  };
}

/** A logger that drops everything (library default). */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child() {
    return silentLogger;
  },
  configure() {},
};
