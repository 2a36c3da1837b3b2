/**
 * In-memory backend: the Backend/Endpoint contract of ./types.ts in plain
 * TypeScript, with no sound server. For unit tests of everything above the
 * contract (Loop, Daemon, Node streams).
 *
 * It mirrors the PipeWire backend's observable behaviour:
 *  - a ring per endpoint, rounded up to a power of two (at least 1024 bytes);
 *    read/write move whole frames; read on a source / write on a sink is
 *    EINVAL, anything after destroy() is EBADF;
 *  - a sink drops what does not fit (an overrun: `xruns`, `xrunBytes`), a
 *    source pads an empty ring with silence (an underrun, counted once per
 *    gap and only after JS has written);
 *  - events are delivered asynchronously and in order, in one batch per
 *    macrotask, like the native addon's uv_async wake-ups: 'readable' when a
 *    cycle leaves at least wakeBytes in a sink's ring (or dropped data),
 *    'writable' when a short write was followed by a cycle that freed
 *    wakeBytes, 'client-start'/'client-stop'/'clients' as clients come and go.
 *    `clientActive` changes when its event is delivered, not before.
 *
 * Test hooks:
 *  - `backend.clock.step(n)` runs n graph cycles of `quantum` frames (or
 *    `clock.run(ms)` to let a timer drive it in real time);
 *  - `endpoint.connectClient({...})` gives a MemoryClient, an application
 *    stream: start(), play(pcm) (sink), recorded() (source), stop();
 *    clients may use another sample format than the endpoint (converted by
 *    src/dsp/convert.ts); rate and channels must match (no resampler here);
 *  - `backend.lose()` simulates the sound server going away.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { convert, fromFloat32, toFloat32 } from '../dsp/convert';
import { PeakMeter } from '../dsp/level';
import { makeError } from '../errors';
import { FORMAT_INFO, frameBytes, validateFormat, type SampleFormat } from '../format';
import type { Backend, Cable, CableOptions, CableStats, ClientInfo, Endpoint, EndpointOptions, EndpointStats } from './types';

/** The graph clock shared by every endpoint of a backend. */
export class MemoryClock {
  /** frames per cycle */
  quantum: number;
  /** cycles run so far */
  cycles = 0;
  private readonly nodes = new Set<MemoryEndpoint>();
  private timer: NodeJS.Timeout | null = null;

  constructor(quantum = 1024) {
    this.quantum = quantum;
  }

  /** Runs `cycles` graph cycles now (synchronously); events follow asynchronously. */
  step(cycles = 1): void {
    for (let i = 0; i < cycles; i++) {
      this.cycles++;
      for (const ep of [...this.nodes]) ep.process(this.quantum);
    }
  }

  /** Lets a timer step the clock every `periodMs` until halt(). */
  run(periodMs = 5): void {
    this.halt();
    this.timer = setInterval(() => this.step(), periodMs);
  }

  halt(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  get running(): boolean {
    return this.timer !== null;
  }

  /** @internal */
  attach(ep: MemoryEndpoint): void {
    this.nodes.add(ep);
  }

  /** @internal */
  detach(ep: MemoryEndpoint): void {
    this.nodes.delete(ep);
  }
}

export interface MemoryBackendOptions {
  /** frames per graph cycle (default 1024); ignored when `clock` is given */
  quantum?: number;
  clock?: MemoryClock;
}

let nextNodeId = 1000;

export class MemoryBackend extends EventEmitter implements Backend {
  readonly name = 'memory';
  readonly clock: MemoryClock;
  private readonly live = new Set<MemoryEndpoint>();
  private closed = false;
  private lost = false;
  /** endpoints created so far, in order (destroyed ones included) */
  readonly created: MemoryEndpoint[] = [];

  constructor(opts: MemoryBackendOptions = {}) {
    super();
    this.clock = opts.clock ?? new MemoryClock(opts.quantum);
  }

  get connected(): boolean {
    return !this.closed && !this.lost;
  }

  /** works after lose() and close() too, like the native one */
  createCable(opts: CableOptions): MemoryCable {
    return new MemoryCable(opts);
  }

