#!/usr/bin/env node
/**
 * audioloop command line: daemon, record, play, status.
 * Exit codes: 0 ok, 1 error, 2 usage, 3 no daemon, 4 loop refused (EBUSY/EINVAL/ENODEV),
 * 5 the client went away before everything was played, 6 --wait: no client started in time (ETIMEDOUT).
 */
import { nativeCables } from '../backend/native-cable';
import { parseArgs } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BACKEND_CHOICES, ConfigError, configSearchPath, DEFAULT_CONFIG, describeConfigLocation, findConfig, loadConfig, type ConfigLocation, LOG_FORMATS, LOG_LEVELS, type AudioloopConfig, type LogFormat, type LogLevel } from '../config';
import { Daemon, type DaemonStatus } from '../daemon';
import { createLogger } from '../log';
import { controlSocketPath, defaultSocketDir, waitSecondsToMs } from '../protocol';
import { openServer } from '../client';
import { alignColumns, fetchStatus, loopCells, LOOP_HEAD, who } from '../control';
import { cmdTop, TOP_HELP } from './top';
import { progressFor } from './progress';
import { describeFormat, isSampleFormat, SAMPLE_FORMATS, type PcmFormat, type SampleFormat } from '../format';
import { openWavStream, readWavFromStream, WavFileWriter, wavHeader, wholeFrames } from '../wav';
import { pipewireSocketExists, startEmbeddedSoundServer, type EmbeddedSoundServer } from '../soundserver';
import type { Backend } from '../backend/types';
import type { LatencyStatus } from '../latency';
import { BRIDGE_HELP } from '../bridge/help';
import { describeMetrics } from '../bridge/metrics';

export const EXIT = { OK: 0, ERROR: 1, USAGE: 2, NO_DAEMON: 3, REFUSED: 4, RESET: 5, TIMEDOUT: 6 } as const;

class UsageError extends Error {}

/** `audioloop daemon --help`: the config search with this environment's paths, and which one is there now. */
function daemonHelp(): string {
  const { user, system } = configSearchPath();
  const found = findConfig();
  const mark = (f: string): string => (found.file === f ? '   <- found, read' : '');
  return `usage: audioloop daemon [options]

  -c, --config FILE       config file; without -c the first that exists of
                            ${user}${mark(user)}
                            ${system}${mark(system)}
                          ($XDG_CONFIG_HOME, default ~/.config; $AUDIOLOOP_SYSCONFDIR
                          replaces /etc), else the built-in defaults${found.file === null ? ' (so here: defaults)' : ''}
  -n, --instances N       number of loops, 1-16 (overrides audioloop_instances)
  -s, --socket-dir DIR    socket directory (default: $XDG_RUNTIME_DIR/audioloop)
      --sound-server M    auto (default): use the running sound server, or start a
                          private headless PipeWire if none runs; system: never start
                          one; embedded: always start a private one
      --backend B         auto (default; config key backend): PipeWire where it runs,
                          else a real PulseAudio that answers; pipewire or pulseaudio
                          forces one (embedded + pulseaudio: a private PulseAudio)
      --runtime-dir DIR   where the embedded sound server lives
                          (default: /tmp/audioloop-pw-<uid>)
      --log-level L       error, warn, info (default) or debug
      --log-format F      text (default) or json (one object per line)
  -h, --help

The log's first line names the config file read. Signals: SIGTERM/SIGINT
stop (servers get ECONNRESET, client streams are ended, nodes and sockets
removed); SIGHUP reads the same config file again (with none at start: the
search runs again): instances are added or removed without disturbing
active loops.`;
}

