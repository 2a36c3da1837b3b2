/**
 * The native cable (native/cable.c) behind the Cable contract: once
 * plugged, the I/O thread serves a dup of the server socket's fd and the JS
 * socket is destroyed, so PCM never enters JS; this object only passes the
 * protocol lines down and the data events up. Needs the addon, not a
 * sound-server connection.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { loadNative, type CableEventKind, type CableHandle, type NativeBinding } from '../native';
import { errnoError, makeError } from '../errors';
import type { Cable, CableFactory, CableOptions, CableStats } from './types';

export class NativeCable extends EventEmitter implements Cable {
  readonly options: Readonly<CableOptions>;
  /** @internal for streamCreate */
  readonly handle: CableHandle;
  private closed = false;

  constructor(private readonly native: NativeBinding, opts: CableOptions) {
    super();
    this.options = Object.freeze({ ...opts });
    const res = native.cableCreate(
      {
        direction: opts.direction,
        format: opts.format,
        rate: opts.rate,
        channels: opts.channels,
        ringBytes: opts.ringBytes,
        ...(opts.wakeBytes !== undefined ? { wakeBytes: Math.floor(opts.wakeBytes) } : {}),
      },
      (kind, err) => this.onEvent(kind, err),
    );
    if (typeof res === 'number') throw errnoError(res, 'cableCreate', `cannot create the cable: ${native.strerror(res)}`);
    this.handle = res;
  }

  plug(socket: Socket, rest: Buffer, hold: number): void {
    if (this.closed) throw makeError('EBADF', 'plug', 'the cable is closed');
    // what Node has read from the socket already comes first (a read() in
    // paused mode hands it out; nothing more is read before destroy below)
    const parts = rest.length ? [rest] : [];
    for (let b = socket.read() as Buffer | null; b !== null; b = socket.read() as Buffer | null) parts.push(b);
    const fd = (socket as unknown as { _handle?: { fd?: number } | null })._handle?.fd;
    if (socket.destroyed || typeof fd !== 'number' || fd < 0) throw makeError('EBADF', 'plug', 'the server socket is gone');
    const res = this.native.cablePlug(this.handle, fd, parts.length ? Buffer.concat(parts) : null, Math.max(0, Math.floor(hold)));
    if (res < 0) throw errnoError(res, 'plug');
    // the cable serves its own dup from now on: libuv must neither read it nor shut it down
    socket.removeAllListeners('data');
    socket.removeAllListeners('end');
    socket.destroy();
  }

  line(text: string): void {
    this.check(this.native.cableLine(this.handle, text), 'line');
  }

  start(line: string): void {
    this.check(this.native.cableStart(this.handle, line), 'start');
  }

  finish(line: string | null, drain: boolean): void {
    this.check(this.native.cableFinish(this.handle, line, drain), 'finish');
  }

  kick(): void {
    if (!this.closed) this.native.cableLine(this.handle, '');
  }

  consume(bytes: number): void {
    if (this.closed) throw makeError('EBADF', 'consume', 'the cable is closed');
    this.check(this.native.cableConsume(this.handle, Math.max(0, Math.min(0xffffffff, Math.floor(bytes)))), 'consume');
  }

  stats(): CableStats {
    const st = this.native.cableStats(this.handle);
    return {
      fill: st.fill,
      size: st.size,
      bytes: st.fdBytes,
      queued: st.queued,
      consumed: st.consumed,
      open: st.fdOpen,
      eof: st.eof,
      finished: st.finished,
      failed: st.failed,
      // rounded like PeakMeter.levelsDb (src/dsp/level.ts)
      levels: st.levels.map((l) => Math.round(l * 10) / 10),
    };
  }

  peer(): 'open' | 'eof' | 'closed' {
    if (this.closed) return 'closed';
    const r = this.native.cablePeer(this.handle);
    return r === 0 ? 'open' : r === 1 ? 'eof' : 'closed';
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.cableClose(this.handle);
  }

  private check(res: number, call: string): void {
    if (res < 0) throw errnoError(res, call);
  }

  private onEvent(kind: CableEventKind, err: number): void {
    if (this.closed) return;
    if (kind === 'error') this.emit('error', errnoError(err, 'send', `the server socket failed: ${this.native.strerror(err)}`));
    else this.emit(kind);
  }
}

/** Cables without a sound-server connection (a server that opens while none is connected). */
export const nativeCables: CableFactory = {
  createCable: (opts) => new NativeCable(loadNative(), opts),
};