  createEndpoint(opts: EndpointOptions, cable?: Cable): MemoryEndpoint {
    if (this.closed) throw makeError('EBADF', 'createEndpoint', 'the memory backend is closed');
    if (this.lost) throw makeError('EPIPE', 'createEndpoint', 'the (memory) sound server went away');
    if (cable !== undefined && !(cable instanceof MemoryCable)) throw makeError('EINVAL', 'createEndpoint', 'a cable of another backend');
    const ep = new MemoryEndpoint(this, opts, cable);
    this.live.add(ep);
    this.created.push(ep);
    this.clock.attach(ep);
    return ep;
  }

  /** The live endpoint with this node name. */
  endpoint(name: string): MemoryEndpoint | undefined {
    for (const ep of this.live) if (ep.options.name === name) return ep;
    return undefined;
  }

  /** Live endpoints (nodes on the fake server). */
  endpoints(): MemoryEndpoint[] {
    return [...this.live];
  }

  /** Simulates the sound server going away: endpoints fail with EPIPE, then 'disconnected'. */
  lose(message = 'the (memory) sound server went away'): void {
    if (this.lost || this.closed) return;
    this.lost = true;
    const err = makeError('EPIPE', 'pipewire', message);
    for (const ep of [...this.live]) ep.fail(err);
    this.emit('disconnected', err);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ep of [...this.live]) ep.destroy();
    this.clock.halt();
  }

  /** @internal */
  forget(ep: MemoryEndpoint): void {
    this.live.delete(ep);
    this.clock.detach(ep);
  }
}

/** A byte FIFO of fixed capacity. */
export class Ring {
  private buf: Buffer;
  private head = 0; // read position
  fill = 0;

  constructor(readonly size: number) {
    this.buf = Buffer.alloc(size);
  }

  get free(): number {
    return this.size - this.fill;
  }

  write(src: Buffer): number {
    const n = Math.min(src.length, this.free);
    let tail = (this.head + this.fill) % this.size;
    let done = 0;
    while (done < n) {
      const k = Math.min(n - done, this.size - tail);
      src.copy(this.buf, tail, done, done + k);
      done += k;
      tail = (tail + k) % this.size;
    }
    this.fill += n;
    return n;
  }

  read(dst: Buffer, max = dst.length): number {
    const n = Math.min(max, this.fill);
    let done = 0;
    while (done < n) {
      const k = Math.min(n - done, this.size - this.head);
      this.buf.copy(dst, done, this.head, this.head + k);
      done += k;
      this.head = (this.head + k) % this.size;
    }
    this.fill -= n;
    return n;
  }
}

/** bytes the memory cable hands the socket per write */
const CABLE_CHUNK = 1 << 14;

/**
 * The Cable contract in plain TypeScript, with the native cable's
 * observable behaviour (native/cable.c): a plugged socket served by a small
 * pump of its own (the loop never touches the PCM), protocol lines in order
 * with it, backpressure both ways (a sink writes while the socket takes it;
 * a source pauses the socket while the ring is full, and before start()
 * reads ahead at most `hold`), and the same events, asynchronous and in
 * order. The endpoint bound to it fills or drains its ring.
 */
export class MemoryCable extends EventEmitter implements Cable {
  readonly options: Readonly<CableOptions>;
  /** @internal the ring the bound endpoint's node fills (sink) or drains (source) */
  readonly ring: Ring;
  /** @internal */
  readonly frame: number;
  /** @internal source: the node may take from the ring (closed from plug() to start(): it plays silence) */
  gate = true;
  /** @internal source: data entered the ring since the last underrun */
  primed = false;
  private readonly wake: number;
  private readonly meter: PeakMeter;
  private sock: Socket | null = null;
  private started = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private hold = 0;
  /** source: the socket's EOF was seen (pending bytes may still wait for the ring) */
  private ended = false;
  private eofPosted = false;
  private drainedPosted = false;
  private firstPosted = false;
  private finishing = false;
  private drain = false;
  private ending = false;
  private finished = false;
  private failed = false;
  private closed = false;
  private waitDrain = false;
  private bytes = 0;
  private consumed = 0;
  private scheduled = false;
  private readonly events: (() => void)[] = [];
  private flushScheduled = false;

