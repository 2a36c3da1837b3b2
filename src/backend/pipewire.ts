/**
 * PipeWire backend: Endpoint = one pw_stream created by the native addon.
 */
import { EventEmitter } from 'node:events';
import { loadNative, type CoreHandle, type NativeBinding, type NativeClient, type StreamHandle } from '../native';
import { errnoError, makeError } from '../errors';
import { NativeCable } from './native-cable';
import type { Backend, Cable, CableOptions, ClientInfo, Endpoint, EndpointOptions, EndpointStats } from './types';

export interface PipeWireBackendOptions {
  /** application.name of our connection */
  appName?: string;
  /** @internal the native backend behind the same ops (src/backend/pulseaudio.ts uses 'pulseaudio') */
  nativeBackend?: 'pipewire' | 'pulseaudio';
}

export class PipeWireBackend extends EventEmitter implements Backend {
  readonly name: 'pipewire' | 'pulseaudio';
  private readonly native: NativeBinding;
  private core: CoreHandle | null;
  private readonly endpoints = new Set<PipeWireEndpoint>();
  private lost = false;

  /** Connects to the PipeWire server of this environment; throws ECONNREFUSED-like errors when none runs. */
  constructor(opts: PipeWireBackendOptions = {}) {
    super();
    this.name = opts.nativeBackend ?? 'pipewire';
    this.native = loadNative();
    const res = this.native.coreOpen((kind, a, b, text) => this.onCoreEvent(kind, a, b, text), opts.appName ?? 'audioloop', this.name);
    if (typeof res === 'number') {
      const why = this.name === 'pulseaudio' ? this.native.backendLoadError() : null;
      if (why !== null) throw errnoError(res, 'dlopen', `cannot load the PulseAudio backend: ${why}`);
      const [call, what] = this.name === 'pulseaudio' ? ['pa_context_connect', 'PulseAudio'] : ['pw_context_connect', 'PipeWire'];
      throw errnoError(res, call, `cannot connect to ${what} (${this.native.strerror(res)}); is a sound server running? (scripts/soundserver.sh)`);
    }
    this.core = res;
  }

  get connected(): boolean {
    return this.core !== null && !this.lost && this.native.coreConnected(this.core);
  }

  /** works after close() too: a cable needs no sound-server connection */
  createCable(opts: CableOptions): Cable {
    return new NativeCable(this.native, opts);
  }

  createEndpoint(opts: EndpointOptions, cable?: Cable): Endpoint {
    if (!this.core) throw makeError('EBADF', 'createEndpoint', 'the PipeWire backend is closed');
    if (this.lost) throw makeError('EPIPE', 'createEndpoint', 'the PipeWire server went away');
    if (cable !== undefined && !(cable instanceof NativeCable)) throw makeError('EINVAL', 'createEndpoint', 'a cable of another backend');
    // PipeWire's sink runs from creation (node.always-process,
    // native/pw-backend.c): without a request of its own it would run the
    // graph at the default quantum before any client, and a client joining
    // at a smaller one keeps the fill it had at the switch (measured: two
    // quanta more, for the stream's life). PulseAudio's sink does not run
    // before its clients: the default is PipeWire's only.
    const o =
      this.name === 'pipewire' && opts.direction === 'sink' && opts.latencyFrames === undefined && opts.defaultLatencyFrames
        ? { ...opts, latencyFrames: opts.defaultLatencyFrames }
        : opts;
    const ep = new PipeWireEndpoint(this.native, this.core, o, () => this.endpoints.delete(ep), cable);
    this.endpoints.add(ep);
    return ep;
  }

  /** All clients (connections) currently on the server, with their app name and pid. */
  serverClients(): { id: number; appName: string | null; pid: number | null }[] {
    return this.core ? this.native.coreClients(this.core).map((c) => ({ id: c.id, appName: c.appName, pid: c.pid > 0 ? c.pid : null })) : [];
  }

  /** All nodes currently on the server (a mirror of the registry). */
  nodes(): { id: number; name: string | null; mediaClass: string | null }[] {
    return this.core ? this.native.coreNodes(this.core) : [];
  }

  close(): void {
    if (!this.core) return;
    for (const ep of [...this.endpoints]) ep.destroy();
    this.native.coreClose(this.core);
    this.core = null;
  }