const HELP: Record<string, string> = {
  main: `usage: audioloop <command> [options]

OSS4-style loopback devices on PipeWire: a program opens the server end of
loop N; while it does, the device audioloopN exists on the sound server.

commands:
  daemon             run the daemon (creates the loop sockets)
  record N FILE.wav  open loop N for reading and record what clients play (like ossrecord);
                     FILE "-" is stdout (a streaming WAV, or raw PCM with --raw)
  play N FILE.wav    open loop N for writing and play FILE.wav to clients that record;
                     FILE "-" is stdin (WAV, or raw PCM with --raw -f -r -c)
  status [--json]    show every loop: state, format, server, clients, bytes, xruns
  top                live view of every loop with level meters
  bridge N --send rtp://HOST:PORT | --receive rtp://BIND:PORT
                     Opus over RTP from / to loop N (VoIP bridge)

Run "audioloop <command> --help" for the options of a command.

exit status:
  0  success (record: also when the client went away, ECONNRESET)
  1  other error
  2  wrong usage, or a bad config file
  3  no daemon answers (start one with "audioloop daemon")
  4  the loop refused the open: EBUSY (another server has it), EINVAL, ENODEV
  5  play: the client went away before the whole file was played (ECONNRESET)
  6  record/play/bridge --wait SEC: no client started within SEC (ETIMEDOUT)`,
  record: `usage: audioloop record N FILE.wav [options]

Opens the server end of loop N read-only; audioloopN appears as a sink.
Waits for a client to start playing, then records until it stops
(ECONNRESET) or Ctrl-C. The WAV file is valid in every case. On a terminal
(stderr), one line shows the time since the client started, the bytes
recorded and a peak meter per channel (dBFS), like arecord -V stereo.

FILE "-" writes to stdout: a WAV header with unknown length (RIFF and data
sizes 0xFFFFFFFF, which sox, ffmpeg and streaming readers take as "until the
end of the stream"), then the PCM; the end of the stream (ECONNRESET) closes
stdout and exits 0, as does a reader that closes the pipe (EPIPE).
Messages go to stderr.

      --raw           no WAV header: raw interleaved PCM in the -f/-r/-c format
  -f, --format F      ${SAMPLE_FORMATS.join(', ')} (default s16le)
  -r, --rate R        8000-192000 (default 48000)
  -c, --channels C    1-8 (default 2)
      --latency MS    the latency the node asks the sound server for, 1-1000 ms
                      (default: the clients'); status shows what was granted
      --wait SEC      give up when no client starts within SEC seconds (0.001-86400):
                      exit 6 with a message naming ETIMEDOUT (default: wait forever)
      --clock         do not wait: until a client starts, record silence at the
                      loop's rate (OPEN clock=1), then what the client plays
  -s, --socket-dir DIR
  -q, --quiet         no messages, no progress line
  -h, --help`,
  play: `usage: audioloop play N FILE.wav [options]

Opens the server end of loop N write-only with the format of FILE.wav;
audioloopN appears as a source. Waits for a client to start recording,
plays the file, and waits until the client has it all. On a terminal
(stderr), one line shows the time since the client started, the bytes
played (at the loop's rate) and a peak meter per channel (dBFS).

FILE "-" reads stdin: a WAV stream (as \`sox ... -t wav -\` or
\`ffmpeg ... -f wav -\` write it: a data size of 0, 0xFFFFFFFF or larger than
what follows means "until the end of the stream"), or raw PCM with --raw.

      --raw           FILE is raw interleaved PCM in the -f/-r/-c format
  -f, --format F      with --raw: ${SAMPLE_FORMATS.join(', ')} (default s16le)
  -r, --rate R        with --raw: 8000-192000 (default 48000)
  -c, --channels C    with --raw: 1-8 (default 2)
      --latency MS    the latency the node asks the sound server for, 1-1000 ms
                      (default: the clients'); status shows what was granted
      --wait SEC      give up when no client starts within SEC seconds (0.001-86400):
                      exit 6 with a message naming ETIMEDOUT (default: wait forever)
      --clock         do not wait: until a client starts, the file plays to
                      nobody at the loop's rate (the daemon consumes it; OPEN
                      clock=1), then clients record what follows
  -s, --socket-dir DIR
  -q, --quiet         no messages, no progress line
  -h, --help`,
  top: TOP_HELP,
  bridge: BRIDGE_HELP,
  status: `usage: audioloop status [--json] [-s DIR]

  --json              machine-readable output
  -s, --socket-dir DIR
  -h, --help`,
};

