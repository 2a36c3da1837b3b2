/**
 * The server-end library: open the server end of loop N through the daemon
 * and get a Node stream (plus OSS-like promise read/write on top).
 *
 *   const srv = await openServer(0, { mode: 'read', format: 's16le', rate: 48000, channels: 2 });
 *   srv.readable.pipe(...)            // ends with an 'error' ECONNRESET after the last byte
 *   const buf = await srv.read(4096)  // first read waits until a client starts
 *
 * waitMs (OPEN wait=MS): the daemon sends TIMEOUT each MS without a client
 * start; each one fails the read()/write() that waits for the client (or,
 * when none waits, the next one) with ETIMEDOUT, and the stream surface
 * (readable/writable, if it was taken) is destroyed with that error and
 * replaced: `srv.readable` / `srv.writable` then give a new stream on the
 * same connection, which waits again. 'timeout' (err) is emitted each time.
 *
 * clock (OPEN clock=1): nothing waits for a client. Read mode: until START
 * the daemon's SILENCE lines become that many frames of silence on the
 * read side (read()/readable), then the client's PCM follows; write mode:
 * writes go out at once and the daemon consumes them at the loop's rate
 * until START, then clients record what follows. `silenceFrames` counts the
 * frames of silence received.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { EventEmitter, once } from 'node:events';
import { Readable, Writable } from 'node:stream';
import { FORMAT_INFO, frameBytes, validateFormat, type PcmFormat, type SampleFormat } from './format';
import { makeError, type AudioloopError } from './errors';
import {
  controlSocketPath,
  defaultSocketDir,
  formatOpen,
  LATENCY_MS,
  LineReader,
  RESET_LINE,
  loopSocketPath,
  parseErr,
  parseOk,
  parseSilence,
  parseStart,
  parseTimeout,
  WAIT_MS,
  type OkReply,
  type ServerMode,
} from './protocol';

export interface OpenServerOptions {
  mode: ServerMode | 'readwrite';
  format?: SampleFormat;
  rate?: number;
  channels?: number;
  /** reads return what is there (EAGAIN when nothing); the first read/write still waits for a client */
  nonblock?: boolean;
  socketDir?: string;
  /** shown to `audioloop status` */
  app?: string;
  /** the latency the node asks the sound server for, in ms (1-1000; OPEN latency=MS) */
  latencyMs?: number;
  /**
   * bound the wait for a client, in ms (1-86400000; OPEN wait=MS): a read or
   * write that waits that long for a client fails with ETIMEDOUT and the
   * next one waits again; absent: wait forever
   */
  waitMs?: number;
  /**
   * run the loop's clock until a client starts (OPEN clock=1): a reader gets
   * silence at the loop's rate, a writer's data is consumed at that rate;
   * nothing waits for a client. Default false: the first read/write waits.
   */
  clock?: boolean;
}

export interface ClientStart {
  app?: string;
  pid?: number;
}

