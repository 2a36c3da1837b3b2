/**
 * One loop instance: the cable between a server end (a socket speaking
 * src/protocol.ts) and a client end (a node on the sound server). This file
 * is its state machine; every state change goes through setState().
 *
 *   idle ──attach──▶ waiting ──client starts──▶ running
 *     ▲                 │                         │  client stops / sound server lost:
 *     │                 │ server closes           │    read:  deliver the ring, then EOF  (draining)
 *     │                 ▼                         │    write: RESET                        (closing)
 *     └──────────── closing ◀──── draining ◀──────┘  server closes:
 *                                                       write: play out the ring  (draining)
 *                                                       read:  (closing)
 *
 * closing ends every client stream on the node (so the session manager
 * cannot move them to another device), removes the node and closes the
 * socket; then the loop is idle and a new server may open it.
 *
 * One client session per START. "client starts" is the first client's data
 * flowing (the backend's 'client-start': a link to the node is active and
 * the client's node runs). "client stops" is the session's end: no client
 * stream has been linked to the node for clientGraceMs (the backend's
 * 'clients' list, i.e. the links). In between, within one session:
 *  - streams that link and go (GStreamer's "pulsesink probe", a player that
 *    reopens the device between tracks or for a new format, several clients
 *    at once or one after another) change nothing for the server;
 *  - every client paused (corked: 'client-stop', its links paused) is not an
 *    end either. A reading server then reads nothing (the node hears only
 *    silence, which is not kept: no data is invented), a writing server is
 *    held (the node does not run, so the ring is not drained): nothing a
 *    client played is lost or duplicated, and what arrives resumes where it
 *    paused. Except with OPEN clock=1 in read mode: the server asked for
 *    real time, so from START on the silence the node hears while no
 *    client's data flows (every client paused, the grace period) is kept
 *    (Endpoint.keepSilence) and read like PCM, on the graph's clock. Before
 *    START clock=1 is the loop's own clock (startClock).
 * Write mode, after the server's EOF: the ring is played out, then the node
 * keeps running (silence) until each recording client's own buffer (its
 * node.latency, e.g. pipewire-pulse's fragsize: 2 s for parecord's default)
 * has been filled past the last frame, so every client was handed all of it;
 * only then are the client streams ended.
 *
 * OK: sent once the node is registered on the sound server (its id known),
 * bounded by OK_WAIT_MS; every other line (TIMEOUT, SILENCE, START, RESET)
 * and the daemon's EOF come after it (sendOk); wait=MS and clock=1 count
 * from it. With the sound server away at attach, OK goes at once.
 *
 * Sound server lost: a waiting loop keeps its server and has no node until
 * the daemon reconnects and calls restore(); a server may also open while
 * the sound server is away. A running loop ends as if its client went away
 * (read mode: every captured frame is still delivered before the EOF).
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { Backend, Cable, CableFactory, ClientInfo, Endpoint, EndpointOptions } from './backend/types';
import { bytesPerSecond, frameBytes, type PcmFormat } from './format';
import { formatOk, formatReset, formatSilence, formatStart, formatTimeout, ProtocolError, type OpenRequest, type ServerMode } from './protocol';
import { silentLogger, type Logger } from './log';
import { PeakMeter } from './dsp/level';
import { grantedLatency, latencyToFrames, ringFor, type LatencyStatus } from './latency';

export type LoopState = 'idle' | 'waiting' | 'running' | 'draining' | 'closing';

/** Every legal state change (the diagram above); setState() refuses anything else. */
export const LOOP_TRANSITIONS: Readonly<Record<LoopState, readonly LoopState[]>> = {
  idle: ['waiting'],
  waiting: ['running', 'closing'],
  running: ['draining', 'closing'],
  draining: ['closing'],
  closing: ['idle'],
};

export function isLegalTransition(from: LoopState, to: LoopState): boolean {
  return LOOP_TRANSITIONS[from].includes(to);
}

/**
 * Who moves the PCM between the server's socket and the ring: `native` (the
 * cable serves the socket itself, src/backend/types.ts Cable: PCM never
 * enters JS) or `js` (the loop reads and writes the socket; the old way,
 * kept as a fallback: config key data_plane).
 */
export type DataPlane = 'native' | 'js';
export const DATA_PLANES: readonly DataPlane[] = ['native', 'js'];
export const DEFAULT_DATA_PLANE: DataPlane = 'native';

export interface LoopOptions {
  /** ring length per loop in milliseconds */
  bufferMs: number;
  /** config data_plane (default DEFAULT_DATA_PLANE); takes effect at the next open */
  dataPlane?: DataPlane;
  /** makes the cables of the native data plane (default: the backend's; none: the JS data plane) */
  cables?: () => CableFactory | null;
  /** a session ends once no client was linked for this long (config client_grace_ms; default 1000) */
  clientGraceMs?: number;
  /** node.latency of a read loop whose server did not ask latency= (config default_latency_ms; 0 or absent: none) */
  defaultLatencyMs?: number;
  /** @internal how long OK waits for the node's registration (default OK_WAIT_MS) */
  okWaitMs?: number;
  log?: Logger;
}

export interface LoopStatus {
  instance: number;
  node: string;
  state: LoopState;
  mode: ServerMode | null;
  format: PcmFormat | null;
  server: { app: string | null; pid: number | null; nonblock: boolean; since: string; waitMs: number | null; timeouts: number } | null;
  clients: ClientInfo[];
  /** PCM bytes moved between client and server since the server opened */
  bytes: number;
  xruns: number;
  xrunBytes: number;
  /** the client session (from START to its end), null before START */
  session: SessionStatus | null;
  /** peak level of each channel in dBFS (falling 20 dB/s), null when closed */
  levels: number[] | null;
  /** bytes buffered in the ring now, and its size */
  fill: number;
  size: number;
  /** bytes the daemon holds outside the ring: write mode, received from the
   *  server and not yet in the ring; read mode, queued on the server socket */
  queued: number;
  nodeId: number;
  /** requested (OPEN latency=MS) and granted (the graph's quantum) latency; null when closed */
  latency: LatencyStatus | null;
  /** OPEN clock=1: the loop's clock before START; null without clock=1 (or closed) */
  clock: ClockStatus | null;
}