  constructor(opts: CableOptions) {
    super();
    const bad = validateFormat(opts);
    if (bad || (opts.direction !== 'sink' && opts.direction !== 'source') || !(opts.ringBytes >= 1024) || opts.ringBytes > 1 << 28) {
      throw makeError('EINVAL', 'cableCreate', `cannot create the cable: ${bad ?? 'bad direction or ringBytes'}`);
    }
    this.options = Object.freeze({ ...opts });
    let size = 1024;
    while (size < opts.ringBytes) size *= 2;
    this.ring = new Ring(size);
    this.frame = frameBytes(opts);
    this.wake = opts.wakeBytes ? Math.min(opts.wakeBytes, size) : size / 8;
    this.meter = new PeakMeter(opts.format, opts.channels);
  }

  private get isSink(): boolean {
    return this.options.direction === 'sink';
  }

  plug(socket: Socket, rest: Buffer, hold: number): void {
    if (this.closed || this.finished) throw makeError('EBADF', 'plug', 'the cable is closed');
    if (this.sock) throw makeError('EBUSY', 'plug', 'the cable has a socket already');
    if (socket.destroyed) throw makeError('EBADF', 'plug', 'the server socket is gone');
    this.sock = socket;
    this.gate = false;
    this.started = false;
    this.hold = Math.min(hold > 0 ? hold : this.ring.size, this.ring.size);
    if (!this.isSink && rest.length > 0) {
      this.pending.push(rest);
      this.pendingBytes += rest.length;
    }
    socket.on('data', (chunk: Buffer) => {
      if (this.isSink || this.ended) return; // a reading server sends nothing: reading only sees its EOF
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      this.fill();
    });
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!this.isSink && err.code === 'ECONNRESET') this.onEnd(); // gone without reading our lines: like EOF
      else this.fail(err);
    });
    socket.on('close', () => this.onEnd());
    socket.resume();
    this.schedule();
  }

  line(text: string): void {
    this.writable('line');
    if (text) this.sock!.write(text);
  }

  start(line: string): void {
    this.writable('start');
    if (line) this.sock!.write(line);
    if (this.isSink) {
      this.started = true;
    } else {
      if (this.ring.fill > 0 || this.pendingBytes > 0) this.primed = true;
      this.gate = true;
    }
    this.schedule();
  }

  finish(line: string | null, drain: boolean): void {
    this.writable('finish');
    if (line) this.sock!.write(line);
    this.finishing = true;
    this.drain = drain;
    this.schedule();
  }

  kick(): void {
    this.schedule();
  }

  consume(bytes: number): void {
    if (this.closed || !this.sock) throw makeError('EBADF', 'consume', 'no socket plugged');
    if (this.isSink) throw makeError('EINVAL', 'consume', 'consume on a capture cable');
    if (this.gate || this.finishing || this.failed) return;
    let want = Math.max(0, Math.floor(bytes));
    want -= want % this.frame;
    want -= this.drop(want);
    // the rest from what the socket has at once (a paused socket's buffer: read() emits 'data' into pending)
    while (want > 0 && !this.ended && !this.sock.destroyed && this.sock.readableLength > 0) {
      if (this.sock.read() === null) break;
      want -= this.drop(want);
    }
    this.fill();
  }

  /** discards up to `want` whole frames from the front of pending; returns the bytes */
  private drop(want: number): number {
    let take = Math.min(want, this.pendingBytes - (this.pendingBytes % this.frame));
    const done = take;
    while (take > 0) {
      const head = this.pending[0]!;
      if (head.length <= take) {
        this.pending.shift();
        take -= head.length;
      } else {
        this.pending[0] = head.subarray(take);
        take = 0;
      }
    }
    this.pendingBytes -= done;
    this.consumed += done;
    return done;
  }

  stats(): CableStats {
    return {
      fill: this.ring.fill,
      size: this.ring.size,
      bytes: this.bytes,
      queued: this.pendingBytes + (this.sock && !this.sock.destroyed ? this.sock.writableLength : 0),
      consumed: this.consumed,
      open: this.sock !== null && !this.closed,
      eof: this.eofPosted,
      finished: this.finished,
      failed: this.failed,
      levels: this.meter.levelsDb(),
    };
  }

  peer(): 'open' | 'eof' | 'closed' {
    if (this.closed || !this.sock || this.sock.destroyed || this.failed) return 'closed';
    return this.ended || this.sock.readableEnded ? 'eof' : 'open';
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.events.length = 0;
    this.gate = true;
    if (this.sock && !this.sock.destroyed) this.sock.destroy();
  }

  /** @internal sink: the node put data into the ring this cycle */
  onCaptured(dropped: boolean): void {
    if (this.sock && this.started && (this.ring.fill >= this.wake || dropped)) this.schedule();
  }

  /** @internal source: the node took from the ring this cycle */
  onPlayed(): void {
    if (this.sock) this.schedule();
  }

  private writable(call: string): void {
    if (!this.sock || this.closed) throw makeError('EBADF', call, 'no socket plugged');
    if (this.finishing) throw makeError('EPIPE', call, 'the cable is finishing');
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.service();
    });
  }

  private service(): void {
    if (this.closed || !this.sock || this.failed || this.finished) return;
    if (this.isSink) {
      if (this.eofPosted) return; // a reading server that closed: nothing more to do on the socket
      if (this.started) this.deliver();
    } else {
      this.fill();
    }
    this.finishIfDone();
  }

  /** sink: ring -> socket while the socket takes it */
  private deliver(): void {
    const sock = this.sock!;
    while (this.ring.fill > 0 && !sock.destroyed) {
      if (sock.writableNeedDrain) {
        if (!this.waitDrain) {
          this.waitDrain = true;
          sock.once('drain', () => {
            this.waitDrain = false;
            this.schedule();
          });
        }
        return;
      }
      const buf = Buffer.allocUnsafe(Math.min(CABLE_CHUNK, this.ring.fill));
      const n = this.ring.read(buf);
      this.meter.update(buf.subarray(0, n - (n % this.frame)));
      this.bytes += n;
      sock.write(buf.subarray(0, n));
      this.first();
    }
  }

  /**
   * source: socket bytes -> ring while there is room. Before start() nothing
   * enters the ring (the server is held at its socket): the socket is read
   * ahead at most `hold`, only to see an EOF.
   */
  private fill(): void {
    if (this.closed || this.failed || !this.sock) return;
    while (this.gate && this.pending.length > 0) {
      const room = this.ring.free;
      if (room === 0) break;
      const head = this.pending[0]!;
      const k = Math.min(room, head.length);
      const part = head.subarray(0, k);
      this.ring.write(part);
      this.meter.update(part.subarray(0, k - (k % this.frame)));
      if (k === head.length) this.pending.shift();
      else this.pending[0] = head.subarray(k);
      this.pendingBytes -= k;
      this.bytes += k;
      if (this.gate) {
        this.primed = true;
        this.first();
      }
    }
    const sock = this.sock;
    if (!this.ended && !sock.destroyed) {
      if (this.gate ? this.pendingBytes > 0 : this.pendingBytes >= this.hold) sock.pause();
      else sock.resume();
    }
    if (this.ended && (this.pendingBytes === 0 || !this.gate) && !this.eofPosted) {
      this.eofPosted = true;
      this.post(() => this.emit('eof'));
    }
    if (this.eofPosted && !this.drainedPosted && this.gate && this.pendingBytes === 0 && this.ring.fill < this.frame) {
      this.drainedPosted = true;
      this.post(() => this.emit('drained'));
    }
  }

  private onEnd(): void {
    if (this.closed || this.failed || this.finished) return;
    if (this.isSink) {
      if (this.eofPosted) return;
      this.eofPosted = true;
      this.post(() => this.emit('eof'));
      return;
    }
    if (this.ended) return;
    this.ended = true;
    this.fill();
  }

  private finishIfDone(): void {
    if (!this.finishing || this.ending || this.failed) return;
    if (this.isSink && this.drain && this.ring.fill > 0) return;
    this.ending = true;
    // 'finished' once everything written went to the kernel (the native one: after shutdown(SHUT_WR))
    this.sock!.end(() => {
      this.finished = true;
      this.post(() => this.emit('finished'));
    });
  }

  private fail(err: NodeJS.ErrnoException): void {
    if (this.failed || this.closed) return;
    this.failed = true;
    const code = err.code ?? 'EIO';
    const e = makeError(code, err.syscall ?? 'send', `the server socket failed: ${err.message}`);
    this.post(() => this.emit('error', e));
  }

  private first(): void {
    if (this.firstPosted) return;
    this.firstPosted = true;
    this.post(() => this.emit('first'));
  }

  /** events in order, one batch per macrotask, like the native uv_async */
  private post(fn: () => void): void {
    this.events.push(fn);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const q = this.events.splice(0);
      for (const f of q) {
        if (this.closed) return;
        f();
      }
    });
  }
}

