/**
 * One measured path = a writer, a device (ours or a peer), a reader, each
 * driven with the counter-timestamp method of counter.ts.
 *
 *   ours c->s   player (pacat | pw-play) -> audioloopN (sink)  -> our server reading
 *   ours s->c   our server writing -> audioloopN (source) -> recorder (parec | pw-record)
 *   null-sink   player -> PulseAudio null sink -> its monitor -> recorder
 *   pw-loopback player -> pw-loopback virtual sink -> its virtual source -> recorder
 *
 * The peers need both client tools where ours needs one (our server plays the
 * other role), so "peer" is the same job done with the standard tools.
 */
import type { Writable } from 'node:stream';
import { openServer, type LoopServer, type OpenServerOptions } from '../src/client';
import { isErrorWithCode } from '../src/errors';
import { CHANNELS, CounterReader, CounterWriter, now, RATE, summarize, type CounterStats, type LatencySummary } from './counter';
import { runSync, sleep, spawnChild, stopChild, waitFor, type Child } from './proc';

export type Family = 'pulse' | 'pw';

/**
 * openServer, retrying EBUSY for a while: LoopServer.close() resolves when
 * our socket is closed, a moment before the daemon has put the loop back to
 * idle, so an immediate re-open of the same loop can be refused.
 */
export async function openLoop(instance: number, opts: OpenServerOptions, timeoutMs = 5000): Promise<LoopServer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await openServer(instance, opts);
    } catch (e) {
      if (!isErrorWithCode(e, 'EBUSY') || Date.now() > deadline) throw e;
      await sleep(50);
    }
  }
}

/** What every client stream asks for (the graph quantum follows from it). */
export const CLIENT_LATENCY_MS = 20;

export function playerArgs(family: Family, target: string, latencyMs = CLIENT_LATENCY_MS): [string, string[]] {
  if (family === 'pulse')
    return ['pacat', ['--playback', '--raw', '--format=s16le', `--rate=${RATE}`, `--channels=${CHANNELS}`, `--latency-msec=${latencyMs}`, '--client-name=bench', '-d', target]];
  return ['pw-play', ['--target', target, '--format', 's16', '--rate', String(RATE), '--channels', String(CHANNELS), '--latency', `${latencyMs}ms`, '-']];
}

/** `monitorOf`: record the monitor of a sink rather than a source. */
export function recorderArgs(family: Family, source: string, monitorOf = false, latencyMs = CLIENT_LATENCY_MS): [string, string[]] {
  if (family === 'pulse')
    return ['parec', ['--raw', '--format=s16le', `--rate=${RATE}`, `--channels=${CHANNELS}`, `--latency-msec=${latencyMs}`, '--client-name=bench', '-d', monitorOf ? `${source}.monitor` : source]];
  const args = ['--target', source, '--format', 's16', '--rate', String(RATE), '--channels', String(CHANNELS), '--latency', `${latencyMs}ms`];
  if (monitorOf) args.push('-P', '{ stream.capture.sink=true }');
  return ['pw-record', [...args, '-']];
}

function pactlCount(kind: 'sink-inputs' | 'source-outputs'): number {
  return runSync('pactl', ['list', 'short', kind]).split('\n').filter((l) => l.trim()).length;
}

export interface RunOptions {
  durationS: number;
  /** prefill, see CounterWriter (0 for latency runs) */
  leadMs?: number;
  /** what the client tools ask for (default CLIENT_LATENCY_MS) */
  clientLatencyMs?: number;
  /** ours: OPEN latency=MS (the node asks the graph for it) */
  latencyMs?: number;
  /** ours: called at the end of the run, while the client still plays (e.g. to read the granted quantum from status) */
  beforeCleanup?: () => Promise<void>;
}

export interface PathResult extends LatencySummary {
  stats: CounterStats;
  written: number;
  missingAtEnd: number;
  durationS: number;
  /** raw bytes the reading side got (silence included) */
  bytesReceived: number;
  /** times the path was set up again because no counter frame came through */
  restarts: number;
}

/**
 * Ends a player's input after 300 ms of silence: players drop a partial
 * buffer at end of input, which must not be a counter frame.
 */
function endWithSilence(player: Child): void {
  player.proc.stdin!.end(Buffer.alloc(Math.round(0.3 * RATE) * CHANNELS * 2));
}

