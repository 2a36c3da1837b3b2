/**
 * The one load point of the native addon (serialport style): everything
 * else talks to the typed contract below, and only src/backend/pipewire.ts
 * uses it.
 */
import * as path from 'node:path';
import * as fs from 'node:fs';
import { AudioloopError } from './errors';

declare const coreBrand: unique symbol;
declare const streamBrand: unique symbol;
declare const cableBrand: unique symbol;
/** Opaque handle to a PipeWire connection (pw_thread_loop + core). */
export type CoreHandle = { readonly [coreBrand]: true };
/** Opaque handle to one pw_stream. */
export type StreamHandle = { readonly [streamBrand]: true };
/**
 * Opaque handle to a cable (native/cable.h): a ring, counters, meters and,
 * once plugged, the server's socket fd, which native code then serves.
 */
export type CableHandle = { readonly [cableBrand]: true };

/** first: PCM first crossed the fd; eof: the server's EOF; drained: playback ring empty after EOF;
 *  finished: cableFinish done (fd write side shut); error: the fd failed, err = -errno */
export type CableEventKind = 'first' | 'eof' | 'drained' | 'finished' | 'error';
export type CableCallback = (kind: CableEventKind, err: number) => void;

export interface NativeCableOptions {
  direction: 'sink' | 'source';
  format: string;
  rate: number;
  channels: number;
  ringBytes?: number;
  wakeBytes?: number;
}

export interface NativeCableStats {
  fill: number;
  size: number;
  frames: number;
  xruns: number;
  xrunBytes: number;
  cycles: number;
  quantum: number;
  links: number;
  /** client links in state active whose client node runs (data flows) */
  activeLinks: number;
  /** PCM bytes moved over the fd */
  fdBytes: number;
  /** bytes held outside the ring: protocol lines not sent yet, bytes after OPEN not in the ring yet */
  queued: number;
  /** bytes cableConsume discarded (clock=1) */
  consumed: number;
  fdOpen: boolean;
  eof: boolean;
  finished: boolean;
  failed: boolean;
  /** peak level per channel, dBFS (held 300 ms, then falling 20 dB/s) */
  levels: number[];
}

export type CoreEventKind = 'graph' | 'error';
/** graph: a = 1 added / 0 removed, b = object id, text = 'node' | 'link' | 'client'; error: a = id, b = res, text = message */
export type CoreCallback = (kind: CoreEventKind, a: number, b: number, text: string | null) => void;
/** state: a = state name, b = node id; format: a = rate, b = channels; links: a = client links, b = active ones; data: wake-up */
export type StreamCallback = (kind: 'state' | 'format' | 'data' | 'links', a?: string | number, b?: number, text?: string | null) => void;

export interface NativeStreamOptions {
  direction: 'sink' | 'source';
  name: string;
  description?: string;
  format: string;
  rate: number;
  channels: number;
  ringBytes?: number;
  wakeBytes?: number;
  latencyFrames?: number;
  props?: Record<string, string>;
}

export interface NativeStreamStats extends NativeCableStats {
  state: string;
  nodeId: number;
}

export interface NativePeer {
  linkId: number;
  nodeId: number;
  name?: string | null;
  mediaClass?: string | null;
  appName?: string | null;
  mediaName?: string | null;
  pid?: number;
  clientId?: number;
  /** the link is active (data flows) */
  active?: boolean;
  /** the peer's node.latency in seconds, when it has one */
  latency?: number;
}

export interface NativeNode {
  id: number;
  name: string | null;
  mediaClass: string | null;
  appName: string | null;
  pid: number;
  /** the PipeWire client that owns the node (-1 when unknown) */
  clientId: number;
}

/**
 * A PipeWire Client global (one connection to the server). `pid` is the
 * application.process.id from the client's info (-1 until known): for
 * PulseAudio-protocol clients it is the only place the real pid is, since
 * their nodes carry none and `secPid` (the socket peer) is pipewire-pulse.
 */
export interface NativeClient {
  id: number;
  appName: string | null;
  pid: number;
  secPid: number;
}