/** Opens a connection and does the handshake; rejects with errors shaped like Node's (code, errno, syscall). */
export async function openServer(instance: number, opts: OpenServerOptions): Promise<LoopServer> {
  if (opts.mode !== 'read' && opts.mode !== 'write') {
    throw makeError('EINVAL', 'open', 'read+write is not permitted: open the server end with mode "read" or "write"');
  }
  const fmt: PcmFormat = { format: opts.format ?? 's16le', rate: opts.rate ?? 48000, channels: opts.channels ?? 2 };
  const bad = validateFormat(fmt);
  if (bad) throw makeError('EINVAL', 'open', bad);
  if (!Number.isInteger(instance) || instance < 0) throw makeError('EINVAL', 'open', `bad instance ${instance}`);
  if (opts.latencyMs !== undefined && !(Number.isInteger(opts.latencyMs) && opts.latencyMs >= LATENCY_MS.min && opts.latencyMs <= LATENCY_MS.max))
    throw makeError('EINVAL', 'open', `latencyMs must be an integer ${LATENCY_MS.min}-${LATENCY_MS.max}, got ${opts.latencyMs}`);
  if (opts.waitMs !== undefined && !(Number.isInteger(opts.waitMs) && opts.waitMs >= WAIT_MS.min && opts.waitMs <= WAIT_MS.max))
    throw makeError('EINVAL', 'open', `waitMs must be an integer ${WAIT_MS.min}-${WAIT_MS.max}, got ${opts.waitMs}`);
  const dir = opts.socketDir ?? defaultSocketDir();
  const path = loopSocketPath(dir, instance);
  const sock = await connect(path, dir, instance);
  sock.write(formatOpen({ mode: opts.mode, ...fmt, nonblock: !!opts.nonblock, ...(opts.latencyMs !== undefined ? { latencyMs: opts.latencyMs } : {}), ...(opts.waitMs !== undefined ? { waitMs: opts.waitMs } : {}), ...(opts.clock ? { clock: true } : {}), app: opts.app ?? 'audioloop-client', pid: process.pid }));
  const reader = new LineReader(4096);
  const reply = await new Promise<OkReply>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      let line: string | null;
      try {
        reader.feed(chunk);
        line = reader.take();
      } catch (e) {
        done();
        sock.destroy();
        reject(makeError('EPROTO', 'open', `bad reply from the daemon: ${(e as Error).message}`));
        return;
      }
      if (line === null) return;
      done();
      const err = parseErr(line);
      if (err) {
        sock.destroy();
        reject(makeError(err.code, 'open', err.message));
        return;
      }
      try {
        resolve(parseOk(line));
      } catch (e) {
        sock.destroy();
        reject(makeError('EPROTO', 'open', (e as Error).message));
      }
    };
    const onEnd = (): void => {
      done();
      reject(makeError('ECONNRESET', 'open', 'the daemon closed the connection during the handshake'));
    };
    const onError = (e: Error): void => {
      done();
      reject(e);
    };
    const done = (): void => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onError);
      sock.pause();
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', onError);
  });
  return new LoopServer(sock, reply, !!opts.nonblock, reader, !!opts.clock);
}

function connect(path: string, dir: string, instance: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(path);
    sock.once('connect', () => {
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' && fs.existsSync(controlSocketPath(dir))) {
        reject(makeError('ENODEV', 'open', `no loop instance ${instance}: the daemon in ${dir} does not serve it (see audioloop_instances)`));
      } else if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        reject(makeError(e.code, 'connect', `no audioloop daemon at ${path} (start one with "audioloop daemon")`));
      } else {
        reject(e);
      }
    });
  });
}

/** The server end of one loop. Idempotent close(); errors carry code/errno/syscall. */
export class LoopServer extends EventEmitter {
  readonly instance: number;
  readonly node: string;
  readonly mode: ServerMode;
  readonly format: PcmFormat;
  readonly frameBytes: number;
  readonly nonblock: boolean;
  /** set once a client has started (the START line) */
  client: ClientStart | null = null;
  /** the error that ended the loop (ECONNRESET at end of stream) */
  error: AudioloopError | null = null;
  /** TIMEOUT lines received (waitMs): each is one ETIMEDOUT */
  timeouts = 0;
  /** clock: frames of silence received in SILENCE lines before START (read mode) */
  silenceFrames = 0;
  private readonly startPromise: Promise<ClientStart>;
  private resolveStart!: (c: ClientStart) => void;
  private rejectStart!: (e: Error) => void;
  private _readable: ServerReadable | null = null;
  private _writable: ServerWritable | null = null;
  /** the application took the stream surface (readable/writable): a TIMEOUT destroys and replaces it */
  private streamTaken = false;
  /** a TIMEOUT that no read()/write() has reported yet (at most one is kept) */
  private timeoutPending: AudioloopError | null = null;
  /** read()/write() calls waiting for START; called with a TIMEOUT's error, or null at START/the end */
  private readonly startWaiters = new Set<(e: AudioloopError | null) => void>();
  private closed = false;
  private readOnce = false;