export type MemoryClientState = 'linked' | 'running' | 'stopped' | 'ended' | 'orphaned';

export interface MemoryClientOptions {
  name?: string;
  appName?: string;
  mediaName?: string;
  pid?: number;
  /** the client's sample format (default: the endpoint's) */
  format?: SampleFormat;
  /** must equal the endpoint's (default) */
  rate?: number;
  /** must equal the endpoint's (default) */
  channels?: number;
  /**
   * sink: what a running client plays when its queue is empty: nothing
   * (default: exact byte counts in tests) or a cycle of silence (what a real
   * application stream does)
   */
  silenceWhenEmpty?: boolean;
  /** source: the buffer the (fake) sound server keeps for this recorder, in ms: what it has recorded shows that much later (like pipewire-pulse's fragments) */
  latencyMs?: number;
}

export class MemoryEndpoint extends EventEmitter implements Endpoint {
  readonly options: Readonly<EndpointOptions>;
  readonly nodeId = nextNodeId++;
  private ring: Ring | null;
  /** after fail(): what a sink had captured; read() hands it out */
  private leftover: Buffer | null = null;
  private readonly frame: number;
  private readonly wake: number;
  private _clientActive = false;
  private linked: MemoryClient[] = [];
  private frames = 0;
  private xruns = 0;
  private xrunBytes = 0;
  private cycles = 0;
  private quantum = 0;
  private primed = false;
  private wantSpace = false;
  private wakePending = false;
  /** wakeAfter(): wake once `frames` reaches this (0: off) */
  private wakeAt = 0;
  /** keepSilence(): a sink runs (and keeps what it hears: silence) with no client's data too, as a real node does */
  private keep = false;
  private queue: (() => void)[] = [];
  private flushScheduled = false;
  /** the cable whose ring the node fills or drains (its socket served by the cable), or null: read()/write() */
  private readonly cable: MemoryCable | null;