  private onCoreEvent(kind: string, a: number, b: number, text: string | null): void {
    if (kind === 'graph') {
      for (const ep of this.endpoints) ep.onGraph();
      return;
    }
    // core error: a = object id, b = negative errno
    if (a === 0 && b === -32 /* -EPIPE */) {
      if (this.lost) return;
      this.lost = true;
      const err = errnoError(b, 'pipewire', `the PipeWire server went away${text ? ` (${text})` : ''}`);
      for (const ep of [...this.endpoints]) ep.fail(err);
      this.emit('disconnected', err);
    } else if (a === 0) {
      this.emit('warning', errnoError(b, 'pipewire', text ?? 'core error'));
    }
  }
}

/** disconnectClients: how long to wait for the ended client streams to leave the registry */
const DISCONNECT_WAIT_MS = 2000;

/**
 * The backend for every endpoint: resolves peers through the shared core.
 * A peer node's app name and pid come from the node itself when it has
 * them, otherwise from its owner, the Client global named by client.id
 * (PulseAudio-protocol clients: paplay's node has no pid, its client has).
 */
function backendPeers(native: NativeBinding, core: CoreHandle, nodeId: number): ClientInfo[] {
  if (nodeId < 0) return [];
  const seen = new Map<number, ClientInfo>();
  let owners: Map<number, NativeClient> | null = null;
  for (const p of native.corePeers(core, nodeId)) {
    if (seen.has(p.nodeId)) continue;
    let pid = p.pid !== undefined && p.pid > 0 ? p.pid : null;
    let appName = p.appName ?? null;
    if ((pid === null || appName === null) && p.clientId !== undefined && p.clientId >= 0) {
      owners ??= new Map(native.coreClients(core).map((c) => [c.id, c]));
      const owner = owners.get(p.clientId);
      if (owner) {
        if (pid === null && owner.pid > 0) pid = owner.pid;
        appName ??= owner.appName;
      }
    }
    seen.set(p.nodeId, { nodeId: p.nodeId, name: p.name ?? null, appName, mediaName: p.mediaName ?? null, pid, latency: p.latency ?? null });
  }
  return [...seen.values()];
}

export class PipeWireEndpoint extends EventEmitter implements Endpoint {
  readonly options: Readonly<EndpointOptions>;
  /** kept after destroy: the native stream handle owns the cable's memory until GC */
  private readonly handle: StreamHandle;
  private _destroyed = false;
  /** after fail(): the node is gone but the ring still holds what a sink captured; read() hands it out */
  private failed = false;
  private _clientActive = false;
  private nodeId = -1;
  private peerKey = '';

  constructor(
    private readonly native: NativeBinding,
    private readonly core: CoreHandle,
    opts: EndpointOptions,
    private readonly onDestroy: () => void,
    cable?: NativeCable,
  ) {
    super();
    this.options = Object.freeze({ ...opts });
    const res = native.streamCreate(
      core,
      {
        direction: opts.direction,
        name: opts.name,
        description: opts.description,
        format: opts.format,
        rate: opts.rate,
        channels: opts.channels,
        ringBytes: opts.ringBytes,
        ...(opts.props ? { props: opts.props } : {}),
        ...(opts.wakeBytes !== undefined ? { wakeBytes: opts.wakeBytes } : {}),
        ...(opts.latencyFrames !== undefined ? { latencyFrames: opts.latencyFrames } : {}),
      },
      (kind, a, b, text) => this.onStreamEvent(kind, a, b, text),
      cable?.handle,
    );
    if (typeof res === 'number') throw errnoError(res, 'pw_stream_connect', `cannot create node ${opts.name}: ${native.strerror(res)}`);
    this.handle = res;
  }

  get clientActive(): boolean {
    return this._clientActive;
  }

  get destroyed(): boolean {
    return this._destroyed;
  }

  read(buf: Buffer): number {
    if (this._destroyed && !this.failed) throw makeError('EBADF', 'read');
    const n = this.native.streamRead(this.handle, buf);
    if (n < 0) throw errnoError(n, 'read');
    return n;
  }

  write(buf: Buffer): number {
    if (this._destroyed) throw makeError('EBADF', 'write');
    const n = this.native.streamWrite(this.handle, buf);
    if (n < 0) throw errnoError(n, 'write');
    return n;
  }

  stats(): EndpointStats {
    const st = this.native.streamStats(this.handle);
    if (!this._destroyed) return st;
    // as before the split: a destroyed endpoint reports only what a failed sink still holds
    return { state: 'destroyed', nodeId: -1, fill: this.failed ? st.fill : 0, size: 0, frames: 0, xruns: 0, xrunBytes: 0, cycles: 0, quantum: 0, links: 0, activeLinks: 0 };
  }

  wakeAfter(frames: number): void {
    if (!this._destroyed) this.native.streamWakeAfter(this.handle, Math.max(0, Math.ceil(frames)));
  }