interface Ends {
  /** hands PCM to the writing side */
  write: (buf: Buffer) => void;
  /** ends the writing side (the stream drains) */
  endWrite: () => void;
  cleanup: () => Promise<void>;
  /** what to print when nothing arrives */
  diag?: () => string;
}

type Setup = (reader: (chunk: Buffer) => void) => Promise<Ends>;

/** How long a path may carry data without one counter frame before it is restarted. */
const NO_COUNTER_MS = 2500;
const MAX_RESTARTS = 2;

/**
 * Runs the counter through a path for `durationS` and waits (up to
 * `drainMs`) for the last frame to come out. A path whose reader gets data
 * but not one counter frame within NO_COUNTER_MS is torn down and set up
 * again (at most MAX_RESTARTS times; counted in `restarts`): seen now and
 * then on a loaded machine, where a freshly started player stream delivers
 * only silence for its whole life (its data never reaches the graph).
 */
async function measure(setup: Setup, durationS: number, leadMs: number, drainMs = 5000): Promise<PathResult> {
  for (let attempt = 0; ; attempt++) {
    const r = await measureOnce(setup, durationS, leadMs, drainMs, attempt < MAX_RESTARTS);
    if (r) return { ...r, restarts: attempt };
  }
}

async function measureOnce(setup: Setup, durationS: number, leadMs: number, drainMs: number, mayRestart: boolean): Promise<PathResult | null> {
  let writer: CounterWriter | null = null;
  let reader: CounterReader | null = null;
  const early: Buffer[] = [];
  let bytes = 0;
  const ends = await setup((chunk) => {
    const t = now();
    bytes += chunk.length;
    if (reader) reader.feed(chunk, t);
    else early.push(chunk);
  });
  try {
    writer = new CounterWriter(ends.write, Math.round((leadMs * RATE) / 1000));
    reader = new CounterReader(writer);
    for (const c of early.splice(0)) reader.feed(c);
    writer.start();
    const first = Math.min(durationS * 1000, NO_COUNTER_MS);
    await sleep(first);
    if (reader.stats.frames === 0) {
      let streams = '';
      try {
        streams = runSync('pactl', ['list', 'short', 'sink-inputs']) + runSync('pactl', ['list', 'short', 'source-outputs']);
      } catch {
        /* nothing more to say */
      }
      process.stderr.write(
        `bench: warning: no counter frame after ${first} ms (${bytes} bytes received, ${writer.written} frames written)` +
          `${mayRestart ? '; restarting the path' : ''}\nstreams:\n${streams}${ends.diag?.() ?? ''}\n`,
      );
      if (mayRestart) return null;
    }
    await sleep(durationS * 1000 - first);
    const last = writer.stop();
    ends.endWrite();
    const r = reader;
    await waitFor(() => r.stats.last >= last, drainMs, 'the last frame to arrive').catch(() => undefined);
    const sum = summarize(reader.latencies);
    return { ...sum, stats: { ...reader.stats }, written: last, missingAtEnd: reader.missingAtEnd(), durationS, bytesReceived: bytes, restarts: 0 };
  } finally {
    writer?.stop();
    await ends.cleanup();
  }
}