  constructor(private readonly sock: net.Socket, ok: OkReply, nonblock: boolean, reader: LineReader, readonly clock = false) {
    super();
    this.instance = ok.instance;
    this.node = ok.node;
    this.mode = ok.mode;
    this.format = { format: ok.format, rate: ok.rate, channels: ok.channels };
    this.frameBytes = frameBytes(this.format);
    this.nonblock = nonblock;
    this.startPromise = new Promise((res, rej) => {
      this.resolveStart = res;
      this.rejectStart = rej;
    });
    this.startPromise.catch(() => undefined);
    this.newStream();
    sock.on('error', () => undefined);
    this.listen(reader);
  }

  /** the stream surface for the mode (again after a TIMEOUT destroyed the previous one) */
  private newStream(): void {
    const stream = this.mode === 'read' ? (this._readable = new ServerReadable(this)) : (this._writable = new ServerWritable(this));
    stream.on('error', (e: AudioloopError) => {
      // a TIMEOUT ends this stream object only, not the loop
      if (!this.error && e.code !== 'ETIMEDOUT') this.error = e;
    });
  }

  /** read mode: the PCM clients play, as a Node stream */
  get readable(): Readable {
    if (!this._readable) throw makeError('EINVAL', 'read', 'this server end was opened write-only');
    this.streamTaken = true;
    return this._readable;
  }

  /** write mode: PCM for clients to record, as a Node stream */
  get writable(): Writable {
    if (!this._writable) throw makeError('EINVAL', 'write', 'this server end was opened read-only');
    this.streamTaken = true;
    return this._writable;
  }

  /**
   * waitMs: the daemon's TIMEOUT (no client started within MS). Fails the
   * read()/write() calls waiting for START, and a stream the application
   * took (replaced by a fresh one); otherwise the next read()/write().
   */
  private onTimeout(ms: number): void {
    this.timeouts++;
    const syscall = this.mode === 'read' ? 'read' : 'write';
    const err = makeError('ETIMEDOUT', syscall, `no client started within ${ms} ms (wait=${ms}); the server end stays open, the next ${syscall} waits again`);
    let told = false;
    for (const w of [...this.startWaiters]) {
      w(err);
      told = true;
    }
    if (this.streamTaken) {
      const old = (this._readable ?? this._writable)!;
      this.streamTaken = false;
      this.newStream();
      if (old instanceof ServerWritable) old.timeOut(err);
      else old.destroy(err);
      told = true;
    }
    if (!told) this.timeoutPending = err;
    this.emit('timeout', err);
  }

  /**
   * Waits for START on behalf of read()/write(); rejects with ETIMEDOUT for
   * a TIMEOUT that came while waiting or before (not reported yet). The end
   * of the loop before START: read() goes on to its ECONNRESET, write() rejects.
   */
  private async awaitStart(rejectOnEnd: boolean): Promise<void> {
    if (this.client) return;
    const pending = this.timeoutPending;
    if (pending) {
      this.timeoutPending = null;
      throw pending;
    }
    if (this.clock) return; // the loop's clock runs: nothing waits for a client
    await new Promise<void>((resolve, reject) => {
      const w = (e: AudioloopError | null): void => {
        this.startWaiters.delete(w);
        if (e) reject(e);
        else resolve();
      };
      this.startWaiters.add(w);
      this.startPromise.then(
        () => w(null),
        (e: AudioloopError) => (rejectOnEnd ? w(e) : w(null)),
      );
    });
  }

  /** Resolves when a client starts (immediately if one has). */
  waitForClient(): Promise<ClientStart> {
    return this.startPromise;
  }