function parse<T extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function intArg(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^[0-9]+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${name} must be an integer ${min}-${max}, got "${v}"`);
  return Number(v);
}

/** --wait SEC (decimal seconds, ms resolution) as an openServer option: OPEN wait=MS */
function waitOpt(v: string | undefined): { waitMs?: number } {
  if (v === undefined) return {};
  const ms = waitSecondsToMs(v);
  if (ms === null) throw new UsageError(`--wait must be a number of seconds, 0.001-86400, got "${v}"`);
  return { waitMs: ms };
}

/** --latency MS as an openServer option */
function latencyOpt(v: string | undefined): { latencyMs?: number } {
  const ms = intArg(v, '--latency', 1, 1000);
  return ms === undefined ? {} : { latencyMs: ms };
}

function instanceArg(v: string | undefined): number {
  if (v === undefined) throw new UsageError('missing loop instance N');
  const n = intArg(v, 'instance N', 0, 15);
  return n!;
}

async function cmdDaemon(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    config: { type: 'string', short: 'c' },
    instances: { type: 'string', short: 'n' },
    'socket-dir': { type: 'string', short: 's' },
    'sound-server': { type: 'string' },
    backend: { type: 'string' },
    'runtime-dir': { type: 'string' },
    'log-level': { type: 'string' },
    'log-format': { type: 'string' },
  });
  if (values.help) return help('daemon');
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const inst = intArg(values.instances, '--instances', 1, 16);
  if (values['log-level'] !== undefined && !(LOG_LEVELS as readonly string[]).includes(values['log-level'])) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}`);
  }
  if (values['log-format'] !== undefined && !(LOG_FORMATS as readonly string[]).includes(values['log-format'])) {
    throw new UsageError(`--log-format must be one of ${LOG_FORMATS.join(', ')}`);
  }
  /** the file found at start; SIGHUP reads it again (with none, it searches again) */
  let where: ConfigLocation = findConfig(values.config);
  /** the config file with the command line's overrides on top (again on SIGHUP) */
  const readConfig = (): AudioloopConfig => {
    let c: AudioloopConfig = where.file !== null ? loadConfig(where.file) : { ...DEFAULT_CONFIG };
    if (inst !== undefined) c = { ...c, audioloopInstances: inst };
    if (values['log-level'] !== undefined) c = { ...c, logLevel: values['log-level'] as LogLevel };
    if (values['log-format'] !== undefined) c = { ...c, logFormat: values['log-format'] as LogFormat };
    return c;
  };
  const config = readConfig();
  const mode = values['sound-server'] ?? 'auto';
  if (!['auto', 'system', 'embedded'].includes(mode)) throw new UsageError('--sound-server must be auto, system or embedded');
  const choice = values.backend ?? config.backend ?? 'auto';
  if (!(BACKEND_CHOICES as readonly string[]).includes(choice)) throw new UsageError(`--backend must be one of ${BACKEND_CHOICES.join(', ')}`);
  const log = createLogger(config.logLevel, 'audioloop', undefined, config.logFormat);
  log.info(describeConfigLocation(where), { config: where.file, source: where.source });
  // scripts/run.sh, the systemd unit and the bench start the daemon under --lite-mode (README "Memory")
  if (!process.execArgv.includes('--lite-mode')) log.debug('node runs without --lite-mode: the same daemon, about 5 MiB more RSS (README "Memory")');
  // the socket dir comes from the caller's environment, before any embedded server changes it
  const socketDir = values['socket-dir'] ?? config.socketDir ?? defaultSocketDir();

  let embedded: EmbeddedSoundServer | null = null;
  const { PipeWireBackend } = await import('../backend/pipewire');
  const { PulseAudioBackend } = await import('../backend/pulseaudio');
  const connectPipeWire = (): Backend => new PipeWireBackend({ appName: 'audioloop' });
  const connectPulse = (): Backend => new PulseAudioBackend({ appName: 'audioloop' });
  let kind: 'pipewire' | 'pulseaudio' = choice === 'pulseaudio' ? 'pulseaudio' : 'pipewire';
  if (choice === 'auto' && mode !== 'embedded' && !canConnect(connectPipeWire) && canConnectPulse(connectPulse)) {
    // no PipeWire here, but a PulseAudio server answers: use it
    kind = 'pulseaudio';
  }
  const connect = kind === 'pulseaudio' ? connectPulse : connectPipeWire;
  if (mode === 'embedded' || (mode === 'auto' && !(kind === 'pulseaudio' ? canConnectPulse(connect) : canConnect(connect)))) {
    const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
    const what = kind === 'pulseaudio' ? 'PulseAudio' : 'PipeWire';
    const dir = values['runtime-dir'] ?? path.join(os.tmpdir(), `audioloop-${kind === 'pulseaudio' ? 'pa' : 'pw'}-${uid}`);
    log.info(`no sound server found; starting a private headless ${what} in ${dir}`);
    embedded = await startEmbeddedSoundServer(dir, kind);
    log.info(`clients reach it with: export PULSE_SERVER='${embedded.env.PULSE_SERVER}'${kind === 'pipewire' ? ` PIPEWIRE_RUNTIME_DIR='${dir}'` : ''}`);
  }
  log.info(`sound-server backend: ${kind}${choice === 'auto' ? ' (auto)' : ''}`, { backend: kind });
  const daemon = new Daemon({ config, socketDir, connect, log, reloadConfig: readConfig, cables: nativeCables });
  const stopAll = (): void => embedded?.stop();
  process.on('exit', stopAll);
  try {
    await daemon.start();
  } catch (e) {
    stopAll();
    throw e;
  }
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string): void => {
      log.info(`${sig}: stopping`);
      void daemon.stop().then(resolve);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    process.on('SIGHUP', () => {
      if (where.file === null) where = findConfig();
      log.info(`SIGHUP: reloading ${describeConfigLocation(where)}`, { config: where.file, source: where.source });
      daemon.reload().catch(() => undefined); // a bad file is logged and changes nothing
    });
  });
  stopAll();
  return EXIT.OK;
}

