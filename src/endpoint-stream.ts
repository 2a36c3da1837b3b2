/**
 * Node streams over an Endpoint. This layer never touches native code: it
 * only sees the Endpoint contract (src/backend/types.ts).
 */
import { Readable, Writable } from 'node:stream';
import type { Endpoint } from './backend/types';
import { frameBytes } from './format';
import { makeError } from './errors';

export interface EndpointReadableOptions {
  /** end the stream (push null) once the client stops and the ring is drained */
  endOnClientStop?: boolean;
  /** bytes per read from the ring (default: 1/4 of the ring) */
  chunkBytes?: number;
}

/** Reads what clients play into a sink endpoint. */
export class EndpointReadable extends Readable {
  private waiting = false;
  private readonly chunk: number;
  private readonly onReadable = (): void => {
    if (this.waiting) {
      this.waiting = false;
      this.pump();
    }
  };
  private readonly onStop = (): void => {
    if (this.endOnStop) this.onReadable();
  };
  private readonly onError = (err: Error): void => {
    this.destroy(err);
  };
  private readonly endOnStop: boolean;
  private started = false;

  constructor(private readonly ep: Endpoint, opts: EndpointReadableOptions = {}) {
    super({ highWaterMark: 1 << 16 });
    if (ep.options.direction !== 'sink') throw makeError('EINVAL', 'read', 'a readable needs a sink endpoint');
    const fb = frameBytes(ep.options);
    const want = opts.chunkBytes ?? Math.max(4096, ep.stats().size / 4);
    this.chunk = Math.max(fb, want - (want % fb));
    this.endOnStop = opts.endOnClientStop ?? false;
    ep.on('readable', this.onReadable);
    ep.on('client-stop', this.onStop);
    ep.on('client-start', () => (this.started = true));
    ep.on('error', this.onError);
  }

  override _read(): void {
    this.pump();
  }

  private pump(): void {
    if (this.ep.destroyed) {
      this.push(null);
      return;
    }
    for (;;) {
      const buf = Buffer.allocUnsafe(this.chunk);
      const n = this.ep.read(buf);
      if (n === 0) {
        if (this.endOnStop && this.started && !this.ep.clientActive) {
          this.push(null);
          return;
        }
        this.waiting = true;
        return;
      }
      if (!this.push(n === buf.length ? buf : buf.subarray(0, n))) return;
    }
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.ep.off('readable', this.onReadable);
    this.ep.off('client-stop', this.onStop);
    this.ep.off('error', this.onError);
    cb(err);
  }
}

/** Writes PCM into a source endpoint; clients record it. */
export class EndpointWritable extends Writable {
  private carry: Buffer = Buffer.alloc(0);
  private resume: (() => void) | null = null;
  private readonly onWritable = (): void => {
    const r = this.resume;
    this.resume = null;
    if (r) r();
  };
  private readonly onError = (err: Error): void => {
    this.destroy(err);
  };

  constructor(private readonly ep: Endpoint) {
    super({ highWaterMark: 1 << 16 });
    if (ep.options.direction !== 'source') throw makeError('EINVAL', 'write', 'a writable needs a source endpoint');
    ep.on('writable', this.onWritable);
    ep.on('error', this.onError);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    let data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const fb = frameBytes(this.ep.options);
    const whole = data.length - (data.length % fb);
    this.carry = Buffer.from(data.subarray(whole));
    data = data.subarray(0, whole);
    const step = (): void => {
      if (this.ep.destroyed) {
        cb(makeError('EPIPE', 'write', 'the endpoint was destroyed'));
        return;
      }
      try {
        const n = this.ep.write(data);
        data = data.subarray(n);
      } catch (e) {
        cb(e as Error);
        return;
      }
      if (data.length === 0) cb();
      else this.resume = step;
    };
    step();
  }

  /**
   * Resolves once every byte written has left the ring: the endpoint wakes
   * us ('writable') once the node has moved as many frames as the ring
   * held; a node that is destroyed meanwhile ends it too.
   */
  override _final(cb: (e?: Error | null) => void): void {
    const fb = frameBytes(this.ep.options);
    const onDestroyed = (): void => check();
    const check = (): void => {
      const fill = this.ep.destroyed ? 0 : this.ep.stats().fill;
      if (fill === 0) {
        this.ep.off('destroyed', onDestroyed);
        this.resume = null;
        cb();
        return;
      }
      this.resume = check;
      this.ep.wakeAfter(Math.ceil(fill / fb));
    };
    this.ep.once('destroyed', onDestroyed);
    check();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.ep.off('writable', this.onWritable);
    this.ep.off('error', this.onError);
    cb(err);
  }
}