  /** @internal the socket protocol after OK: one START line, then PCM (read) or control lines (write) */
  private listen(reader: LineReader): void {
    let started = false;
    const onData = (chunk: Buffer): void => {
      if (started && this.mode === 'read') {
        this._readable!.deliver(chunk);
        return;
      }
      reader.feed(chunk);
      for (let line = reader.take(); line !== null; line = reader.take()) {
        const timeout = started ? null : parseTimeout(line);
        if (timeout !== null) {
          this.onTimeout(timeout);
          continue;
        }
        const silence = started || this.mode !== 'read' ? null : parseSilence(line);
        if (silence !== null) {
          // clock=1: this many frames of silence are due before a client starts
          this.silenceFrames += silence;
          this._readable!.deliver(Buffer.alloc(silence * this.frameBytes, FORMAT_INFO[this.format.format].silence));
          continue;
        }
        if (!started && line === RESET_LINE) {
          // the daemon ended the loop before any client started (e.g. it is stopping)
          this.reset('the daemon closed the loop before a client started', true);
          return;
        }
        if (!started) {
          started = true;
          try {
            this.client = parseStart(line);
          } catch {
            this.client = {};
          }
          this.resolveStart(this.client);
          this.emit('start', this.client);
          if (this.mode === 'read') {
            const rest = reader.rest();
            if (rest.length) this._readable!.deliver(rest);
            return;
          }
        } else if (line === RESET_LINE) {
          this.reset('the client went away', true);
        }
      }
    };
    this.sock.on('data', onData);
    this.sock.on('end', () => {
      // read mode: EOF after the data is ECONNRESET (end of stream)
      this.reset(started ? 'the client went away' : 'the daemon closed the loop before a client started', false);
    });
    this.sock.on('close', () => this.reset('the daemon connection closed', false));
    this.sock.resume();
  }

  /** hard: the daemon said RESET; otherwise the connection just ended */
  private reset(why: string, hard: boolean): void {
    const err = makeError('ECONNRESET', this.mode === 'read' ? 'read' : 'write', why);
    this.rejectStart(err);
    this._readable?.endWith(err);
    this._writable?.failWith(err, hard);
  }

  /** @internal */
  socket(): net.Socket {
    return this.sock;
  }

  /**
   * OSS-like read: waits for a client first (also when nonblock), then for
   * `size` bytes (blocking) or whatever is there (nonblock: EAGAIN if none;
   * the first nonblocking read waits until the client's first data is there).
   * After the client went away, returns what is left, then rejects ECONNRESET.
   * waitMs: rejects ETIMEDOUT when a TIMEOUT came while it waited for the
   * client (or since the last call); the next read waits again.
   */
  async read(size = 4096): Promise<Buffer> {
    if (!this._readable) throw makeError('EINVAL', 'read', 'this server end was opened write-only');
    await this.awaitStart(false);
    const r = this._readable;
    size = Math.max(this.frameBytes, size - (size % this.frameBytes));
    // the first read waits for the client's first data, like OSS, also when nonblock
    const first = !this.readOnce;
    this.readOnce = true;
    for (;;) {
      const have = r.readableLength;
      if (have >= size) return r.read(size) as Buffer;
      if (r.pendingError) {
        if (have > 0) return r.read(have) as Buffer;
        throw r.pendingError;
      }
      if (this.error) throw this.error;
      if (this.nonblock && (have > 0 || !first)) {
        if (have > 0) return r.read(have) as Buffer;
        throw makeError('EAGAIN', 'read');
      }
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          r.off('buffered', wake);
          r.off('error', wake);
          resolve();
        };
        r.on('buffered', wake);
        r.on('error', wake);
      });
    }
  }

  /**
   * OSS-like write: waits for a client first (waitMs: ETIMEDOUT after a
   * TIMEOUT, nothing sent); resolves once the data is handed to the daemon.
   */
  async write(buf: Buffer): Promise<void> {
    if (!this._writable) throw makeError('EINVAL', 'write', 'this server end was opened read-only');
    if (this.error) throw this.error;
    await this.awaitStart(true);
    const w = this._writable;
    if (this.nonblock && w.writableNeedDrain) throw makeError('EAGAIN', 'write');
    await new Promise<void>((resolve, reject) => {
      w.write(buf, (e) => (e ? reject(this.error ?? e) : resolve()));
    });
  }

  /**
   * Idempotent. Write mode: flushes, and resolves once the daemon has played
   * out everything (or the client went away). Read mode: drops the loop.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this._writable && !this._writable.destroyed && !this._writable.writableEnded) {
      const w = this._writable;
      await new Promise<void>((resolve) => {
        w.end(() => resolve());
        w.once('error', () => resolve());
        w.once('close', () => resolve());
      });
    }
    if (!this.sock.destroyed) {
      this.sock.end();
      this.sock.destroy();
    }
    if (this._readable && !this._readable.destroyed) this._readable.destroy();
    if (!this.sock.closed) await once(this.sock, 'close').catch(() => undefined);
  }
}

/** Read mode stream: PCM, then an 'error' ECONNRESET once every byte was consumed. */
class ServerReadable extends Readable {
  pendingError: AudioloopError | null = null;