  constructor(private readonly backend: MemoryBackend, opts: EndpointOptions, cable?: MemoryCable) {
    super();
    const bad = validateFormat(opts);
    if (bad || (opts.direction !== 'sink' && opts.direction !== 'source') || !opts.name || !(opts.ringBytes >= 1024) || opts.ringBytes > 1 << 28) {
      throw makeError('EINVAL', 'createEndpoint', `cannot create node ${opts.name}: ${bad ?? 'bad direction, name or ringBytes'}`);
    }
    const co = cable?.options;
    if (co && (co.direction !== opts.direction || co.format !== opts.format || co.rate !== opts.rate || co.channels !== opts.channels)) {
      throw makeError('EINVAL', 'createEndpoint', `cannot create node ${opts.name}: the cable has another direction or format`);
    }
    this.options = Object.freeze({ ...opts });
    this.cable = cable ?? null;
    let size = 1024;
    while (size < opts.ringBytes) size *= 2;
    this.ring = cable ? cable.ring : new Ring(size);
    this.frame = frameBytes(opts);
    this.wake = opts.wakeBytes ? Math.min(opts.wakeBytes, size) : size / 8;
  }

  get clientActive(): boolean {
    return this._clientActive;
  }

  get destroyed(): boolean {
    return this.ring === null;
  }

  read(buf: Buffer): number {
    if (!this.ring) {
      if (!this.leftover) throw makeError('EBADF', 'read');
      const n = Math.min(this.leftover.length, buf.length - (buf.length % this.frame));
      this.leftover.copy(buf, 0, 0, n);
      this.leftover = this.leftover.subarray(n);
      return n;
    }
    if (this.options.direction !== 'sink') throw makeError('EINVAL', 'read', 'read on a source endpoint');
    const n = Math.min(buf.length, this.ring.fill);
    return this.ring.read(buf, n - (n % this.frame));
  }