  keepSilence(on: boolean): void {
    if (!this._destroyed) this.native.streamKeepSilence(this.handle, on);
  }

  clients(): ClientInfo[] {
    return backendPeers(this.native, this.core, this.nodeId);
  }

  /**
   * Ends every client stream linked to our node, so that the session
   * manager cannot move it to another device when ours disappears.
   * Resolves once they are gone (or after 2 s).
   *
   * A client whose only nodes are streams on ours is disconnected as a
   * whole: with PipeWire 0.3.65 a native pw_stream whose node is destroyed
   * by someone else is not told (pw-play/pw-record keep running, their
   * stream dead), while a destroyed connection ends it (EPIPE; pw-cat exits
   * 1, a PulseAudio client sees "Connection terminated"). A client that
   * also owns other nodes keeps its connection and only loses the streams
   * on our node (pipewire-pulse ends such a stream for its client).
   */
  async disconnectClients(): Promise<void> {
    if (this.nodeId < 0) return;
    const peers = this.native.corePeers(this.core, this.nodeId);
    if (peers.length === 0) return;
    const peerIds = new Set(peers.map((p) => p.nodeId));
    const nodes = this.native.coreNodes(this.core);
    const clientOf = new Map(nodes.map((n) => [n.id, n.clientId]));
    const doomed = new Set<number>();
    for (const id of peerIds) {
      const client = clientOf.get(id) ?? -1;
      const owned = client >= 0 ? nodes.filter((n) => n.clientId === client) : [];
      const onlyOurs = owned.length > 0 && owned.every((n) => peerIds.has(n.id)) && !owned.some((n) => n.id === this.nodeId);
      doomed.add(onlyOurs ? client : id);
    }
    for (const id of doomed) this.native.coreDestroyGlobal(this.core, id);
    // the registry tells when they are gone (onGraph, on every change)
    const gone = (): boolean => !this.native.coreNodes(this.core).some((n) => peerIds.has(n.id));
    if (gone()) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(limit);
        this.off('graph', check);
        this.off('destroyed', done);
        resolve();
      };
      const check = (): void => {
        if (gone()) done();
      };
      const limit = setTimeout(done, DISCONNECT_WAIT_MS);
      this.on('graph', check);
      this.once('destroyed', done);
    });
  }

  destroy(): void {
    if (this._destroyed) return;
    this.native.streamDestroy(this.handle);
    this._destroyed = true;
    this._clientActive = false;
    this.onDestroy();
    this.emit('destroyed');
  }

  /**
   * @internal the sound server went away. What a sink captured before that
   * is still in our ring: keep it, so the server gets every frame before
   * its ECONNRESET.
   */
  fail(err: Error): void {
    if (this._destroyed) return;
    this.failed = this.options.direction === 'sink';
    this.destroy();
    this.emit('error', err);
  }

  /** @internal called on every registry change; emits 'graph' (internal: disconnectClients waits on it) */
  onGraph(): void {
    if (this._destroyed) return;
    this.emit('graph');
    const key = this.clients()
      .map((c) => c.nodeId)
      .sort((x, y) => x - y)
      .join(',');
    if (key !== this.peerKey) {
      this.peerKey = key;
      this.emit('clients', this.clients());
    }
  }

  private setClientActive(active: boolean): void {
    if (active === this._clientActive) return;
    this._clientActive = active;
    if (active) {
      this.emit('client-start');
    } else {
      // a sink may still hold data captured before the stop
      if (this.options.direction === 'sink') this.emit('readable');
      this.emit('client-stop');
    }
  }

  private onStreamEvent(kind: string, a?: string | number, b?: number, text?: string | null): void {
    if (this._destroyed) return;
    switch (kind) {
      case 'data':
        this.emit(this.options.direction === 'sink' ? 'readable' : 'writable');
        break;
      case 'links':
        // sinks always run, so a client's data flows while one of its links
        // is active and its node runs (a corked client's links are paused;
        // the native mirror counts a link only once the peer node runs)
        if (this.options.direction === 'sink') this.setClientActive(Number(b) > 0);
        break;
      case 'state': {
        if (typeof b === 'number' && b >= 0) this.nodeId = b;
        const state = String(a);
        // a source starts when a client links and pauses when the last one goes
        if (this.options.direction === 'source') this.setClientActive(state === 'streaming');
        if (state === 'error') this.fail(makeError('EIO', 'pw_stream', text ?? 'stream error'));
        else this.emit('state', state);
        break;
      }
      case 'format':
        this.emit('format', a, b);
        break;
    }
  }
}
