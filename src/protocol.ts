/**
 * The server-end socket protocol (version 1). Documented in README.md
 * ("Server protocol"); any language can speak it with a unix socket.
 *
 *   server -> daemon   OPEN mode=read|write format=F rate=R channels=C [nonblock=0|1] [latency=MS] [wait=MS] [clock=0|1] [app=NAME] [pid=N]\n
 *   daemon -> server   OK instance=N node=audioloopN mode=M format=F rate=R channels=C frame=BYTES\n
 *                 or   ERR CODE ERRNO message\n   (then the daemon closes)
 *   daemon -> server   TIMEOUT wait=MS\n   (wait=MS only) MS after OK and every MS after that
 *                      until START: no client started; the connection stays open
 *   daemon -> server   SILENCE frames=N\n   (clock=1, mode=read) before START, every ~10 ms:
 *                      N frames of silence are due by the daemon's clock (the server
 *                      reads them as N frames of silence); mode=write with clock=1:
 *                      the daemon consumes (discards) the server's data at the loop's
 *                      rate until START, so the writer is not held; after START
 *                      (mode=read) the silence the node hears while no client's
 *                      data flows is kept (raw PCM, on the graph's clock)
 *   daemon -> server   START [app=NAME] [pid=N]\n   once, when the first client starts
 *   then, mode=read:   raw PCM daemon -> server; EOF = the client went away (ECONNRESET)
 *         mode=write:  raw PCM server -> daemon; daemon -> server `RESET\n` then close
 *                      when the client went away (ECONNRESET); the server closing
 *                      its end (EOF) means "done": buffered data is played out first.
 *
 * Control socket (`control` beside the loop sockets): `STATUS\n` -> one JSON line;
 * `METRICS instance=N {json}\n` (no reply) from a bridge, see src/bridge/metrics.ts.
 *
 * The OPEN line: strict UTF-8 text, fields separated by spaces, each key at
 * most once, values %-encoded (app), a trailing \r is ignored (CRLF). Refusals:
 *   E2BIG      the line reaches MAX_LINE bytes (newline included) without ending
 *   EPROTO     not "OPEN ..."; a field without "="; an unknown or duplicate key;
 *              a bad %-escape; bytes that are not UTF-8; NUL or other control
 *              characters; the connection ended in the middle of the line
 *   EINVAL     mode missing / not read|write (read+write says so); format, rate,
 *              channels, nonblock (0|1), latency (integer ms, 1-1000), wait
 *              (integer ms, 1-86400000), clock (0|1), pid (positive integer) out of range;
 *              control characters in app (it is cut to 64 characters)
 *   ETIMEDOUT  no complete line within the daemon's handshake timeout (5 s)
 *   EBUSY      the server end is already open; ENODEV no sound server
 */
import { AudioloopError } from './errors';
import { FORMAT_INFO, isSampleFormat, validateFormat, SAMPLE_FORMATS, type PcmFormat } from './format';

export const PROTOCOL_VERSION = 1;
/** the longest handshake line accepted, in bytes (including the newline) */
export const MAX_LINE = 1024;

export type ServerMode = 'read' | 'write';

export interface OpenRequest extends PcmFormat {
  mode: ServerMode;
  nonblock: boolean;
  /** the latency the node asks the sound server for, in ms (PipeWire node.latency); absent: the clients' */
  latencyMs?: number;
  /** wait=MS: a TIMEOUT line every MS without a client start; absent: wait forever (the seed's behaviour) */
  waitMs?: number;
  /**
   * clock=1: until START the daemon runs the loop's clock for the server:
   * read mode, SILENCE lines (the silence due); write mode, the server's
   * data is consumed at the loop's rate. Absent (clock=0): the server waits.
   */
  clock?: boolean;
  app?: string;
  pid?: number;
}

export interface OkReply extends PcmFormat {
  instance: number;
  node: string;
  mode: ServerMode;
  frame: number;
}

/** A protocol-level refusal: becomes `ERR CODE ERRNO message`. */
export class ProtocolError extends AudioloopError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

/** the line the daemon sends a writing server when the client went away (ECONNRESET) */
export const RESET_LINE = 'RESET';