  constructor(private readonly owner: LoopServer) {
    super({ highWaterMark: 1 << 16 });
  }

  /** @internal */
  deliver(chunk: Buffer): void {
    if (!this.push(chunk)) this.owner.socket().pause();
    this.emit('buffered');
  }

  override _read(): void {
    const s = this.owner.socket();
    if (!s.destroyed) s.resume();
    this.maybeFinish();
  }

  /** @internal the end of stream is ECONNRESET, raised after the last byte is consumed */
  endWith(err: AudioloopError): void {
    if (this.pendingError || this.destroyed) return;
    this.pendingError = err;
    this.emit('buffered');
    this.maybeFinish();
  }

  /** every consumption (paused read() or flowing mode, which calls read() too) may be the last byte */
  override read(size?: number): Buffer | null {
    const chunk = super.read(size) as Buffer | null;
    if (this.pendingError) queueMicrotask(() => this.maybeFinish());
    return chunk;
  }

  private maybeFinish(): boolean {
    if (!this.pendingError || this.readableLength > 0) return false;
    if (!this.destroyed) this.destroy(this.pendingError);
    return true;
  }
}

/** Write mode stream: writes wait for a client; ECONNRESET once the client is gone. */
class ServerWritable extends Writable {
  private failure: AudioloopError | null = null;
  private finishing = false;
  private inflight: ((e?: Error | null) => void) | null = null;

  constructor(private readonly owner: LoopServer) {
    super({ highWaterMark: 1 << 16 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.failure) {
      cb(this.failure);
      return;
    }
    this.inflight = cb;
    (this.owner.clock && !this.owner.client ? Promise.resolve() : this.owner.waitForClient()).then(
      () => {
        if (this.inflight !== cb) return;
        const s = this.owner.socket();
        if (s.write(chunk)) {
          this.inflight = null;
          cb();
        } else {
          s.once('drain', () => {
            if (this.inflight !== cb) return;
            this.inflight = null;
            cb();
          });
        }
      },
      (e: Error) => {
        if (this.inflight !== cb) return;
        this.inflight = null;
        cb(this.failure ?? e);
      },
    );
  }

  override _final(cb: (e?: Error | null) => void): void {
    const s = this.owner.socket();
    if (this.failure) {
      cb(this.failure);
      return;
    }
    // EOF tells the daemon we are done; it closes after playing out the ring
    this.finishing = true;
    s.end();
    const onClose = (): void => cb(this.failure);
    if (s.closed) onClose();
    else s.once('close', onClose);
  }

  /** @internal a TIMEOUT (waitMs) before any client: this stream ends with ETIMEDOUT, nothing of it was sent */
  timeOut(err: AudioloopError): void {
    if (this.failure || this.destroyed) return;
    this.failure = err;
    this.inflight = null;
    this.destroy(err);
  }

  /** @internal the client went away: the one error for everything queued */
  failWith(err: AudioloopError, hard: boolean): void {
    if (this.failure) return;
    if (this.writableFinished || (this.finishing && !hard)) return; // we finished first: not an error
    this.failure = err;
    const cb = this.inflight;
    this.inflight = null;
    if (cb) cb(err);
    else if (!this.writableEnded) this.destroy(err);
  }
}