export interface ClockStatus {
  /** when it started (the OK line) */
  since: string;
  /** it runs (no client has started yet); false after START */
  running: boolean;
  /** frames the clock ran: read mode, the silence frames sent in SILENCE lines; write mode, the frames of the server's data due */
  frames: number;
  /** read mode: SILENCE lines sent */
  lines: number;
  /** write mode: bytes of the server's data discarded (never played) */
  consumedBytes: number;
  /** read mode: frames due while the server did not read (its socket full) beyond a ring's worth, never sent */
  droppedFrames: number;
}

export interface SessionStatus {
  /** when the first client's data flowed (START) */
  since: string;
  /** client streams linked to the node so far (probes and reopens included) */
  streams: number;
  /** a client's data flows now (false: every client paused, or none linked) */
  flowing: boolean;
  /** no client linked: the grace period runs and the session ends at this time */
  graceUntil: string | null;
}

interface Session {
  socket: Socket;
  req: OpenRequest;
  /** the native data plane: the cable serves the socket (then `socket` is spent), null: the loop moves the PCM */
  cable: Cable | null;
  /** cable.finish() was asked for */
  finishing: boolean;
  /** the node; null while the sound server is away (waiting only) */
  ep: Endpoint | null;
  epOptions: EndpointOptions;
  frame: number;
  since: Date;
  bytes: number;
  /** write mode: received from the server, not yet in the ring */
  pending: Buffer;
  /** the server half-closed its end (write mode: no more data) */
  serverEnded: boolean;
  /** read mode: waiting for the socket to drain */
  waitDrain: boolean;
  started: boolean;
  meter: PeakMeter;
  /** START was sent at */
  sessionSince: Date | null;
  /** client streams linked to the node since the server opened, and the ones linked now */
  streams: number;
  seen: Set<number>;
  /** those the log has named */
  logged: Set<number>;
  /** no client linked since then; the session ends when graceTimer fires */
  graceSince: Date | null;
  graceTimer: NodeJS.Timeout | null;
  /** write mode after EOF: the node's frame count by which every recording client has had everything */
  drainAt: number | null;
  drainTimer: NodeJS.Timeout | null;
  /** wait=MS: the next TIMEOUT line while no client started, and how many were sent */
  waitTimer: NodeJS.Timeout | null;
  timeouts: number;
  /** the OK line; sent once (sendOk), when the node is registered, before any other line */
  okLine: string;
  okSent: boolean;
  /** the bound on the wait for the node's registration (OK_WAIT_MS) */
  okTimer: NodeJS.Timeout | null;
  /** clock=1: the loop's clock for the server before START */
  clock: ServerClock | null;
}

/** OPEN clock=1 (see Loop.clockTick) */
interface ServerClock {
  /** performance.now() at the start: every count is computed from it, so timer jitter never drifts */
  t0: number;
  since: Date;
  timer: NodeJS.Timeout | null;
  /** the tick boundary the timer is armed for (t0 + tick x CLOCK_TICK_MS) */
  tick: number;
  running: boolean;
  frames: number;
  lines: number;
  /** the JS data plane's discarded bytes (the native one counts its own: CableStats.consumed) */
  consumed: number;
  dropped: number;
}

const READ_CHUNK = 1 << 14;
/**
 * The OK line waits until the node is registered on the sound server (its
 * id known), so that a client started the moment OK arrives finds it; at
 * most this long (then OK goes anyway, with a warning).
 */
export const OK_WAIT_MS = 3000;
/** how long closing waits for a finishing cable's last line (a server that does not read) */
const CABLE_FINISH_MS = 2000;
/** the most of a recording client's own buffer the play-out waits for (a client asking for more loses the rest) */
const MAX_CLIENT_BUFFER_S = 10;
/**
 * write mode, before a client starts: what the loop reads ahead from the
 * server at most, so that it still sees the EOF of a server that goes away;
 * small, since the server is meant to be held at its socket buffer
 */
const HOLD_BYTES = 1 << 16;
/** clock=1: one tick of the loop's clock (a SILENCE line, or a consume) every this many ms */
export const CLOCK_TICK_MS = 10;
/** clock=1, read mode: a server counts as not reading once this many bytes of lines wait in the daemon */
const CLOCK_BACKLOG_BYTES = 1024;

/** whole frames due `ms` after a clock's start at `rate` Hz (computed from the start: no drift) */
export function framesDue(ms: number, rate: number): number {
  return ms <= 0 ? 0 : Math.floor((ms * rate) / 1000);
}

export class Loop extends EventEmitter {
  private _state: LoopState = 'idle';
  private s: Session | null = null;
  private readonly log: Logger;

  constructor(
    readonly instance: number,
    private readonly backend: () => Backend,
    private readonly opts: LoopOptions,
  ) {
    super();
    this.log = (opts.log ?? silentLogger).child(this.node);
  }

  /** A reloaded config: buffer_ms, default_latency_ms and data_plane take effect at the next open, client_grace_ms at the next grace period. */
  configure(o: { bufferMs: number; clientGraceMs?: number; dataPlane?: DataPlane; defaultLatencyMs?: number }): void {
    this.opts.bufferMs = o.bufferMs;
    if (o.clientGraceMs !== undefined) this.opts.clientGraceMs = o.clientGraceMs;
    if (o.defaultLatencyMs !== undefined) this.opts.defaultLatencyMs = o.defaultLatencyMs;
    if (o.dataPlane !== undefined) this.opts.dataPlane = o.dataPlane;
  }