/** A PulseAudio-protocol server answers (a real PulseAudio when PipeWire's own socket is absent). */
function canConnectPulse(connect: () => Backend): boolean {
  try {
    connect().close();
    return true;
  } catch {
    return false;
  }
}

function canConnect(connect: () => Backend): boolean {
  if (!pipewireSocketExists()) return false;
  try {
    connect().close();
    return true;
  } catch {
    return false;
  }
}

function exitFor(e: unknown): number {
  const code = (e as { code?: string }).code;
  if (code === 'ENOENT' || code === 'ECONNREFUSED') return EXIT.NO_DAEMON;
  if (code === 'EBUSY' || code === 'EINVAL' || code === 'ENODEV') return EXIT.REFUSED;
  if (code === 'ETIMEDOUT') return EXIT.TIMEDOUT;
  return EXIT.ERROR;
}

/** Where a recording goes: a WAV file, raw PCM in a file, or stdout (streaming WAV or raw). */
interface PcmSink {
  write(buf: Buffer): Promise<void>;
  close(): Promise<void>;
  /** PCM bytes written */
  readonly dataBytes: number;
  /** set when the reader of stdout went away (EPIPE) */
  readonly broken: boolean;
}

/** stdout or a raw file as a PcmSink; `header` goes first (a streaming WAV header, or nothing) */
function streamSink(out: NodeJS.WritableStream & { destroyed?: boolean }, header: Buffer | null): PcmSink {
  let bytes = 0;
  let broken = false;
  let failure: Error | null = null;
  out.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') broken = true;
    else failure ??= e;
  });
  const put = (buf: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      if (broken) return resolve();
      if (failure) return reject(failure);
      out.write(buf, (e) => (e && !broken ? reject(e) : resolve()));
    });
  const first = header ? put(header) : Promise.resolve();
  return {
    async write(buf: Buffer): Promise<void> {
      await first;
      bytes += buf.length;
      await put(buf);
    },
    async close(): Promise<void> {
      await first;
      if (out !== process.stdout && !broken) await new Promise<void>((r) => out.end(() => r()));
    },
    get dataBytes() {
      return bytes;
    },
    get broken() {
      return broken;
    },
  };
}