export function formatReset(): string {
  return RESET_LINE + '\n';
}

/** the line the daemon sends (wait=MS) each MS without a client start; the connection stays open */
export const TIMEOUT_WORD = 'TIMEOUT';

export function formatTimeout(ms: number): string {
  return `${TIMEOUT_WORD} wait=${ms}\n`;
}

/** the MS of a TIMEOUT line (0 when it names none), or null for any other line */
export function parseTimeout(line: string): number | null {
  const m = /^TIMEOUT(?: wait=([0-9]{1,9}))?$/.exec(line);
  if (!m) return null;
  return m[1] ? Number(m[1]) : 0;
}

/** the line the daemon sends a reading server with clock=1 before START: N frames of silence are due */
export const SILENCE_WORD = 'SILENCE';

export function formatSilence(frames: number): string {
  return `${SILENCE_WORD} frames=${frames}\n`;
}

/** the N of a SILENCE line (a positive integer), or null for any other line */
export function parseSilence(line: string): number | null {
  const m = /^SILENCE frames=([1-9][0-9]{0,9})$/.exec(line);
  return m ? Number(m[1]) : null;
}

// strict, and a byte-order mark stays in the text (so "\uFEFFOPEN" is not OPEN)
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// C0 controls and DEL; tabs are not field separators either
const CONTROL = /[\x00-\x1f\x7f]/;

/** Shows untrusted text in a message: at most `max` chars, controls as \xNN. */
function shown(text: string, max = 40): string {
    return text.slice(0, max).replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * One protocol line from bytes (without the \n; a trailing \r is dropped):
 * strict UTF-8, no NUL or other control characters. Throws ProtocolError EPROTO.
 */
export function decodeLine(bytes: Uint8Array): string {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw new ProtocolError('EPROTO', 'the line is not valid UTF-8');
  }
  if (text.endsWith('\r')) text = text.slice(0, -1);
  checkText(text);
  return text;
}

function checkText(line: string): void {
  if (line.includes('\0')) throw new ProtocolError('EPROTO', 'NUL byte in the line');
  const m = CONTROL.exec(line);
  if (m) throw new ProtocolError('EPROTO', `control character 0x${m[0].charCodeAt(0).toString(16).padStart(2, '0')} in the line`);
}

function parseFields(words: string[]): Map<string, string> {
  const fields = new Map<string, string>();
  for (const w of words) {
    const eq = w.indexOf('=');
    if (eq <= 0) throw new ProtocolError('EPROTO', `malformed field "${shown(w)}" (expected key=value)`);
    const key = w.slice(0, eq);
    if (fields.has(key)) throw new ProtocolError('EPROTO', `duplicate field "${shown(key)}"`);
    let value: string;
    try {
      value = decodeURIComponent(w.slice(eq + 1));
    } catch {
      throw new ProtocolError('EPROTO', `bad %-escape in field "${shown(key)}"`);
    }
    fields.set(key, value);
  }
  return fields;
}

const OPEN_KEYS = new Set(['mode', 'format', 'rate', 'channels', 'nonblock', 'latency', 'wait', 'clock', 'app', 'pid']);

/** the range of OPEN's latency=MS */
export const LATENCY_MS = { min: 1, max: 1000 } as const;
/** the range of OPEN's wait=MS (one day at most) */
export const WAIT_MS = { min: 1, max: 86_400_000 } as const;

/** the CLI's --wait SEC (decimal seconds, ms resolution) as wait=MS; null when not 0.001-86400 */
export function waitSecondsToMs(v: string): number | null {
  const ms = /^[0-9]{1,5}(\.[0-9]{1,3})?$/.test(v) ? Math.round(Number(v) * 1000) : NaN;
  return ms >= WAIT_MS.min && ms <= WAIT_MS.max ? ms : null;
}

function intField(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  return /^[0-9]{1,9}$/.test(v) ? Number(v) : NaN;
}

/**
 * Parses an OPEN line (without the newline); throws ProtocolError:
 * E2BIG longer than MAX_LINE, EPROTO not an OPEN line / control characters /
 * malformed, unknown or duplicate fields, EINVAL a field with a bad value.
 */