  /** the cable factory of the native data plane, or null (the JS one) */
  private cableFactory(): CableFactory | null {
    if ((this.opts.dataPlane ?? DEFAULT_DATA_PLANE) !== 'native') return null;
    if (this.opts.cables) return this.opts.cables();
    try {
      return this.backend();
    } catch {
      return null;
    }
  }

  private get graceMs(): number {
    return this.opts.clientGraceMs ?? 1000;
  }

  get node(): string {
    return `audioloop${this.instance}`;
  }

  get state(): LoopState {
    return this._state;
  }

  /**
   * The single place the state changes; logs `from -> to` and emits 'state'.
   * An illegal change (not in LOOP_TRANSITIONS) is a bug: it is logged and
   * thrown, and the state stays as it was.
   */
  private setState(next: LoopState, why: string): void {
    const prev = this._state;
    if (prev === next) return;
    if (!isLegalTransition(prev, next)) {
      const msg = `illegal state change ${prev} -> ${next} (${why})`;
      this.log.error(msg);
      throw new Error(`${this.node}: ${msg}`);
    }
    this._state = next;
    this.log.info(`${prev} -> ${next} (${why})`);
    this.emit('state', next, prev);
  }

  /**
   * Gives the loop a server connection whose OPEN line was accepted by the
   * parser; `rest` holds any bytes that followed the line. Throws
   * ProtocolError (EBUSY, ENODEV, ...) without touching the socket.
   */
  attach(socket: Socket, req: OpenRequest, rest: Buffer): void {
    if (this._state !== 'idle' || this.s) {
      const cur = this.s?.req;
      const who = cur ? ` by ${cur.app ?? 'a server'}${cur.pid ? ` (pid ${cur.pid})` : ''}, mode=${cur.mode}` : '';
      throw new ProtocolError('EBUSY', `${this.node}: the server end is already open${who}`);
    }
    const fmt: PcmFormat = { format: req.format, rate: req.rate, channels: req.channels };
    const frame = frameBytes(fmt);
    const { ringBytes, latencyFrames } = ringFor(fmt, this.opts.bufferMs, req.latencyMs);
    const epOptions: EndpointOptions = {
      direction: req.mode === 'read' ? 'sink' : 'source',
      name: this.node,
      description: `Audioloop ${this.instance} (${req.mode === 'read' ? 'to' : 'from'} ${req.app ?? 'server'})`,
      ...fmt,
      ringBytes,
      wakeBytes: Math.max(frame, Math.min(ringBytes / 8, bytesPerSecond(fmt) / 100)),
      ...(latencyFrames !== undefined ? { latencyFrames } : {}),
      ...(latencyFrames === undefined && this.opts.defaultLatencyMs ? { defaultLatencyFrames: latencyToFrames(this.opts.defaultLatencyMs, fmt.rate) } : {}),
    };
    let ep: Endpoint | null = null;
    let cable: Cable | null = null;
    const factory = this.cableFactory();
    if (factory) {
      try {
        cable = factory.createCable({ direction: epOptions.direction, ...fmt, ringBytes, wakeBytes: epOptions.wakeBytes });
      } catch (e) {
        const err = e as { code?: string; message?: string };
        throw new ProtocolError(err.code === 'EINVAL' ? 'EINVAL' : 'ENOMEM', `${this.node}: cannot create the cable: ${err.message ?? String(e)}`);
      }
    }
    try {
      ep = this.backend().createEndpoint(epOptions, cable ?? undefined);
    } catch (e) {
      if (cable && (e as { code?: string }).code !== 'ENODEV' && (e as { code?: string }).code !== 'EPIPE') cable.close();
      const err = e as { code?: string; message?: string };
      if (err.code === 'EINVAL') throw new ProtocolError('EINVAL', `${this.node}: cannot create the node: ${err.message ?? String(e)}`);
      if (err.code !== 'ENODEV' && err.code !== 'EPIPE') {
        throw new ProtocolError('ENODEV', `${this.node}: cannot create the node: ${err.message ?? String(e)}`);
      }
      // the sound server is away: accept the server; restore() creates the node later
      this.log.warn(`the sound server is not connected; ${this.node} appears when it returns`);
    }
    if (cable) {
      try {
        cable.plug(socket, rest, HOLD_BYTES);
      } catch (e) {
        cable.close();
        ep?.destroy();
        throw new ProtocolError('EPIPE', `${this.node}: the server went away during the handshake: ${(e as Error).message}`);
      }
    }
    const s: Session = {
      socket, req, cable, finishing: false, ep: null, epOptions, frame, since: new Date(), bytes: 0, pending: rest, serverEnded: false, waitDrain: false, started: false,
      meter: new PeakMeter(fmt.format, fmt.channels), sessionSince: null, streams: 0, seen: new Set(), logged: new Set(), graceSince: null, graceTimer: null, drainAt: null, drainTimer: null,
      waitTimer: null, timeouts: 0, clock: null,
      okLine: formatOk({ instance: this.instance, node: this.node, mode: req.mode, ...fmt, frame }), okSent: false, okTimer: null,
    };
    this.s = s;
    this.setState('waiting', `server ${req.app ?? ''}${req.pid ? ` pid ${req.pid}` : ''} opened ${req.mode} ${fmt.format} ${fmt.channels}ch ${fmt.rate}Hz${req.waitMs ? ` wait=${req.waitMs}` : ''}${req.clock ? ' clock=1' : ''}`);
    // the sound server is away: OK now, the node appears when it returns (restore)
    if (!ep) this.sendOk(s, 'no sound server yet');
    if (cable) {
      this.bindCable(s, cable);
      if (ep) this.bindEndpoint(s, ep);
      return;
    }

    socket.on('error', (err) => this.log.debug(`server socket error: ${err.message}`));
    socket.on('close', () => this.onServerClosed(s));
    socket.on('end', () => this.onServerEnd(s));
    if (req.mode === 'read') {
      // nothing is expected from a reading server; keep reading to see EOF
      socket.on('data', () => undefined);
      socket.resume();
    } else {
      // The first write waits until a client starts: nothing enters the ring
      // before. But a paused socket does not see EOF, so a server that went
      // away while waiting would leave the node (and the EBUSY) behind until
      // a client came. So while waiting, keep reading up to HOLD_BYTES and
      // stop only beyond that. Residual limit: a server that writes more than
      // that before any client and then dies is only noticed once a client
      // starts (which then gets that data first).
      const hold = HOLD_BYTES;
      socket.on('data', (chunk: Buffer) => {
        s.pending = s.pending.length ? Buffer.concat([s.pending, chunk]) : chunk;
        if (this._state === 'waiting') {
          if (s.pending.length >= hold) socket.pause();
        } else {
          this.feed(s);
        }
      });
      if (s.pending.length >= hold) socket.pause();
      else socket.resume();
    }
    if (ep) this.bindEndpoint(s, ep);
  }