async function cmdRecord(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    format: { type: 'string', short: 'f' },
    rate: { type: 'string', short: 'r' },
    channels: { type: 'string', short: 'c' },
    raw: { type: 'boolean' },
    'socket-dir': { type: 'string', short: 's' },
    quiet: { type: 'boolean', short: 'q' },
    latency: { type: 'string' },
    wait: { type: 'string' },
    clock: { type: 'boolean' },
  });
  if (values.help) return help('record');
  const instance = instanceArg(positionals[0]);
  const file = positionals[1];
  if (!file) throw new UsageError('missing FILE.wav');
  if (positionals.length > 2) throw new UsageError(`unexpected argument "${positionals[2]}"`);
  const format = values.format ?? 's16le';
  if (!isSampleFormat(format)) throw new UsageError(`--format must be one of ${SAMPLE_FORMATS.join(', ')}`);
  const rate = intArg(values.rate, '--rate', 8000, 192000) ?? 48000;
  const channels = intArg(values.channels, '--channels', 1, 8) ?? 2;
  const toStdout = file === '-';
  const where = toStdout ? 'stdout' : file;
  let say = (m: string): void => {
    if (!values.quiet) process.stderr.write(m + '\n');
  };
  const lat = { ...latencyOpt(values.latency), ...waitOpt(values.wait), ...(values.clock ? { clock: true } : {}) };
  let srv;
  try {
    srv = await openServer(instance, { mode: 'read', format: format as SampleFormat, rate, channels, app: 'audioloop record', ...lat, ...(values['socket-dir'] ? { socketDir: values['socket-dir'] } : {}) });
  } catch (e) {
    process.stderr.write(`audioloop record: ${(e as Error).message}\n`);
    return exitFor(e);
  }
  let sink: PcmSink;
  if (toStdout) sink = streamSink(process.stdout, values.raw ? null : wavHeader(srv.format, null));
  else if (values.raw) sink = streamSink(fs.createWriteStream(file), null);
  else {
    const wav = await WavFileWriter.open(file, srv.format);
    sink = {
      write: (b) => wav.write(b),
      close: () => wav.close(),
      get dataBytes() {
        return wav.dataBytes;
      },
      broken: false,
    };
  }
  const progress = progressFor('rec', srv.format, values.quiet);
  if (progress) say = (m) => progress.say(m);
  say(`recording ${srv.node} (${describeFormat(srv.format)}) to ${where}${values.raw ? ' (raw)' : ''}; ${values.clock ? 'silence until a client plays (--clock)' : 'waiting for a client to play'}...`);
  if (values.clock) progress?.start();
  let interrupted = false;
  const onSig = (): void => {
    interrupted = true;
    srv.readable.destroy();
  };
  process.once('SIGINT', onSig);
  process.once('SIGTERM', onSig);
  srv.once('start', (c: { app?: string; pid?: number }) => {
    say(`client ${c.app ?? '?'}${c.pid ? ` (pid ${c.pid})` : ''} started`);
    progress?.start();
  });
  let endCode: number = EXIT.OK;
  try {
    for await (const chunk of srv.readable) {
      await sink.write(chunk as Buffer);
      if (sink.broken) break; // the reader of stdout went away: stop, not an error
      progress?.update(chunk as Buffer);
    }
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code !== 'ECONNRESET') {
      progress?.finish();
      process.stderr.write(`audioloop record: ${(e as Error).message}\n`);
      endCode = code === 'ETIMEDOUT' ? EXIT.TIMEDOUT : EXIT.ERROR;
    }
  }
  progress?.finish();
  await sink.close().catch((e: Error) => {
    process.stderr.write(`audioloop record: ${where}: ${e.message}\n`);
    endCode = EXIT.ERROR;
  });
  await srv.close();
  const frames = Math.floor(sink.dataBytes / srv.frameBytes);
  const secs = frames / srv.format.rate;
  const why = interrupted ? 'interrupted' : sink.broken ? 'the reader of stdout went away (EPIPE)' : endCode === EXIT.TIMEDOUT ? 'no client started (ETIMEDOUT)' : 'client went away (ECONNRESET)';
  say(`${why}: ${frames} frames (${secs.toFixed(2)} s) in ${where}`);
  process.off('SIGINT', onSig);
  process.off('SIGTERM', onSig);
  return endCode;
}

