/**
 * The daemon config file, and where the daemon looks for it (findConfig):
 *
 *     1. -c FILE                                  (the command line)
 *     2. $XDG_CONFIG_HOME/audioloop/audioloop.conf (default ~/.config/audioloop/audioloop.conf)
 *     3. /etc/audioloop/audioloop.conf             ($AUDIOLOOP_SYSCONFDIR instead of /etc, for tests)
 *     4. the built-in defaults (DEFAULT_CONFIG)
 *
 * The first file that exists is the one read; the others are not merged in.
 * The checkout's conf/audioloop.conf is the documented example (every key at
 * its default); scripts/install-service.sh copies it to place 2 when none of
 * the places has a file.
 *
 * Syntax, one setting per line:
 *
 *     # whole-line comment
 *     audioloop_instances = 2   # trailing comment
 *     buffer_ms=100
 *
 * Blank lines are ignored, whitespace around keys and values is ignored, and
 * `#` always starts a comment (values cannot contain `#`). The value is
 * everything after the first `=`. Every key may appear at most once; unknown
 * keys are errors, so a typo never silently falls back to a default.
 *
 * Values are validated with one zod schema per key; the error messages are
 * our own, always naming file, line, key and the allowed values, e.g.
 *
 *     conf/audioloop.conf:3: audioloop_instances = 40 is invalid: allowed values are integers 1-16
 */
import { AudioloopError } from './errors';
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { z } from 'zod';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];
export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

export interface AudioloopConfig {
  /** number of loop devices to create (OSS4 `audioloop_instances`), 1-16 */
  audioloopInstances: number;
  /** directory for the daemon's sockets; undefined: $XDG_RUNTIME_DIR/audioloop */
  socketDir?: string;
  /** ring buffer length per loop in milliseconds, 10-2000 */
  bufferMs: number;
  /**
   * how long a client session outlives its last client stream, 0-60000 ms:
   * a client that links again within it (the stream after a probe, the
   * next track) stays in the same session (one START, one ECONNRESET)
   */
  clientGraceMs: number;
  /**
   * node.latency (ms) of a read loop whose server did not ask latency=,
   * 0-1000, 0: none (PipeWire: its sink runs before any client, at the
   * graph's default quantum without it; see conf/audioloop.conf)
   */
  defaultLatencyMs: number;
  logLevel: LogLevel;
  /** text lines for people, or one JSON object per line for log collectors */
  logFormat: LogFormat;
  /** the sound-server backend; undefined: auto (PipeWire where it runs, else a real PulseAudio, else embedded PipeWire) */
  backend?: BackendChoice;
  /** who moves the PCM between a server's socket and its loop: native (no JS) or js; undefined: the default (src/loop.ts DEFAULT_DATA_PLANE) */
  dataPlane?: DataPlaneChoice;
}

export type DataPlaneChoice = 'native' | 'js';

export type BackendChoice = 'auto' | 'pipewire' | 'pulseaudio';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'pipewire', 'pulseaudio'];

/** The defaults. `socketDir` is absent (not merely undefined). */
export const DEFAULT_CONFIG: Readonly<AudioloopConfig> = Object.freeze({
  audioloopInstances: 1,
  bufferMs: 200,
  clientGraceMs: 1000,
  defaultLatencyMs: 20,
  logLevel: 'info',
  logFormat: 'text',
});

export class ConfigError extends AudioloopError {
  declare readonly code: 'ECONFIG';
  /** the config file, as given to parseConfig/loadConfig */
  readonly file: string;
  /** 1-based line number, or undefined when the error is not about one line */
  readonly line: number | undefined;
  /** the key concerned, when there is one */
  readonly key: string | undefined;
  /** human-readable description of the allowed values (or keys) */
  readonly allowed: string | undefined;

  constructor(
    detail: string,
    where: { file: string; line?: number; key?: string; allowed?: string },
    options?: { cause?: unknown },
  ) {
    super('ECONFIG', `${where.file}${where.line !== undefined ? `:${where.line}` : ''}: ${detail}`, '', options);
    this.file = where.file;
    this.line = where.line;
    this.key = where.key;
    this.allowed = where.allowed;
  }
}

/** Decimal integer in [min, max]: no sign, no leading zeros, no hex, no fraction. */
function intSchema(min: number, max: number) {
  return z
    .string()
    .regex(/^(0|[1-9][0-9]{0,9})$/)
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
}

interface KeySpec<K extends keyof AudioloopConfig> {
  field: K;
  schema: z.ZodType<AudioloopConfig[K], z.ZodTypeDef, string>;
  allowed: string;
}

type KeyTable = { [key: string]: KeySpec<keyof AudioloopConfig> };

const KEYS = {
  audioloop_instances: { field: 'audioloopInstances', schema: intSchema(1, 16), allowed: 'integers 1-16' },
  socket_dir: {
    field: 'socketDir',
    // the daemon creates and binds in it: an empty or NUL-containing path can only be a mistake
    schema: z.string().min(1).refine((s) => !s.includes('\0')),
    allowed: 'a non-empty directory path',
  },
  buffer_ms: { field: 'bufferMs', schema: intSchema(10, 2000), allowed: 'integers 10-2000' },
  client_grace_ms: { field: 'clientGraceMs', schema: intSchema(0, 60000), allowed: 'integers 0-60000' },
  default_latency_ms: { field: 'defaultLatencyMs', schema: intSchema(0, 1000), allowed: 'integers 0-1000 (0: none)' },
  log_level: { field: 'logLevel', schema: z.enum(['error', 'warn', 'info', 'debug']), allowed: LOG_LEVELS.join(', ') },
  log_format: { field: 'logFormat', schema: z.enum(['text', 'json']), allowed: LOG_FORMATS.join(', ') },
  backend: { field: 'backend', schema: z.enum(['auto', 'pipewire', 'pulseaudio']), allowed: BACKEND_CHOICES.join(', ') },
  data_plane: { field: 'dataPlane', schema: z.enum(['native', 'js']), allowed: 'native, js' },
} satisfies KeyTable;