  /** the daemon has ended its side of the server end: no more lines go out (either data plane) */
  private lineSideEnded(s: Session): boolean {
    return s.cable ? s.finishing : s.socket.destroyed || s.socket.writableEnded;
  }

  /** a protocol line to the server on either data plane; false (logged at debug) if it could not go */
  private sendLine(s: Session, line: string, what: string): boolean {
    try {
      if (s.cable) s.cable.line(line);
      else s.socket.write(line);
      return true;
    } catch (e) {
      this.log.debug(`${what} not sent: ${(e as Error).message}`);
      return false;
    }
  }

  /**
   * The OK line, once; every other line (TIMEOUT, START, RESET) and the
   * daemon's EOF or close call this first, so OK always comes first. Sent
   * when the node is registered (awaitRegistration), when there is no node
   * to wait for (sound server away), or when something else must go out.
   * wait=MS and clock=1 count from here.
   */
  private sendOk(s: Session, why: string): void {
    if (s.okSent) return;
    s.okSent = true;
    if (s.okTimer) clearTimeout(s.okTimer);
    s.okTimer = null;
    const open = !this.lineSideEnded(s) && (!s.cable || s.cable.peer() !== 'closed');
    if (open && !this.sendLine(s, s.okLine, 'OK')) return;
    this.log.debug(`OK to the server (${why})`);
    if (this.s !== s || this._state !== 'waiting' || s.started) return;
    if (s.req.waitMs !== undefined) this.armWait(s, s.req.waitMs);
    if (s.req.clock) this.startClock(s);
  }

  /**
   * OK once `ep`'s node is registered (its id known: the PipeWire stream is
   * bound, the PulseAudio module loaded and its sink/source found), bounded
   * by OK_WAIT_MS. Before that a client naming the node would find nothing
   * (and be ended by the server-first rule).
   */
  private awaitRegistration(s: Session, ep: Endpoint): void {
    if (s.okSent) return;
    const t0 = Date.now();
    const registered = (): boolean => {
      if (s.okSent || this.s !== s || s.ep !== ep || ep.destroyed) return true;
      const id = ep.stats().nodeId;
      if (id < 0) return false;
      this.sendOk(s, `node ${id} registered after ${Date.now() - t0} ms`);
      return true;
    };
    if (registered()) return;
    const onState = (): void => {
      if (registered()) ep.off('state', onState);
    };
    ep.on('state', onState);
    const ms = this.opts.okWaitMs ?? OK_WAIT_MS;
    s.okTimer = setTimeout(() => {
      s.okTimer = null;
      ep.off('state', onState);
      if (s.okSent || this.s !== s) return;
      this.log.warn(`the node is not registered on the sound server after ${ms} ms; sending OK anyway (a client started now may not find ${this.node})`);
      this.sendOk(s, `not registered after ${ms} ms`);
    }, ms);
  }

  /**
   * wait=MS: while no client has started, a TIMEOUT line every MS (the
   * server's waiting read/write fails with ETIMEDOUT; the connection stays
   * open and the next one waits again). START ends it (onClientStart).
   */
  private armWait(s: Session, ms: number): void {
    s.waitTimer = setTimeout(() => {
      s.waitTimer = null;
      if (this.s !== s || this._state !== 'waiting') return;
      if (this.lineSideEnded(s)) return;
      this.sendOk(s, 'TIMEOUT');
      s.timeouts++;
      this.log.info(`no client started within ${ms} ms (wait=${ms}): TIMEOUT ${s.timeouts} to the server`);
      if (!this.sendLine(s, formatTimeout(ms), 'TIMEOUT')) return;
      this.armWait(s, ms);
    }, ms);
  }

  /**
   * clock=1: until START the loop's clock runs for the server, so that a
   * network server keeps sending and receiving in real time while no client
   * plays (the seed's wait "may last forever"). Ticks every CLOCK_TICK_MS;
   * what is due is counted from the start on the monotonic clock.
   */
  private startClock(s: Session): void {
    s.clock = { t0: performance.now(), since: new Date(), timer: null, tick: 0, running: true, frames: 0, lines: 0, consumed: 0, dropped: 0 };
    this.log.info(
      `clock=1: the loop's clock runs until a client starts (${s.req.mode === 'read' ? 'SILENCE lines to the server' : "the server's data is consumed"} at ${s.req.rate} Hz)`,
    );
    this.armClock(s);
  }

  private armClock(s: Session): void {
    const c = s.clock;
    if (!c || !c.running) return;
    // the next tick boundary after the last one and after now (after a stall
    // of the event loop: at once, and one tick covers it all); a timer that
    // fires a little early (libuv's cached ms) only sends less this tick
    const elapsed = performance.now() - c.t0;
    c.tick = Math.max(c.tick + 1, Math.floor(elapsed / CLOCK_TICK_MS) + 1);
    c.timer = setTimeout(() => {
      c.timer = null;
      this.clockTick(s);
      this.armClock(s);
    }, Math.max(0, Math.ceil(c.tick * CLOCK_TICK_MS - elapsed)));
  }