export function parseOpen(line: string): OpenRequest {
  if (Buffer.byteLength(line) >= MAX_LINE) throw new ProtocolError('E2BIG', `handshake line longer than ${MAX_LINE} bytes`);
  checkText(line);
  const words = line.split(' ').filter((w) => w.length > 0);
  if (words[0] !== 'OPEN') throw new ProtocolError('EPROTO', `expected "OPEN ...", got "${shown(line)}"`);
  const fields = parseFields(words.slice(1));
  for (const k of fields.keys()) if (!OPEN_KEYS.has(k)) throw new ProtocolError('EPROTO', `unknown field "${shown(k)}" (known: ${[...OPEN_KEYS].join(', ')})`);
  const mode = fields.get('mode');
  if (mode === 'readwrite' || mode === 'rw' || mode === 'read+write')
    throw new ProtocolError('EINVAL', 'read+write is not permitted: open the server end read-only or write-only (mode=read|write)');
  if (mode !== 'read' && mode !== 'write') throw new ProtocolError('EINVAL', 'mode must be read or write');
  const format = fields.get('format') ?? 's16le';
  if (!isSampleFormat(format)) throw new ProtocolError('EINVAL', `format must be one of ${SAMPLE_FORMATS.join(', ')}`);
  const rate = intField(fields.get('rate')) ?? 48000;
  const channels = intField(fields.get('channels')) ?? 2;
  const bad = validateFormat({ format, rate, channels });
  if (bad) throw new ProtocolError('EINVAL', bad);
  const nb = fields.get('nonblock') ?? '0';
  if (nb !== '0' && nb !== '1') throw new ProtocolError('EINVAL', 'nonblock must be 0 or 1');
  const req: OpenRequest = { mode, format, rate, channels, nonblock: nb === '1' };
  const latency = intField(fields.get('latency'));
  if (latency !== undefined) {
    if (!Number.isInteger(latency) || latency < LATENCY_MS.min || latency > LATENCY_MS.max)
      throw new ProtocolError('EINVAL', `latency must be an integer number of milliseconds, ${LATENCY_MS.min}-${LATENCY_MS.max}`);
    req.latencyMs = latency;
  }
  const wait = intField(fields.get('wait'));
  if (wait !== undefined) {
    if (!Number.isInteger(wait) || wait < WAIT_MS.min || wait > WAIT_MS.max)
      throw new ProtocolError('EINVAL', `wait must be an integer number of milliseconds, ${WAIT_MS.min}-${WAIT_MS.max}`);
    req.waitMs = wait;
  }
  const clock = fields.get('clock');
  if (clock !== undefined) {
    if (clock !== '0' && clock !== '1') throw new ProtocolError('EINVAL', 'clock must be 0 (wait for a client) or 1 (run the clock before a client starts)');
    if (clock === '1') req.clock = true;
  }
  const app = fields.get('app');
  if (app !== undefined && app !== '') {
    if (CONTROL.test(app)) throw new ProtocolError('EINVAL', 'app must not contain control characters');
    req.app = [...app].slice(0, 64).join('');
  }
  const pid = intField(fields.get('pid'));
  if (pid !== undefined) {
    if (!Number.isInteger(pid) || pid < 1) throw new ProtocolError('EINVAL', 'pid must be a positive integer');
    req.pid = pid;
  }
  return req;
}

export function formatOpen(req: OpenRequest): string {
  let line = `OPEN mode=${req.mode} format=${req.format} rate=${req.rate} channels=${req.channels} nonblock=${req.nonblock ? 1 : 0}`;
  if (req.latencyMs !== undefined) line += ` latency=${req.latencyMs}`;
  if (req.waitMs !== undefined) line += ` wait=${req.waitMs}`;
  if (req.clock) line += ' clock=1';
  if (req.app) line += ` app=${encodeURIComponent(req.app)}`;
  if (req.pid !== undefined) line += ` pid=${req.pid}`;
  return line + '\n';
}