/** Starts a player into `sink` and waits until it is connected; `ends` feed it, `finish` lets it play out (3 s at most) and stops it. */
async function startPlayer(family: Family, sink: string, latencyMs?: number) {
  const before = pactlCount('sink-inputs');
  const [cmd, args] = playerArgs(family, sink, latencyMs);
  const player = spawnChild(cmd, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  player.proc.stdin!.on('error', () => undefined);
  await waitFor(() => pactlCount('sink-inputs') > before, 10000, `${cmd} to connect`);
  return {
    diag: (): string => `player ${cmd} pid ${player.pid} exit ${player.proc.exitCode} stdin buffered ${player.proc.stdin?.writableLength} stderr: ${player.stderr()}`,
    ends: {
      write: (b: Buffer): void => void player.proc.stdin!.write(b),
      endWrite: () => endWithSilence(player),
    },
    finish: async (): Promise<void> => {
      await Promise.race([player.exited, sleep(3000)]);
      await stopChild(player);
    },
  };
}

/** ours c->s: a player into audioloopN, our server reading. */
export function oursClientToServer(instance: number, family: Family, o: RunOptions, socketDir: string): Promise<PathResult> {
  return measure(async (onData) => {
    const srv = await openLoop(instance, { mode: 'read', format: 's16le', rate: RATE, channels: CHANNELS, socketDir, app: 'bench', ...(o.latencyMs !== undefined ? { latencyMs: o.latencyMs } : {}) });
    srv.readable.on('data', onData);
    srv.readable.on('error', () => undefined);
    const player = await startPlayer(family, srv.node, o.clientLatencyMs);
    return {
      ...player.ends,
      cleanup: async () => {
        await o.beforeCleanup?.();
        await player.finish();
        await srv.close();
      },
      diag: player.diag,
    };
  }, o.durationS, o.leadMs ?? 0);
}

/** ours s->c: our server writing into audioloopN, a recorder reading it. */
export function oursServerToClient(instance: number, family: Family, o: RunOptions, socketDir: string): Promise<PathResult> {
  return measure(async (onData) => {
    const srv = await openLoop(instance, { mode: 'write', format: 's16le', rate: RATE, channels: CHANNELS, socketDir, app: 'bench' });
    const ws: Writable = srv.writable;
    ws.on('error', () => undefined);
    const [cmd, args] = recorderArgs(family, srv.node, false, o.clientLatencyMs);
    const rec = spawnChild(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    rec.proc.stdout!.on('data', onData);
    await Promise.race([
      srv.waitForClient(),
      sleep(10000).then(() => Promise.reject(new Error(`bench: ${cmd} did not start recording from ${srv.node}: ${rec.stderr()}`))),
    ]);
    return {
      write: (b) => void ws.write(b),
      endWrite: () => undefined, // keep the server open until the recorder has everything
      cleanup: async () => {
        await stopChild(rec);
        await srv.close();
      },
    };
  }, o.durationS, o.leadMs ?? 0);
}

/** A peer device: player -> `sink`, recorder <- `source` (or the monitor of `sink`). */
export function peerPath(family: Family, sink: string, source: string | null, o: RunOptions): Promise<PathResult> {
  return measure(async (onData) => {
    const recBefore = pactlCount('source-outputs');
    const [rcmd, rargs] = recorderArgs(family, source ?? sink, !source, o.clientLatencyMs);
    const rec = spawnChild(rcmd, rargs, { stdio: ['ignore', 'pipe', 'pipe'] });
    rec.proc.stdout!.on('data', onData);
    await waitFor(() => pactlCount('source-outputs') > recBefore, 10000, `${rcmd} to connect`);
    const player = await startPlayer(family, sink, o.clientLatencyMs);
    return {
      ...player.ends,
      cleanup: async () => {
        await player.finish();
        await stopChild(rec);
      },
    };
  }, o.durationS, o.leadMs ?? 0);
}

/** Starts a pw-loopback pair: a virtual sink `name` and a virtual source `name_src`. */
export async function startLoopback(name: string, playbackTarget?: string, latencyMs?: number): Promise<Child> {
  const capture = `media.class=Audio/Sink node.name=${name} node.description=${name}`;
  const playback = playbackTarget ? `node.name=${name}_out` : `media.class=Audio/Source node.name=${name}_src node.description=${name}_src`;
  const args = ['--capture-props', capture, '--playback-props', playback];
  if (playbackTarget) args.push('-P', playbackTarget);
  if (latencyMs !== undefined) args.push('--latency', String(latencyMs));
  const c = spawnChild('pw-loopback', args);
  await waitFor(() => runSync('pactl', ['list', 'short', 'sinks']).split('\n').some((l) => l.split('\t')[1] === name), 10000, `pw-loopback sink ${name}`);
  return c;
}

/** Loads a PulseAudio null sink (pipewire-pulse) and returns its module index. */
export function loadNullSink(name: string): number {
  const out = runSync('pactl', ['load-module', 'module-null-sink', `sink_name=${name}`, `rate=${RATE}`, `channels=${CHANNELS}`, 'format=s16le']);
  return Number(out.trim());
}

export function unloadModule(index: number): void {
  try {
    runSync('pactl', ['unload-module', String(index)]);
  } catch {
    /* already gone */
  }
}