  /** the clock stops for good (START, or the session's end); START calls clockTick first */
  private stopClock(s: Session): void {
    const c = s.clock;
    if (!c) return;
    if (c.timer) clearTimeout(c.timer);
    c.timer = null;
    c.running = false;
  }

  /**
   * One tick: the frames due since the start, minus those accounted for.
   * Read mode: `SILENCE frames=N` (N > 0) to the server; while it does not
   * read (lines wait in the daemon) nothing is sent, and what is due beyond
   * a ring's worth is dropped (an overrun, as the ring would after START).
   * Write mode: that many frames of what the server sent are consumed
   * (discarded); a server behind the clock is not owed them. After the
   * server's EOF the loop ends once everything it sent was consumed.
   */
  private clockTick(s: Session): void {
    const c = s.clock;
    if (!c || !c.running || this.s !== s || this._state !== 'waiting') return;
    const due = framesDue(performance.now() - c.t0, s.req.rate);
    const n = due - c.frames;
    if (s.req.mode === 'read') {
      if (n <= 0) return;
      if (this.lineSideEnded(s)) return;
      const backlog = s.cable ? s.cable.stats().queued : s.socket.writableLength;
      if (backlog > CLOCK_BACKLOG_BYTES) {
        const keep = Math.floor(s.epOptions.ringBytes / s.frame);
        if (n > keep) {
          c.dropped += n - keep;
          c.frames += n - keep;
        }
        return;
      }
      this.sendOk(s, 'SILENCE');
      if (!this.sendLine(s, formatSilence(n), 'SILENCE')) return;
      c.frames = due;
      c.lines++;
      return;
    }
    if (n > 0) {
      c.frames = due;
      this.consume(s, n * s.frame);
    }
    if (s.serverEnded && this.heldBytes(s) < s.frame) void this.close(s, 'the server finished writing and the clock consumed everything it wrote (clock=1, no client)');
  }

  /** write mode, clock=1: discards up to `bytes` (whole frames) of what the server sent */
  private consume(s: Session, bytes: number): void {
    if (s.cable) {
      try {
        s.cable.consume(bytes);
      } catch (e) {
        this.log.debug(`consume: ${(e as Error).message}`);
      }
      return;
    }
    const whole = s.pending.length - (s.pending.length % s.frame);
    const take = Math.min(bytes - (bytes % s.frame), whole);
    if (take > 0) {
      s.pending = s.pending.subarray(take);
      s.clock!.consumed += take;
    }
    if (!s.serverEnded && !s.socket.destroyed && s.pending.length < HOLD_BYTES) s.socket.resume();
  }

  /** write mode: bytes received from the server and not in the ring (nor consumed) */
  private heldBytes(s: Session): number {
    return s.cable ? s.cable.stats().queued : s.pending.length;
  }

  /** The native data plane: the cable's events drive the session. */
  private bindCable(s: Session, cable: Cable): void {
    cable.on('first', () => this.s === s && this.log.debug('first PCM crossed the server socket'));
    cable.on('eof', () => {
      if (this.s !== s) return;
      if (s.req.mode === 'write') this.onServerEnd(s);
      else void this.close(s, 'the server closed');
    });
    // informational: the play-out (playOut) counts from the EOF, when every byte the server sent is in the ring
    cable.on('drained', () => this.s === s && this.log.debug('play-out: the ring ran empty'));
    cable.on('finished', () => {
      if (this.s !== s || this._state !== 'draining' || s.req.mode !== 'read') return;
      // read mode: everything in flight delivered, then EOF (the server's ECONNRESET)
      void this.close(s, 'delivered everything to the server');
    });
    cable.on('error', (err: Error) => {
      this.log.debug(`server socket error: ${err.message}`);
      if (this.s === s) this.onServerClosed(s);
    });
  }

  /** Makes `ep` the session's node and follows its events. */
  private bindEndpoint(s: Session, ep: Endpoint): void {
    s.ep = ep;
    ep.on('client-start', () => s.ep === ep && this.onClientStart(s));
    ep.on('client-stop', () => s.ep === ep && this.onClientPaused(s));
    ep.on('clients', (list: ClientInfo[]) => {
      if (s.ep !== ep) return;
      // every stream linked to the node since the server opened (a probe
      // before START included); PipeWire reuses ids, so count arrivals
      this.countStreams(s, list);
      this.onLinksChanged(s);
    });
    ep.on('error', (err: Error) => s.ep === ep && this.onClientGone(s, `the sound server failed: ${err.message}`));
    ep.on('readable', () => s.ep === ep && this.pump(s));
    ep.on('writable', () => s.ep === ep && this.feed(s));
    this.awaitRegistration(s, ep);
    if (ep.clientActive) this.onClientStart(s);
  }

  /**
   * After the sound server came back (the daemon reconnected): a waiting
   * server whose node went with the old connection gets a new one.
   * Returns true if a node was created.
   */
  restore(): boolean {
    const s = this.s;
    if (!s || this._state !== 'waiting' || (s.ep && !s.ep.destroyed)) return false;
    try {
      const ep = this.backend().createEndpoint(s.epOptions, s.cable ?? undefined);
      this.bindEndpoint(s, ep);
      this.log.info(`node recreated on the sound server (id ${ep.stats().nodeId})`);
      return true;
    } catch (e) {
      this.log.warn(`cannot recreate the node yet: ${(e as Error).message}`);
      return false;
    }
  }

  /**
   * A new server asks for this loop: is the current one's end still there?
   * The native cable hears a server's EOF on its own thread, so a server
   * that closed and opens again at once can be heard before its EOF: look
   * now, and end (read) or drain (write) as the EOF would.
   */
  probeServer(): void {
    const s = this.s;
    if (!s?.cable || this._state === 'closing' || s.cable.peer() === 'open') return;
    if (s.req.mode === 'read') void this.close(s, 'the server closed');
    else this.onServerEnd(s);
  }