export function formatOk(r: OkReply): string {
  return `OK instance=${r.instance} node=${r.node} mode=${r.mode} format=${r.format} rate=${r.rate} channels=${r.channels} frame=${r.frame}\n`;
}

export function parseOk(line: string): OkReply {
  const words = line.split(' ').filter(Boolean);
  if (words[0] !== 'OK') throw new ProtocolError('EPROTO', `expected OK, got "${line.slice(0, 60)}"`);
  const f = parseFields(words.slice(1));
  const format = f.get('format');
  const mode = f.get('mode');
  const [instance, rate, channels, frame] = ['instance', 'rate', 'channels', 'frame'].map((k) => intField(f.get(k)));
  const node = f.get('node');
  const bad = (): ProtocolError => new ProtocolError('EPROTO', `bad OK line "${shown(line, 60)}"`);
  if (!isSampleFormat(format) || (mode !== 'read' && mode !== 'write') || !node) throw bad();
  if (instance === undefined || !Number.isInteger(instance) || rate === undefined || channels === undefined) throw bad();
  if (validateFormat({ format, rate, channels }) || frame !== FORMAT_INFO[format].bytes * channels) throw bad();
  return { instance, node, mode, format, rate, channels, frame };
}

export function formatErr(code: string, errno: number, message: string): string {
  return `ERR ${code} ${errno} ${message.replace(/[\r\n]+/g, ' ')}\n`;
}

export function parseErr(line: string): { code: string; errno: number; message: string } | null {
  const m = /^ERR (\S+) (\d+) ?(.*)$/.exec(line);
  return m ? { code: m[1]!, errno: Number(m[2]), message: m[3] ?? '' } : null;
}

export function formatStart(info: { app?: string | null; pid?: number | null }): string {
  let line = 'START';
  if (info.app) line += ` app=${encodeURIComponent(info.app)}`;
  if (info.pid) line += ` pid=${info.pid}`;
  return line + '\n';
}

export function parseStart(line: string): { app?: string; pid?: number } {
  const words = line.split(' ').filter(Boolean);
  if (words[0] !== 'START') throw new ProtocolError('EPROTO', `expected START, got "${line.slice(0, 60)}"`);
  const f = parseFields(words.slice(1));
  const out: { app?: string; pid?: number } = {};
  const app = f.get('app');
  if (app) out.app = app;
  const pid = intField(f.get('pid'));
  if (pid !== undefined && Number.isInteger(pid) && pid > 0) out.pid = pid;
  return out;
}

/**
 * Splits a byte stream into lines, for handshakes: feed chunks, take lines;
 * whatever follows the last line stays in `rest` (it may be PCM).
 */
export class LineReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly max = MAX_LINE) {}

  /** appends data; throws ProtocolError('E2BIG') if a line grows past the limit */
  feed(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const nl = this.buf.indexOf(0x0a);
    if ((nl < 0 && this.buf.length >= this.max) || nl >= this.max)
      throw new ProtocolError('E2BIG', `handshake line longer than ${this.max} bytes`);
  }

  /**
   * the next complete line (without \n, \r stripped), or null; throws
   * ProtocolError EPROTO for bytes that are not UTF-8 text (see decodeLine)
   */
  take(): string | null {
    const nl = this.buf.indexOf(0x0a);
    if (nl < 0) return null;
    const bytes = this.buf.subarray(0, nl);
    this.buf = this.buf.subarray(nl + 1);
    return decodeLine(bytes);
  }

  /** bytes received and not yet taken as a line */
  get pending(): number {
    return this.buf.length;
  }

  /** bytes after the lines taken so far */
  rest(): Buffer {
    const r = this.buf;
    this.buf = Buffer.alloc(0);
    return r;
  }
}

/** Paths of the daemon's sockets. */
export function defaultSocketDir(env: NodeJS.ProcessEnv = process.env): string {
  const rt = env.XDG_RUNTIME_DIR;
  if (rt) return `${rt}/audioloop`;
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return `/tmp/audioloop-${uid}`;
}

export function loopSocketPath(dir: string, instance: number): string {
  return `${dir}/audioloop${instance}`;
}

export function controlSocketPath(dir: string): string {
  return `${dir}/control`;
}