  write(buf: Buffer): number {
    if (!this.ring) throw makeError('EBADF', 'write');
    if (this.options.direction !== 'source') throw makeError('EINVAL', 'write', 'write on a sink endpoint');
    const whole = buf.length - (buf.length % this.frame);
    const free = this.ring.free - (this.ring.free % this.frame);
    const n = this.ring.write(buf.subarray(0, Math.min(whole, free)));
    if (n > 0) this.primed = true;
    if (n < whole) this.wantSpace = true;
    return n;
  }

  stats(): EndpointStats {
    if (!this.ring) {
      return { state: 'destroyed', nodeId: -1, fill: this.leftover?.length ?? 0, size: 0, frames: 0, xruns: 0, xrunBytes: 0, cycles: 0, quantum: 0, links: 0, activeLinks: 0 };
    }
    return {
      state: this.running().length > 0 ? 'streaming' : 'paused',
      nodeId: this.nodeId,
      fill: this.ring.fill,
      size: this.ring.size,
      frames: this.frames,
      xruns: this.xruns,
      xrunBytes: this.xrunBytes,
      cycles: this.cycles,
      quantum: this.quantum,
      links: this.linked.length,
      activeLinks: this.running().length,
    };
  }

  wakeAfter(frames: number): void {
    this.wakeAt = frames > 0 ? this.frames + Math.ceil(frames) : 0;
  }

  keepSilence(on: boolean): void {
    this.keep = on;
  }

  clients(): ClientInfo[] {
    if (!this.ring) return [];
    return this.linked.map((c) => c.info());
  }

  /** Every client stream linked now (test hook). */
  linkedClients(): MemoryClient[] {
    return [...this.linked];
  }

  /** Links a fake application stream to this node; it starts with start(). */
  connectClient(opts: MemoryClientOptions = {}): MemoryClient {
    if (!this.ring) throw makeError('ENOENT', 'connect', `node ${this.options.name} does not exist`);
    const c = new MemoryClient(this, opts);
    this.linked.push(c);
    this.clientsChanged();
    return c;
  }

  async disconnectClients(): Promise<void> {
    const peers = [...this.linked];
    if (peers.length === 0) return;
    for (const c of peers) c.end('ended');
    // like the real one, this takes a round trip to the server
    await new Promise((r) => setImmediate(r));
  }

  destroy(): void {
    if (!this.ring) return;
    this.ring = null;
    // clients still linked would be moved elsewhere by a session manager
    for (const c of [...this.linked]) c.end('orphaned');
    this.linked = [];
    this.queue = [];
    this._clientActive = false;
    this.backend.forget(this);
    this.emit('destroyed');
  }

  /** @internal the sound server went away; a sink keeps what it had captured (see Endpoint.read) */
  fail(err: Error): void {
    if (!this.ring) return;
    if (this.options.direction === 'sink' && !this.cable) {
      const tail = Buffer.alloc(this.ring.fill);
      this.leftover = tail.subarray(0, this.ring.read(tail));
    }
    this.destroy();
    this.emit('error', err);
  }

  /** @internal one graph cycle of `quantum` frames (the realtime side) */
  process(quantum: number): void {
    const ring = this.ring;
    if (!ring) return;
    const running = this.running();
    const keep = this.keep && this.options.direction === 'sink';
    if (running.length === 0 && !keep) return;
    this.cycles++;
    const n = quantum * this.frame;
    if (this.options.direction === 'sink') {
      let data = this.mix(running.map((c) => c.pull(quantum)));
      if (data.length === 0 && keep) data = Buffer.alloc(n, FORMAT_INFO[this.options.format].silence);
      if (data.length === 0) {
        this.quantum = 0;
        return;
      }
      const done = ring.write(data);
      const dropped = done < data.length;
      if (dropped) {
        this.xruns++;
        this.xrunBytes += data.length - done;
      }
      this.frames += data.length / this.frame;
      this.quantum = data.length / this.frame;
      if (this.cable) this.cable.onCaptured(dropped);
      else if (ring.fill >= this.wake || dropped) this.wakeUp('readable');
    } else {
      const out = Buffer.alloc(n, FORMAT_INFO[this.options.format].silence);
      const cable = this.cable;
      // whole frames only (a cable's socket may have put part of one in); a closed gate plays silence
      const avail = cable && !cable.gate ? 0 : ring.fill - (ring.fill % this.frame);
      const done = ring.read(out, Math.min(n, avail));
      const primed = cable ? cable.primed : this.primed;
      if (done < n && primed) {
        if (cable) cable.primed = false;
        else this.primed = false;
        this.xruns++;
        this.xrunBytes += n - done;
      }
      for (const c of running) c.push(out);
      this.frames += quantum;
      this.quantum = quantum;
      if (cable) cable.onPlayed();
      else if (this.wantSpace && ring.free >= this.wake) {
        this.wantSpace = false;
        this.wakeUp('writable');
      }
    }
    if (this.wakeAt > 0 && this.frames >= this.wakeAt) {
      this.wakeAt = 0;
      this.wakeUp(this.options.direction === 'sink' ? 'readable' : 'writable');
    }
  }