  /** A client's data flows: START (the session begins), or a paused session resumes. */
  private onClientStart(s: Session): void {
    if (this.s !== s) return;
    if (this._state !== 'waiting') {
      if (this._state === 'running' || this._state === 'draining') {
        this.log.info(`session: client data flows again (${describeClients(s.ep?.clients() ?? [])})`);
        this.onLinksChanged(s);
      }
      return;
    }
    s.started = true;
    this.sendOk(s, 'START');
    s.sessionSince = new Date();
    if (s.waitTimer) clearTimeout(s.waitTimer);
    s.waitTimer = null;
    if (s.clock?.running) {
      // what is due up to now, then the clock stops: from START on PCM flows
      this.clockTick(s);
      this.stopClock(s);
      const cl = s.clock;
      this.log.info(
        `clock=1: stopped at START after ${cl.frames} frames (${(cl.frames / s.req.rate).toFixed(3)} s)` +
          (s.req.mode === 'read' ? ` in ${cl.lines} SILENCE lines` : `, ${this.clockConsumed(s)} bytes of the server's data consumed`),
      );
    }
    const clients = s.ep?.clients() ?? [];
    const c = clients[0];
    const start = formatStart({ app: c?.appName ?? c?.name ?? null, pid: c?.pid ?? null });
    if (s.cable) s.cable.start(start);
    else s.socket.write(start);
    // clock=1, read mode: from START on the graph is the clock; what the node hears
    // while no client's data flows (grace period, every client paused) is kept
    if (s.req.clock && s.req.mode === 'read') s.ep?.keepSilence(true);
    this.setState('running', `client ${c?.appName ?? c?.name ?? '?'} started`);
    this.onLinksChanged(s);
    if (s.req.mode === 'read') this.pump(s);
    else this.feed(s);
    // clock=1: the server finished writing before a client started; what the clock left is played out
    if (s.req.mode === 'write' && s.serverEnded && this.s === s && (this._state as LoopState) === 'running') this.onServerEnd(s);
  }

  /** clock=1, write mode: bytes of the server's data discarded so far */
  private clockConsumed(s: Session): number {
    return s.cable ? s.cable.stats().consumed : s.clock?.consumed ?? 0;
  }

  /** Every client paused (corked) or gone: not an end of the session; the links decide that. */
  private onClientPaused(s: Session): void {
    if (this.s !== s || (this._state !== 'running' && this._state !== 'draining')) return;
    const linked = s.ep?.clients() ?? [];
    if (linked.length > 0) {
      this.log.info(
        `session: every client paused (${describeClients(linked)}); ` +
          (s.req.mode === 'read' ? 'the server reads nothing until one resumes' : 'the server is held until one resumes'),
      );
    }
    // a sink may still hold data captured before the pause (below the cable's wake-up size too)
    if (s.req.mode === 'read') {
      if (s.cable) s.cable.kick();
      else this.pump(s);
    }
    this.onLinksChanged(s);
  }

  /**
   * The client streams linked to the node changed. Within a running session:
   * none left starts the grace period, one linking again ends it.
   */
  private onLinksChanged(s: Session): void {
    if (this.s !== s || !s.ep || s.ep.destroyed || !s.sessionSince) return;
    if (this._state !== 'running' && !(this._state === 'draining' && s.req.mode === 'write')) return;
    const linked = s.ep.clients();
    for (const c of linked) {
      if (s.logged.has(c.nodeId)) continue;
      s.logged.add(c.nodeId);
      if (s.streams > 1) this.log.info(`session: client ${describeClients([c])} linked (stream ${s.streams} on the node)`);
    }
    for (const id of [...s.logged]) if (!linked.some((c) => c.nodeId === id)) s.logged.delete(id);
    if (linked.length === 0 && !s.graceTimer) {
      const ms = this.graceMs;
      s.graceSince = new Date();
      this.log.info(`session: no client linked; it ends in ${ms} ms unless one links (client_grace_ms)`);
      s.graceTimer = setTimeout(() => {
        s.graceTimer = null;
        if (this.s === s) this.onClientGone(s, `no client linked for ${ms} ms`);
      }, ms);
    } else if (linked.length > 0 && s.graceTimer) {
      const after = s.graceSince ? Date.now() - s.graceSince.getTime() : 0;
      clearTimeout(s.graceTimer);
      s.graceTimer = null;
      s.graceSince = null;
      this.log.info(`session: ${describeClients(linked)} linked after ${after} ms without a client: the same session goes on`);
    }
  }

  private countStreams(s: Session, list: readonly ClientInfo[]): void {
    const now = new Set(list.map((c) => c.nodeId));
    for (const id of now) if (!s.seen.has(id)) s.streams++;
    s.seen = now;
  }

  private clearTimers(s: Session): void {
    if (s.graceTimer) clearTimeout(s.graceTimer);
    if (s.drainTimer) clearTimeout(s.drainTimer);
    if (s.waitTimer) clearTimeout(s.waitTimer);
    if (s.okTimer) clearTimeout(s.okTimer);
    s.okTimer = null;
    s.graceTimer = null;
    s.drainTimer = null;
    s.waitTimer = null;
    this.stopClock(s);
  }

  /** The client side is gone: ECONNRESET for the server, after what is in flight. */
  private onClientGone(s: Session, why: string): void {
    if (this.s !== s || !s.ep) return;
    const failed = s.ep.destroyed; // the sound server went away
    if (this._state === 'waiting') {
      if (failed) {
        // no client had started: keep the server; the node comes back with the sound server
        s.ep.removeAllListeners();
        s.ep = null;
        this.log.warn(`${why}; keeping the server waiting until the sound server returns`);
        this.sendOk(s, 'the sound server went away');
      }
      return;
    }
    if (this._state !== 'running' && !(this._state === 'draining' && s.req.mode === 'write')) return;
    this.clearTimers(s);
    this.sendOk(s, 'the session ends');
    if (s.req.mode === 'read') {
      // deliver what was captured (also what a failed sound server left in the ring)
      if (s.req.clock && !s.ep.destroyed) s.ep.keepSilence(false); // the session's end: no more silence after it
      this.setState('draining', why);
      if (s.cable) this.finishCable(s, null, true);
      else this.pump(s);
      return;
    }
    // write mode: what was not played (ring, pending, a client's unfilled buffer) is not delivered
    if (s.cable) this.finishCable(s, formatReset(), false);
    else if (!s.socket.destroyed && !s.socket.writableEnded) s.socket.end(formatReset());
    void this.close(s, why);
  }