/** Every function returns a negative errno instead of throwing on failure. */
export interface NativeBinding {
  /** backend: 'pipewire' (default) or 'pulseaudio' (native/pa-backend.c) */
  coreOpen(cb: CoreCallback, appName?: string, backend?: 'pipewire' | 'pulseaudio'): CoreHandle | number;
  coreClose(core: CoreHandle): void;
  coreConnected(core: CoreHandle): boolean;
  corePeers(core: CoreHandle, nodeId: number): NativePeer[];
  coreNodes(core: CoreHandle): NativeNode[];
  coreClients(core: CoreHandle): NativeClient[];
  coreDestroyGlobal(core: CoreHandle, id: number): number;
  /** without `cable` the stream gets a private one, read/written by streamRead/streamWrite */
  streamCreate(core: CoreHandle, opts: NativeStreamOptions, cb: StreamCallback, cable?: CableHandle): StreamHandle | number;
  streamRead(stream: StreamHandle, buf: Buffer): number;
  streamWrite(stream: StreamHandle, buf: Buffer): number;
  streamStats(stream: StreamHandle): NativeStreamStats;
  streamWakeAfter(stream: StreamHandle, frames: number): number;
  /** sink: keep the silence the node hears while no client's data flows (clock=1 after START) */
  streamKeepSilence(stream: StreamHandle, on: boolean): number;
  /** removes the node; the cable (and what its ring holds) stays */
  streamDestroy(stream: StreamHandle): void;
  cableCreate(opts: NativeCableOptions, cb: CableCallback): CableHandle | number;
  /** hands the cable a dup of `fd`; `rest` = bytes read past the OPEN line; `hold` bounds read-ahead before cableStart */
  cablePlug(cable: CableHandle, fd: number, rest: Buffer | null, hold: number): number;
  /** queues a protocol line on the fd, before any PCM that follows */
  cableLine(cable: CableHandle, line: string): number;
  /** queues `line` (START), then PCM flows */
  cableStart(cable: CableHandle, line: string | null): number;
  /** `drain` (sink): deliver the ring first; then `line`, then shutdown(SHUT_WR) and 'finished' */
  cableFinish(cable: CableHandle, line: string | null, drain: boolean): number;
  cableStats(cable: CableHandle): NativeCableStats;
  /** the server's end now (poll, no wait): 0 open, 1 it sent EOF, 2 it closed or failed; negative errno */
  cablePeer(cable: CableHandle): number;
  /** playback before cableStart (clock=1): discards up to `bytes` (whole frames) of what the server sent; the bytes discarded now, or negative errno */
  cableConsume(cable: CableHandle, bytes: number): number;
  /** idempotent: closes the fd; no more events */
  cableClose(cable: CableHandle): void;
  versions(): { compiled: string; linked: string };
  strerror(errno: number): string;
  /** why coreOpen(..., 'pulseaudio') returned -ENOENT: the PulseAudio module (build/Release/audioloop_pulse.node) or libpulse could not be loaded; null if it did not fail */
  backendLoadError(): string | null;
}

let binding: NativeBinding | undefined;

/** Loads build/Release/audioloop_native.node once; throws a clear error if it was not built. */
export function loadNative(): NativeBinding {
  if (binding) return binding;
  const root = path.resolve(__dirname, '..', '..');
  // AUDIOLOOP_NATIVE_ADDON: another build of the addon (scripts/asan.sh)
  const override = process.env['AUDIOLOOP_NATIVE_ADDON'];
  const candidates = [
    ...(override ? [override] : []),
    path.join(root, 'build', 'Release', 'audioloop_native.node'),
    path.join(root, 'build', 'Debug', 'audioloop_native.node'),
  ];
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) {
    throw new AudioloopError(
      'ENOADDON',
      `audioloop: the native addon is not built (looked for ${candidates[0]}); run "npm run build:native" ` +
        '(needs libpipewire-0.3-dev, see scripts/setup.sh)',
    );
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  binding = require(file) as NativeBinding;
  return binding;
}