  /** sums client buffers (endpoint format); one client passes through bit-exactly */
  private mix(parts: Buffer[]): Buffer {
    const nonEmpty = parts.filter((p) => p.length > 0);
    if (nonEmpty.length <= 1) return nonEmpty[0] ?? Buffer.alloc(0);
    const fmt = this.options.format;
    const len = Math.max(...nonEmpty.map((p) => p.length));
    const sum = new Float32Array(len / FORMAT_INFO[fmt].bytes);
    for (const p of nonEmpty) {
      const f = toFloat32(p, fmt);
      for (let i = 0; i < f.length; i++) sum[i] += f[i];
    }
    return fromFloat32(sum, fmt);
  }

  private running(): MemoryClient[] {
    return this.linked.filter((c) => c.state === 'running');
  }

  /** @internal a client started, stopped or went away */
  clientStateChanged(): void {
    const active = this.running().length > 0;
    this.post(() => {
      if (active === this._clientActive) return;
      this._clientActive = active;
      if (active) {
        this.emit('client-start');
      } else {
        if (this.options.direction === 'sink') this.emit('readable');
        this.emit('client-stop');
      }
    });
  }

  /** @internal */
  unlink(c: MemoryClient): void {
    const i = this.linked.indexOf(c);
    if (i < 0) return;
    this.linked.splice(i, 1);
    this.clientsChanged();
  }

  private clientsChanged(): void {
    const list = this.clients();
    this.post(() => this.emit('clients', list));
  }

  /** a data wake-up: one per batch however many cycles ran (a flag, like the native one) */
  private wakeUp(event: 'readable' | 'writable'): void {
    if (this.wakePending) return;
    this.wakePending = true;
    this.post(() => {
      this.wakePending = false;
      this.emit(event);
    });
  }

  /** queues an event for the next batch (in order), like the native uv_async */
  private post(fn: () => void): void {
    this.queue.push(fn);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      const q = this.queue;
      this.queue = [];
      for (const f of q) {
        if (this.destroyed) return;
        f();
      }
    });
  }
}

/**
 * A fake application stream linked to a MemoryEndpoint: a player on a sink,
 * a recorder on a source. States: linked -> running <-> stopped; ended (the
 * server end disconnected it) or orphaned (the node vanished under it, which
 * a session manager would answer by moving it to another device).
 */
export class MemoryClient extends EventEmitter {
  readonly nodeId = nextNodeId++;
  readonly format: SampleFormat;
  state: MemoryClientState = 'linked';
  private readonly frame: number;
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  private recordedParts: Buffer[] = [];
  /** source with latencyMs: recorded, not yet a whole fragment (never handed to the client if it ends first) */
  private held: Buffer[] = [];
  private heldBytes = 0;

  constructor(private readonly ep: MemoryEndpoint, private readonly opts: MemoryClientOptions) {
    super();
    const o = ep.options;
    this.format = opts.format ?? o.format;
    const rate = opts.rate ?? o.rate;
    const channels = opts.channels ?? o.channels;
    if (rate !== o.rate || channels !== o.channels) {
      throw makeError('EINVAL', 'connect', `the memory backend converts sample formats only: client ${rate} Hz ${channels}ch, node ${o.rate} Hz ${o.channels}ch`);
    }
    this.frame = FORMAT_INFO[this.format].bytes * channels;
  }