  /** cable.finish() once; a cable whose socket failed has nothing to finish */
  private finishCable(s: Session, line: string | null, drain: boolean): void {
    const cable = s.cable;
    if (!cable || s.finishing) return;
    s.finishing = true;
    try {
      cable.finish(line, drain);
    } catch (e) {
      this.log.debug(`finishing the server socket: ${(e as Error).message}`);
      if (drain && this.s === s) void this.close(s, 'the server socket is gone');
    }
  }

  /** write mode: the server finished writing (EOF on its socket). */
  private onServerEnd(s: Session): void {
    if (this.s !== s) return;
    s.serverEnded = true;
    if (s.req.mode === 'write' && this._state === 'running') {
      this.setState('draining', 'the server finished writing');
      if (s.cable) this.playOut(s);
      else this.feed(s);
    } else if (this._state === 'waiting' && s.req.mode === 'write' && s.clock?.running) {
      // clock=1: what it sent is consumed in real time first (clockTick ends the loop then)
      this.log.info(`the server finished writing; the clock consumes the ${this.heldBytes(s)} bytes it still holds`);
      this.clockTick(s);
    } else if (this._state === 'waiting' || this._state === 'running') {
      void this.close(s, 'the server closed its end');
    }
  }

  private onServerClosed(s: Session): void {
    if (this.s !== s) return;
    if (this._state === 'draining' && s.req.mode === 'write' && s.serverEnded) return; // play out first
    void this.close(s, 'the server closed');
  }

  /** read mode: ring -> socket, as far as the socket takes it (the JS data plane) */
  private pump(s: Session): void {
    const ep = s.ep;
    if (this.s !== s || s.req.mode !== 'read' || !ep || s.cable) return;
    if (this._state !== 'running' && this._state !== 'draining') return;
    while (!s.socket.destroyed && s.socket.writable) {
      if (s.socket.writableNeedDrain) {
        if (!s.waitDrain) {
          s.waitDrain = true;
          s.socket.once('drain', () => {
            s.waitDrain = false;
            this.pump(s);
          });
        }
        return;
      }
      const buf = Buffer.allocUnsafe(READ_CHUNK - (READ_CHUNK % s.frame));
      const n = ep.read(buf); // a failed endpoint hands out what it had captured, then 0
      if (n === 0) break;
      s.bytes += n;
      const out = n === buf.length ? buf : buf.subarray(0, n);
      s.meter.update(out);
      s.socket.write(out);
    }
    if (this._state === 'draining' && ep.stats().fill === 0) {
      // all data in flight delivered: EOF tells the server ECONNRESET
      s.socket.end();
      void this.close(s, 'delivered everything to the server');
    }
  }

  /** write mode: pending server data -> ring; the socket is paused while the ring is full (the JS data plane) */
  private feed(s: Session): void {
    const ep = s.ep;
    if (this.s !== s || s.req.mode !== 'write' || !ep || ep.destroyed) return;
    if (this._state !== 'running' && this._state !== 'draining') return;
    if (s.cable) {
      // the cable moves the data; a wake-up here is the play-out's (Endpoint.wakeAfter)
      if (this._state === 'draining') this.playOut(s);
      return;
    }
    while (s.pending.length >= s.frame) {
      const n = ep.write(s.pending);
      s.bytes += n;
      if (n > 0) s.meter.update(s.pending.subarray(0, n));
      s.pending = s.pending.subarray(n);
      if (s.pending.length >= s.frame) {
        s.socket.pause(); // 'writable' resumes us
        return;
      }
    }
    if (!s.serverEnded) {
      s.socket.resume();
    } else if (this._state === 'draining') {
      void this.playOut(s);
    }
  }

  /**
   * write mode after the server's EOF, every byte in the ring: event-driven
   * play-out. The node runs on (silence once the ring is empty) until the
   * graph has taken the ring, plus the largest recording client's own buffer
   * (its node.latency: pipewire-pulse hands a recording client its data only
   * in whole fragments, 2 s for parecord's default), plus two quanta; the
   * backend wakes us when that many frames have gone (Endpoint.wakeAfter).
   * Bounded: a client buffer beyond MAX_CLIENT_BUFFER_S counts as that much,
   * and a node that stops running (every client paused) is given up on
   * after the expected time plus 5 s, both logged.
   */
  private playOut(s: Session): void {
    const ep = s.ep;
    if (this.s !== s || !ep || ep.destroyed || this._state !== 'draining') return;
    const st = ep.stats();
    if (s.cable) st.fill = s.cable.stats().fill;
    const margin = 2 * Math.max(st.quantum, 1024);
    if (s.drainAt === null) {
      let clientS = 0;
      let who = '';
      for (const c of ep.clients()) {
        if (c.latency !== null && c.latency > clientS) {
          clientS = c.latency;
          who = describeClients([c]);
        }
      }
      if (clientS > MAX_CLIENT_BUFFER_S) {
        this.log.warn(`play-out: ${who} buffers ${clientS.toFixed(3)} s; waiting for ${MAX_CLIENT_BUFFER_S} s of it only`);
        clientS = MAX_CLIENT_BUFFER_S;
      }
      const frames = st.fill / s.frame + Math.ceil(clientS * s.req.rate) + margin;
      s.drainAt = st.frames + frames;
      ep.wakeAfter(frames);
      this.log.info(
        `play-out: ${st.fill / s.frame} frames in the ring, then ${clientS.toFixed(3)} s for the clients' buffers` +
          `${who ? ` (${who})` : ''} and ${margin} frames of margin: ${((frames * 1000) / s.req.rate).toFixed(0)} ms`,
      );
      const limit = Math.ceil((frames * 1000) / s.req.rate) + 5000;
      s.drainTimer = setTimeout(() => {
        s.drainTimer = null;
        if (this.s !== s || this._state !== 'draining') return;
        this.log.warn(`play-out: the node did not run out ${frames} frames within ${limit} ms (clients paused?); ending`);
        void this.close(s, 'gave up playing out to paused clients');
      }, limit);
      return;
    }
    if (st.frames < s.drainAt) return;
    if (st.fill > 0) {
      // not all of the ring went (cannot be short of a bug): wait for it, once more with margin
      s.drainAt = st.frames + st.fill / s.frame + margin;
      ep.wakeAfter(st.fill / s.frame + margin);
      return;
    }
    void this.close(s, 'played out everything the server wrote; every recording client has had it');
  }