async function cmdPlay(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    raw: { type: 'boolean' },
    format: { type: 'string', short: 'f' },
    rate: { type: 'string', short: 'r' },
    channels: { type: 'string', short: 'c' },
    'socket-dir': { type: 'string', short: 's' },
    quiet: { type: 'boolean', short: 'q' },
    latency: { type: 'string' },
    wait: { type: 'string' },
    clock: { type: 'boolean' },
  });
  if (values.help) return help('play');
  const instance = instanceArg(positionals[0]);
  const file = positionals[1];
  if (!file) throw new UsageError('missing FILE.wav');
  if (positionals.length > 2) throw new UsageError(`unexpected argument "${positionals[2]}"`);
  if (!values.raw && (values.format !== undefined || values.rate !== undefined || values.channels !== undefined))
    throw new UsageError('-f/-r/-c describe raw input: use them with --raw (a WAV file carries its format)');
  const rawFormat = values.format ?? 's16le';
  if (!isSampleFormat(rawFormat)) throw new UsageError(`--format must be one of ${SAMPLE_FORMATS.join(', ')}`);
  const rawRate = intArg(values.rate, '--rate', 8000, 192000) ?? 48000;
  const rawChannels = intArg(values.channels, '--channels', 1, 8) ?? 2;
  const fromStdin = file === '-';
  const where = fromStdin ? 'stdin' : file;
  const lat = { ...latencyOpt(values.latency), ...waitOpt(values.wait), ...(values.clock ? { clock: true } : {}) };
  let say = (m: string): void => {
    if (!values.quiet) process.stderr.write(m + '\n');
  };
  let format: PcmFormat;
  let stream: NodeJS.ReadableStream;
  if (values.raw) {
    format = { format: rawFormat, rate: rawRate, channels: rawChannels };
    stream = wholeFrames(fromStdin ? process.stdin : fs.createReadStream(file), format);
  } else if (fromStdin) {
    ({ format, stream } = await readWavFromStream(process.stdin, 'stdin'));
  } else {
    ({ format, stream } = await openWavStream(file));
  }
  let srv;
  try {
    srv = await openServer(instance, { mode: 'write', ...format, app: 'audioloop play', ...lat, ...(values['socket-dir'] ? { socketDir: values['socket-dir'] } : {}) });
  } catch (e) {
    process.stderr.write(`audioloop play: ${(e as Error).message}\n`);
    return exitFor(e);
  }
  const progress = progressFor('play', srv.format, values.quiet, true);
  if (progress) say = (m) => progress.say(m);
  say(`playing ${where} (${describeFormat(format)}) on ${srv.node}; ${values.clock ? 'to nobody at the loop\'s rate until a client records (--clock)' : 'waiting for a client to record'}...`);
  if (values.clock) progress?.start();
  srv.once('start', (c: { app?: string; pid?: number }) => {
    if (values.clock) say(`client ${c.app ?? '?'}${c.pid ? ` (pid ${c.pid})` : ''} started`);
    progress?.start();
  });
  let written = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      await srv.write(chunk);
      written += chunk.length;
      progress?.update(chunk);
    }
    await srv.close();
    progress?.finish();
    if (srv.error) throw srv.error;
  } catch (e) {
    progress?.finish();
    await srv.close();
    const code = (e as { code?: string }).code;
    process.stderr.write(`audioloop play: ${(e as Error).message} after ${written / srv.frameBytes} frames\n`);
    return code === 'ECONNRESET' ? EXIT.RESET : code === 'ETIMEDOUT' ? EXIT.TIMEDOUT : EXIT.ERROR;
  }
  say(`played ${written / srv.frameBytes} frames`);
  return EXIT.OK;
}

export { fetchStatus } from '../control';

/** status's latency line for an open loop: what the graph granted (its quantum) and what the server asked for */
export function describeLatency(node: string, rate: number, l: LatencyStatus): string {
  const got = l.grantedFrames > 0 ? `granted ${l.grantedMs} ms (quantum ${l.grantedFrames} at ${rate} Hz)` : 'granted - (the node is not running)';
  const asked =
    l.requestedMs !== null
      ? `asked ${l.requestedMs} ms (node.latency ${l.requestedFrames}/${rate})`
      : l.nodeFrames !== null
        ? `asked nothing; the node asks node.latency ${l.nodeFrames}/${rate} (default_latency_ms)`
        : 'asked nothing (latency=: the clients decide)';
  return `${node} latency: ${got}; ${asked}`;
}