  info(): ClientInfo {
    return {
      nodeId: this.nodeId,
      name: this.opts.name ?? null,
      appName: this.opts.appName ?? null,
      mediaName: this.opts.mediaName ?? null,
      pid: this.opts.pid ?? null,
      latency: this.opts.latencyMs !== undefined ? this.opts.latencyMs / 1000 : null,
    };
  }

  /** true once the server end disconnected it or the node vanished */
  get gone(): boolean {
    return this.state === 'ended' || this.state === 'orphaned';
  }

  start(): this {
    if (this.gone) throw makeError('EPIPE', 'start', `client stream was ${this.state}`);
    if (this.state !== 'running') {
      this.state = 'running';
      this.ep.clientStateChanged();
    }
    return this;
  }

  stop(): this {
    if (this.state === 'running') {
      this.state = 'stopped';
      this.ep.clientStateChanged();
    }
    return this;
  }

  /** stops and unlinks (the application closed its stream) */
  disconnect(): void {
    if (this.gone) return;
    this.stop();
    this.state = 'stopped';
    this.ep.unlink(this);
  }

  /** sink: queues PCM (in the client's format) to be played over the next cycles */
  play(pcm: Buffer): this {
    if (this.ep.options.direction !== 'sink') throw makeError('EINVAL', 'play', 'play on a source: record from it instead');
    if (pcm.length % this.frame !== 0) throw makeError('EINVAL', 'play', `${pcm.length} bytes is not a whole number of ${this.frame}-byte frames`);
    this.queued.push(pcm);
    this.queuedBytes += pcm.length;
    return this;
  }

  /** sink: bytes queued and not yet played */
  get pending(): number {
    return this.queuedBytes;
  }

  /** source: everything recorded so far (in the client's format) */
  recorded(): Buffer {
    return Buffer.concat(this.recordedParts);
  }

  /** source: what was recorded since the last call */
  takeRecorded(): Buffer {
    const b = Buffer.concat(this.recordedParts);
    this.recordedParts = [];
    return b;
  }

  /** @internal up to `frames` frames of queued PCM, converted to the endpoint's format */
  pull(frames: number): Buffer {
    if (this.queuedBytes === 0 && this.opts.silenceWhenEmpty) {
      return Buffer.alloc(frames * frameBytes(this.ep.options), FORMAT_INFO[this.ep.options.format].silence);
    }
    let want = Math.min(frames * this.frame, this.queuedBytes);
    const parts: Buffer[] = [];
    while (want > 0) {
      const head = this.queued[0]!;
      const k = Math.min(want, head.length);
      parts.push(head.subarray(0, k));
      if (k === head.length) this.queued.shift();
      else this.queued[0] = head.subarray(k);
      this.queuedBytes -= k;
      want -= k;
    }
    const data = Buffer.concat(parts);
    return this.format === this.ep.options.format ? data : convert(data, this.format, this.ep.options.format);
  }

  /** @internal one cycle of the source's output (endpoint format) */
  push(out: Buffer): void {
    const pcm = this.format === this.ep.options.format ? Buffer.from(out) : convert(out, this.ep.options.format, this.format);
    if (!this.opts.latencyMs) {
      this.recordedParts.push(pcm);
      return;
    }
    // like pipewire-pulse: the client gets its data in whole fragments of latencyMs
    const frag = Math.max(1, Math.round((this.opts.latencyMs * this.ep.options.rate) / 1000)) * this.frame;
    this.held.push(pcm);
    this.heldBytes += pcm.length;
    if (this.heldBytes < frag) return;
    const all = Buffer.concat(this.held);
    const n = all.length - (all.length % frag);
    this.recordedParts.push(all.subarray(0, n));
    this.held = n < all.length ? [all.subarray(n)] : [];
    this.heldBytes = all.length - n;
  }

  /** @internal */
  end(how: 'ended' | 'orphaned'): void {
    if (this.gone) return;
    const wasRunning = this.state === 'running';
    this.state = how;
    this.ep.unlink(this);
    if (wasRunning) this.ep.clientStateChanged();
    this.emit(how);
  }
}