/** The keys the config file accepts, in documentation order. */
export const CONFIG_KEYS: readonly string[] = Object.keys(KEYS);

const KEY_SYNTAX = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** Parses config file text; `file` is used only in error messages. Throws ConfigError. */
export function parseConfig(text: string, file: string): AudioloopConfig {
  const config: AudioloopConfig = { ...DEFAULT_CONFIG };
  const seen = new Map<string, number>(); // key -> line it was set on
  const table: KeyTable = KEYS;

  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const hash = lines[i].indexOf('#');
    const content = (hash >= 0 ? lines[i].slice(0, hash) : lines[i]).trim();
    if (content === '') continue;

    const eq = content.indexOf('=');
    if (eq < 0) {
      throw new ConfigError(`syntax error: expected "key = value", got ${JSON.stringify(content)}`, { file, line });
    }
    const key = content.slice(0, eq).trim();
    const value = content.slice(eq + 1).trim();
    if (!KEY_SYNTAX.test(key)) {
      throw new ConfigError(
        `syntax error: ${key === '' ? 'missing key' : `invalid key ${JSON.stringify(key)}`} in ${JSON.stringify(content)}`,
        { file, line },
      );
    }

    const spec = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : undefined;
    if (spec === undefined) {
      const allowed = CONFIG_KEYS.join(', ');
      throw new ConfigError(`unknown key ${key}: known keys are ${allowed}`, { file, line, key, allowed });
    }
    const first = seen.get(key);
    if (first !== undefined) {
      throw new ConfigError(`duplicate key ${key}: first set on line ${first}, again on line ${line}`, {
        file,
        line,
        key,
      });
    }
    seen.set(key, line);

    const result = spec.schema.safeParse(value);
    if (!result.success) {
      const shown = value === '' ? '""' : value;
      throw new ConfigError(`${key} = ${shown} is invalid: allowed values are ${spec.allowed}`, {
        file,
        line,
        key,
        allowed: spec.allowed,
      });
    }
    (config as unknown as Record<string, unknown>)[spec.field] = result.data;
  }
  return config;
}

/**
 * Reads and parses a config file. A missing file is a ConfigError unless
 * `options.optional` is set, in which case the defaults are returned (any
 * other read error, e.g. EACCES or EISDIR, is still a ConfigError).
 */
export function loadConfig(file: string, options?: { optional?: boolean }): AudioloopConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && options?.optional) return { ...DEFAULT_CONFIG };
    const reason = code === 'ENOENT' ? 'config file not found' : `cannot read config file (${code ?? String(err)})`;
    throw new ConfigError(reason, { file }, { cause: err });
  }
  return parseConfig(text, file);
}

/** The system config directory; $AUDIOLOOP_SYSCONFDIR replaces it (tests, staged installs). */
export const SYSCONFDIR = '/etc';

/** Where the config file was found. */
export type ConfigSource = 'command line' | 'user' | 'system' | 'defaults';

export interface ConfigLocation {
  /** the file to read, or null: none of the places has one, use the built-in defaults */
  file: string | null;
  source: ConfigSource;
  /** the places searched, in order (without -c) */
  searched: string[];
}

/**
 * The config files the daemon looks for, in order (after -c):
 * `$XDG_CONFIG_HOME/audioloop/audioloop.conf` (an unset, empty or relative
 * XDG_CONFIG_HOME means `$HOME/.config`, as the XDG base directory spec
 * says), then `$AUDIOLOOP_SYSCONFDIR/audioloop/audioloop.conf` (default /etc).
 */
export function configSearchPath(env: NodeJS.ProcessEnv = process.env): { user: string; system: string } {
  const xdg = env.XDG_CONFIG_HOME;
  const home = env.HOME || homedir();
  const userDir = xdg && isAbsolute(xdg) ? xdg : join(home, '.config');
  const sysconf = env.AUDIOLOOP_SYSCONFDIR || SYSCONFDIR;
  return { user: join(userDir, 'audioloop', 'audioloop.conf'), system: join(sysconf, 'audioloop', 'audioloop.conf') };
}

/** Whether a path names something (ENOENT/ENOTDIR: no; anything else, e.g. EACCES on the file, counts as there). */
function present(file: string): boolean {
  try {
    statSync(file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== 'ENOENT' && code !== 'ENOTDIR';
  }
}

/**
 * Chooses the config file: `explicit` (-c) if given (it need not exist:
 * loadConfig then says "not found"), else the first of configSearchPath()
 * that exists. A file that exists but cannot be read or parsed is not
 * skipped: loadConfig reports it.
 */
export function findConfig(explicit?: string, env: NodeJS.ProcessEnv = process.env): ConfigLocation {
  const { user, system } = configSearchPath(env);
  const searched = [user, system];
  if (explicit !== undefined) return { file: explicit, source: 'command line', searched };
  if (present(user)) return { file: user, source: 'user', searched };
  if (present(system)) return { file: system, source: 'system', searched };
  return { file: null, source: 'defaults', searched };
}

/** One line for the log: which file was read, or that none was found. */
export function describeConfigLocation(loc: ConfigLocation): string {
  if (loc.file !== null) return `config ${loc.file} (${loc.source === 'command line' ? '-c' : loc.source === 'user' ? 'user config' : 'system config'})`;
  return `no config file (searched ${loc.searched.join(', ')}): built-in defaults`;
}