async function cmdStatus(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' }, 'socket-dir': { type: 'string', short: 's' } });
  if (values.help) return help('status');
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const dir = values['socket-dir'] ?? defaultSocketDir();
  let st: DaemonStatus;
  try {
    st = await fetchStatus(dir);
  } catch (e) {
    process.stderr.write(`audioloop status: no daemon answers at ${controlSocketPath(dir)} (${(e as Error).message})\n`);
    return EXIT.NO_DAEMON;
  }
  if (values.json) {
    process.stdout.write(JSON.stringify(st, null, 2) + '\n');
    return EXIT.OK;
  }
  const rows = [[...LOOP_HEAD, 'BYTES', 'XRUNS'], ...st.loops.map((l) => [...loopCells(l), String(l.bytes), String(l.xruns)])];
  process.stdout.write(`sound server: ${st.soundServer.backend} (${st.soundServer.connected ? 'connected' : 'not connected'}), daemon pid ${st.pid}\n`);
  for (const line of alignColumns(rows)) process.stdout.write(line + '\n');
  for (const l of st.loops) if (l.latency && l.format) process.stdout.write(describeLatency(l.node, l.format.rate, l.latency) + '\n');
  for (const l of st.loops) if (l.clock && l.format && l.mode) process.stdout.write(describeClock(l.node, l.mode, l.format.rate, l.clock) + '\n');
  for (const l of st.loops) if (l.session) process.stdout.write(describeSession(l.node, l.session, l.clients) + '\n');
  for (const l of st.loops) if (l.bridge) process.stdout.write(describeMetrics(l.node, l.bridge) + '\n');
  return EXIT.OK;
}


/** `audioloop0 clock (clock=1): running since 23:59:01.250, 144000 frames (3.000 s) of silence to the server in 300 SILENCE lines` */
export function describeClock(node: string, mode: 'read' | 'write', rate: number, c: NonNullable<DaemonStatus['loops'][number]['clock']>): string {
  const state = c.running ? `running since ${c.since.slice(11, 23)}` : 'stopped at START';
  const what =
    mode === 'read'
      ? `${c.frames} frames (${(c.frames / rate).toFixed(3)} s) of silence to the server in ${c.lines} SILENCE lines${c.droppedFrames ? `, ${c.droppedFrames} frames dropped (the server did not read)` : ''}`
      : `${c.frames} frames (${(c.frames / rate).toFixed(3)} s) due, ${c.consumedBytes} bytes of the server's data consumed`;
  return `${node} clock (clock=1): ${state}, ${what}`;
}

/** `audioloop0 session since 23:59:01.250 (3 client streams so far): paplay (pid 12) linked, data flowing` */
export function describeSession(node: string, ses: NonNullable<DaemonStatus['loops'][number]['session']>, clients: DaemonStatus['loops'][number]['clients']): string {
  const since = ses.since.slice(11, 23);
  const linked = clients.length ? `${clients.map((c) => who(c.appName ?? c.name, c.pid)).join(', ')} linked` : 'no client linked';
  const grace = ses.graceUntil ? `, grace period: the session ends in ${Math.max(0, Date.parse(ses.graceUntil) - Date.now())} ms unless a client links` : '';
  const flow = clients.length ? (ses.flowing ? ', data flowing' : ', every client paused') : '';
  return `${node} session since ${since} (${ses.streams} client stream${ses.streams === 1 ? '' : 's'} so far): ${linked}${flow}${grace}`;
}

function help(topic: string): number {
  process.stdout.write((topic === 'daemon' ? daemonHelp() : HELP[topic]) + '\n');
  return EXIT.OK;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        return help(rest[0] && (HELP[rest[0]] || rest[0] === 'daemon') ? rest[0] : 'main');
      case '--version':
        process.stdout.write('audioloop 0.1.0\n');
        return EXIT.OK;
      case 'daemon':
        return await cmdDaemon(rest);
      case 'record':
        return await cmdRecord(rest);
      case 'play':
        return await cmdPlay(rest);
      case 'status':
        return await cmdStatus(rest);
      case 'top':
        return await cmdTop(rest);
      case 'bridge':
        // loaded on demand: the codec and the resampler are not for the other commands
        return await (await import('../bridge/cli')).cmdBridge(rest);
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code === 'EUSAGE') {
      process.stderr.write(`audioloop: ${(e as Error).message}\n${cmd && (HELP[cmd] || cmd === 'daemon') ? `Run "audioloop ${cmd} --help".` : 'Run "audioloop --help".'}\n`);
      return EXIT.USAGE;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`audioloop: ${e.message}\n`);
      return EXIT.USAGE;
    }
    process.stderr.write(`audioloop: ${(e as Error).message}\n`);
    return EXIT.ERROR;
  }
}

if (require.main === module) {
  // `audioloop status | head -1`: a closed pipe is not an error
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`audioloop: ${(e as Error).stack ?? e}\n`);
      process.exitCode = EXIT.ERROR;
    },
  );
}