  /** Ends client streams, removes the node, closes the socket; idempotent per session. */
  private async close(s: Session, why: string): Promise<void> {
    if (this.s !== s || this._state === 'closing') return;
    this.clearTimers(s);
    this.setState('closing', why);
    if (!s.okSent) {
      // the server still waits for OK: it gets it, then the daemon's EOF
      this.sendOk(s, 'closing');
      if (s.cable) this.finishCable(s, null, false);
      else if (!s.socket.destroyed && !s.socket.writableEnded) s.socket.end();
    }
    const ep = s.ep;
    try {
      if (ep && !ep.destroyed) await ep.disconnectClients();
    } catch (e) {
      this.log.warn(`ending client streams failed: ${(e as Error).message}`);
    }
    ep?.destroy();
    ep?.removeAllListeners();
    if (s.cable) {
      await this.closeCable(s, s.cable);
    } else if (!s.socket.destroyed) {
      if (s.socket.writableEnded) s.socket.destroySoon();
      else s.socket.destroy();
    }
    this.s = null;
    this.setState('idle', 'closed');
  }

  /**
   * Closes the server's socket; a finish asked for (RESET, or a read
   * server's EOF after the ring) goes out first: 'finished' is awaited,
   * bounded by CABLE_FINISH_MS (a server that does not read).
   */
  private async closeCable(s: Session, cable: Cable): Promise<void> {
    const st = cable.stats();
    if (s.finishing && st.open && !st.finished && !st.failed) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(t);
          cable.off('finished', done);
          cable.off('error', done);
          resolve();
        };
        const t = setTimeout(() => {
          this.log.warn(`the server did not take the last ${cable.stats().queued} bytes within ${CABLE_FINISH_MS} ms; closing`);
          done();
        }, CABLE_FINISH_MS);
        cable.on('finished', done);
        cable.on('error', done);
      });
    }
    cable.close();
    cable.removeAllListeners();
  }

  /** Closes whatever is open (daemon shutdown); resolves when idle. */
  async shutdown(): Promise<void> {
    const s = this.s;
    if (!s) return;
    if (this._state === 'closing') {
      await new Promise<void>((r) => this.once('state', (st: LoopState) => st === 'idle' && r()));
      return;
    }
    if (s.req.mode === 'write') {
      this.sendOk(s, 'RESET');
      if (s.cable) this.finishCable(s, formatReset(), false);
      else if (!s.socket.destroyed) s.socket.end(formatReset());
    }
    await this.close(s, 'the daemon is stopping');
  }

  status(): LoopStatus {
    const s = this.s;
    const st = s?.ep?.stats();
    const cs = s?.cable?.stats();
    const linked = s?.ep && !s.ep.destroyed ? s.ep.clients() : [];
    // the graph mirror may be ahead of the 'clients' event: count what is linked now too
    if (s) this.countStreams(s, linked);
    return {
      instance: this.instance,
      node: this.node,
      state: this._state,
      mode: s?.req.mode ?? null,
      format: s ? { format: s.req.format, rate: s.req.rate, channels: s.req.channels } : null,
      server: s
        ? { app: s.req.app ?? null, pid: s.req.pid ?? null, nonblock: s.req.nonblock, since: s.since.toISOString(), waitMs: s.req.waitMs ?? null, timeouts: s.timeouts }
        : null,
      clients: linked,
      session:
        s?.sessionSince
          ? {
              since: s.sessionSince.toISOString(),
              streams: s.streams,
              flowing: !!s.ep && !s.ep.destroyed && s.ep.clientActive,
              graceUntil: s.graceSince ? new Date(s.graceSince.getTime() + this.graceMs).toISOString() : null,
            }
          : null,
      bytes: cs ? cs.bytes : s?.bytes ?? 0,
      xruns: st?.xruns ?? 0,
      xrunBytes: st?.xrunBytes ?? 0,
      levels: cs ? cs.levels : s ? s.meter.levelsDb() : null,
      fill: (cs && st?.size ? cs.fill : st?.fill) ?? 0,
      size: st?.size ?? 0,
      queued: cs ? cs.queued : s ? (s.req.mode === 'write' ? s.pending.length : s.socket.writableLength) : 0,
      nodeId: st?.nodeId ?? -1,
      latency: s ? grantedLatency(s.req, st?.quantum ?? 0, s.ep?.options.latencyFrames ?? null) : null,
      clock: s?.clock
        ? {
            since: s.clock.since.toISOString(),
            running: s.clock.running,
            frames: s.clock.frames,
            lines: s.clock.lines,
            consumedBytes: this.clockConsumed(s),
            droppedFrames: s.clock.dropped,
          }
        : null,
    };
  }
}

/** `paplay (pid 12), pw-record`: the client streams for a log line */
function describeClients(list: readonly ClientInfo[]): string {
  return list.length ? list.map((c) => `${c.appName ?? c.name ?? '?'}${c.pid ? ` (pid ${c.pid})` : ''}`).join(', ') : 'none';
}
