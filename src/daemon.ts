/**
 * The daemon: one listening unix socket per loop instance plus a control
 * socket, all in a private directory (0700). Each connection on a loop
 * socket sends one OPEN line (src/protocol.ts); the loop takes it from there.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { EventEmitter } from 'node:events';
import type { Backend, CableFactory } from './backend/types';
import type { AudioloopConfig } from './config';
import { errnoOf, makeError } from './errors';
import { DEFAULT_DATA_PLANE, Loop, type LoopStatus } from './loop';
import { silentLogger, type Logger } from './log';
import { parseMetricsLine } from './bridge/metrics';
import { controlSocketPath, formatErr, LineReader, loopSocketPath, parseOpen, ProtocolError, PROTOCOL_VERSION, type OpenRequest } from './protocol';
import { isResampled, readGraphSettings, type GraphSettings } from './graph';

export interface DaemonOptions {
  config: AudioloopConfig;
  socketDir: string;
  /** connects to the sound server; called again after it was lost */
  connect: () => Backend;
  log?: Logger;
  /** how long a new connection may take to send its OPEN line */
  handshakeTimeoutMs?: number;
  /** reads the config again for reload() (SIGHUP); throws ConfigError on a bad file */
  reloadConfig?: () => AudioloopConfig;
  /** cables for a server that opens before the sound server was ever connected (the native data plane; default: the backend's) */
  cables?: CableFactory;
}

export interface DaemonStatus {
  version: number;
  pid: number;
  socketDir: string;
  soundServer: { backend: string; connected: boolean };
  /** `bridge`: the last METRICS report of a bridge on that loop (src/bridge/metrics.ts) */
  loops: (LoopStatus & { retiring?: boolean; bridge?: Record<string, unknown>; graph?: LoopGraph })[];
  /** the PipeWire graph's clock settings (null when they cannot be read) */
  graph?: GraphSettings | null;
}

/** a loop's rate against the graph's: resampled when the graph may not run at the loop's rate */
export interface LoopGraph {
  rate: number;
  allowedRates: number[];
  resampled: boolean;
}

export interface ReloadResult {
  added: number[];
  /** removed from the config; idle ones are gone, active ones go when their server closes */
  removed: number[];
  /** the settings that only a restart changes */
  ignored: string[];
}

export class Daemon extends EventEmitter {
  /** by instance number; a removed instance stays here until its loop is idle */
  private readonly loops = new Map<number, Loop>();
  /** the listening socket of each instance in the config */
  private readonly sockets = new Map<number, net.Server>();
  /** instances removed by a reload whose loop was still active */
  private readonly retiring = new Set<number>();
  private control: net.Server | null = null;
  private config: AudioloopConfig;
  private readonly conns = new Set<net.Socket>();
  private backend: Backend | null = null;
  /** the last backend, after it was lost: its cables need no connection */
  private lastBackend: Backend | null = null;
  private readonly log: Logger;
  private stopping = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** METRICS reports, per control connection (dropped when it closes) */
  private readonly metrics = new Map<net.Socket, { instance: number; metrics: Record<string, unknown> }>();
  /** the graph's clock settings, read at each STATUS (see refreshGraph) */
  private graph: GraphSettings | null = null;

  constructor(private readonly opts: DaemonOptions) {
    super();
    this.log = opts.log ?? silentLogger;
    this.config = opts.config;
  }

  /** Connects to the sound server, creates the socket dir and starts listening. */
  async start(): Promise<void> {
    try {
      this.backend = this.connectBackend();
    } catch (e) {
      // serve anyway: servers may open and wait; nodes appear once it answers
      this.log.warn(`${(e as Error).message}; retrying every second`);
      this.scheduleReconnect();
    }
    prepareSocketDir(this.opts.socketDir);
    for (let i = 0; i < this.config.audioloopInstances; i++) await this.addInstance(i);
    this.control = await this.listen(controlSocketPath(this.opts.socketDir), (sock) => this.onControlConnection(sock));
    this.log.info(`serving ${this.loops.size} loop(s) in ${this.opts.socketDir}`);
  }

  private async addInstance(i: number): Promise<void> {
    let loop = this.loops.get(i);
    if (loop) {
      this.retiring.delete(i); // removed, still active, and now back: keep it
    } else {
      loop = new Loop(i, () => this.currentBackend(), {
        bufferMs: this.config.bufferMs,
        clientGraceMs: this.config.clientGraceMs,
        defaultLatencyMs: this.config.defaultLatencyMs,
        ...(this.config.dataPlane ? { dataPlane: this.config.dataPlane } : {}),
        cables: () => this.backend ?? this.lastBackend ?? this.opts.cables ?? null,
        log: this.log,
      });
      this.loops.set(i, loop);
      loop.on('state', (st: string) => {
        if (st === 'idle' && this.retiring.delete(i)) {
          this.loops.delete(i);
          this.log.info(`audioloop${i} removed (its server closed)`);
        }
      });
    }
    const l = loop;
    // half-open: a writing server's EOF means "done", and the daemon keeps
    // its end open until the ring is played out, so the server's close() can wait for that
    this.sockets.set(i, await this.listen(loopSocketPath(this.opts.socketDir, i), (sock) => this.onLoopConnection(l, sock), true));
  }

  /** Stops listening for instance i; an active loop runs on until its server closes. */
  private removeInstance(i: number): void {
    this.sockets.get(i)?.close();
    this.sockets.delete(i);
    fs.rmSync(loopSocketPath(this.opts.socketDir, i), { force: true });
    const loop = this.loops.get(i);
    if (loop && loop.state !== 'idle') {
      this.retiring.add(i);
      this.log.info(`audioloop${i} removed from the config; it goes when its server closes`);
    } else {
      this.loops.delete(i);
    }
  }

  /**
   * Applies the config file again (SIGHUP): adds and removes instances
   * without touching active loops; new buffer_ms applies to the next open;
   * log level and format change at once. A bad file changes nothing
   * (the error is logged and thrown).
   */
  async reload(next?: AudioloopConfig): Promise<ReloadResult> {
    let config: AudioloopConfig;
    try {
      config = next ?? (this.opts.reloadConfig ? this.opts.reloadConfig() : this.config);
    } catch (e) {
      this.log.error(`reload refused, nothing changed: ${(e as Error).message}`);
      throw e;
    }
    const res: ReloadResult = { added: [], removed: [], ignored: [] };
    if (config.socketDir !== undefined && config.socketDir !== this.config.socketDir && config.socketDir !== this.opts.socketDir) {
      res.ignored.push('socket_dir');
    }
    this.log.configure({ level: config.logLevel, format: config.logFormat });
    for (const loop of this.loops.values()) {
      loop.configure({ bufferMs: config.bufferMs, clientGraceMs: config.clientGraceMs, defaultLatencyMs: config.defaultLatencyMs, dataPlane: config.dataPlane ?? DEFAULT_DATA_PLANE });
    }
    const old = this.config.audioloopInstances;
    this.config = { ...config, socketDir: this.config.socketDir };
    for (let i = old; i < config.audioloopInstances; i++) {
      await this.addInstance(i);
      res.added.push(i);
    }
    for (let i = old - 1; i >= config.audioloopInstances; i--) {
      this.removeInstance(i);
      res.removed.push(i);
    }
    if (res.ignored.length) this.log.warn(`reload: ${res.ignored.join(', ')} changes only with a restart`);
    this.log.info(`reloaded: ${config.audioloopInstances} loop(s)`, { added: res.added, removed: res.removed });
    return res;
  }

  private connectBackend(): Backend {
    const b = this.opts.connect();
    this.lastBackend = b;
    b.on('disconnected', (err: Error) => {
      this.log.error(`sound server lost: ${err.message}`);
      if (this.backend === b) this.backend = null;
      b.close();
      this.scheduleReconnect();
    });
    return b;
  }

  private scheduleReconnect(): void {
    if (this.stopping || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      try {
        this.backend = this.connectBackend();
        this.log.info('reconnected to the sound server');
        for (const loop of this.loops.values()) loop.restore();
      } catch (e) {
        this.log.debug(`reconnect failed: ${(e as Error).message}`);
        this.scheduleReconnect();
      }
    }, 1000);
  }

  private currentBackend(): Backend {
    if (!this.backend) {
      throw makeError('ENODEV', 'connect', 'the sound server is not connected');
    }
    return this.backend;
  }

  private async listen(path: string, onConn: (s: net.Socket) => void, allowHalfOpen = false): Promise<net.Server> {
    await removeStaleSocket(path);
    return new Promise((resolve, reject) => {
      const srv = net.createServer({ pauseOnConnect: true, allowHalfOpen }, (sock) => {
        this.conns.add(sock);
        sock.on('close', () => this.conns.delete(sock));
        onConn(sock);
      });
      srv.once('error', reject);
      srv.listen(path, () => {
        srv.off('error', reject);
        srv.on('error', (e) => this.log.error(`listener ${path}: ${e.message}`));
        fs.chmodSync(path, 0o600);
        resolve(srv);
      });
    });
  }

  /** Reads the OPEN line (bounded in size and time), then hands over to the loop. */
  private onLoopConnection(loop: Loop, sock: net.Socket): void {
    const reader = new LineReader();
    const refuse = (code: string, message: string): void => {
      this.log.info(`${loop.node}: refused ${code}: ${message}`);
      lingeringEnd(sock, formatErr(code, errnoOf(code), message));
    };
    const timeoutMs = this.opts.handshakeTimeoutMs ?? 5000;
    const timer = setTimeout(() => {
      // stop reading first: the rest of a late line must not open the loop
      cleanup();
      refuse('ETIMEDOUT', `no OPEN line within ${timeoutMs} ms`);
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      let line: string | null;
      try {
        reader.feed(chunk);
        line = reader.take();
      } catch (e) {
        cleanup();
        refuse(e instanceof ProtocolError ? e.code : 'EPROTO', (e as Error).message);
        return;
      }
      if (line === null) return;
      cleanup();
      sock.pause();
      let req: OpenRequest;
      try {
        req = parseOpen(line);
      } catch (e) {
        refuse(e instanceof ProtocolError ? e.code : 'EPROTO', (e as Error).message);
        return;
      }
      const rest = reader.rest();
      const attach = (): void => {
        if (sock.destroyed) return;
        try {
          loop.attach(sock, req, rest);
        } catch (e) {
          if (e instanceof ProtocolError) refuse(e.code, e.message);
          else refuse('EIO', (e as Error).message);
        }
      };
      loop.probeServer(); // the previous server may have gone a moment ago
      if (loop.state !== 'closing') {
        attach();
        return;
      }
      // The previous server has gone and its loop is being torn down (client
      // streams ended, node removed): an open right after close() waits for
      // that, as a device open right after close would, instead of EBUSY.
      const onState = (st: string): void => {
        if (st !== 'idle') return;
        clearTimeout(limit);
        loop.off('state', onState);
        attach();
      };
      const limit = setTimeout(() => {
        loop.off('state', onState);
        attach();
      }, CLOSING_WAIT_MS);
      loop.on('state', onState);
    };
    const onEnd = (): void => {
      cleanup();
      // EOF in the middle of the line (e.g. `printf 'OPEN mode=read' | nc -N`): say why
      if (reader.pending > 0) refuse('EPROTO', `the connection ended before a complete OPEN line (${reader.pending} bytes without a newline)`);
      else sock.destroy();
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
    };
    // loop sockets are half-open (see addInstance), so a peer that half-closed
    // mid-line can still be told why it is refused
    sock.on('error', () => undefined);
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.resume();
  }

  private async refreshGraph(): Promise<void> {
    if (this.backend?.name !== 'pipewire' || !this.backend.connected) {
      this.graph = null;
      return;
    }
    this.graph = await readGraphSettings();
  }

  private onControlConnection(sock: net.Socket): void {
    const reader = new LineReader();
    let replies: Promise<void> = Promise.resolve();
    sock.on('error', () => undefined);
    sock.on('close', () => this.metrics.delete(sock));
    const onData = (chunk: Buffer): void => {
      try {
        reader.feed(chunk);
        for (let line = reader.take(); line !== null; line = reader.take()) {
          const cmd = line.trim().toUpperCase();
          if (cmd === 'STATUS') {
            // the graph's settings are read fresh (pw-metadata); replies keep their order
            replies = replies.then(() => this.refreshGraph()).then(() => void sock.write(JSON.stringify(this.status()) + '\n'));
          } else if (cmd === 'PING') replies = replies.then(() => void sock.write('PONG\n'));
          else if (cmd.startsWith('METRICS ')) {
            const m = parseMetricsLine(line);
            if (m && this.loops.has(m.instance)) this.metrics.set(sock, m);
            else sock.write(formatErr('EINVAL', errnoOf('EINVAL'), 'expected METRICS instance=N {json}'));
          } else sock.write(formatErr('EINVAL', errnoOf('EINVAL'), `unknown command "${line.slice(0, 40)}" (STATUS, PING)`));
        }
      } catch (e) {
        // an oversize line (E2BIG) or bytes that are not text (EPROTO): answer once and hang up
        sock.off('data', onData);
        const code = e instanceof ProtocolError ? e.code : 'EIO';
        lingeringEnd(sock, formatErr(code, errnoOf(code), (e as Error).message));
      }
    };
    sock.on('data', onData);
    sock.resume();
  }

  status(): DaemonStatus {
    return {
      version: PROTOCOL_VERSION,
      pid: process.pid,
      socketDir: this.opts.socketDir,
      soundServer: { backend: this.backend?.name ?? 'none', connected: this.backend?.connected ?? false },
      graph: this.graph,
      loops: [...this.loops.entries()]
        .sort(([a], [b]) => a - b)
        .map(([i, l]) => {
          const st: DaemonStatus['loops'][number] = this.retiring.has(i) ? { ...l.status(), retiring: true } : l.status();
          if (st.state !== 'idle') for (const m of this.metrics.values()) if (m.instance === i) st.bridge = m.metrics;
          const g = this.graph;
          if (g && st.format) st.graph = { rate: g.forceRate || g.rate, allowedRates: g.allowedRates, resampled: isResampled(st.format.rate, g) };
          return st;
        }),
    };
  }

  /** Idempotent: closes listeners, ends every loop, closes the backend, removes the sockets. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const srv of this.sockets.values()) srv.close();
    this.control?.close();
    await Promise.all([...this.loops.values()].map((l) => l.shutdown()));
    for (const c of this.conns) c.destroy();
    this.backend?.close();
    this.backend = null;
    for (const i of this.sockets.keys()) fs.rmSync(loopSocketPath(this.opts.socketDir, i), { force: true });
    fs.rmSync(controlSocketPath(this.opts.socketDir), { force: true });
    this.log.info('stopped');
  }
}

/** how long a refused connection may keep sending before it is cut off */
const LINGER_MS = 2000;

/**
 * Sends a last line and half-closes, then keeps reading (and dropping) what
 * the peer still sends until it closes too, or LINGER_MS passes. Closing
 * with unread input would reset the connection, and a peer still writing
 * (e.g. a 1 MB line) would then see EPIPE/ECONNRESET instead of the line.
 */
function lingeringEnd(sock: net.Socket, last: string): void {
  sock.removeAllListeners('data');
  sock.on('data', () => undefined);
  sock.end(last);
  sock.resume();
  const t = setTimeout(() => sock.destroy(), LINGER_MS);
  sock.once('close', () => clearTimeout(t));
}

/** how long an open waits for the previous server's loop to finish closing */
const CLOSING_WAIT_MS = 3000;

/** Creates the socket directory 0700, or checks an existing one is ours and private. */
export function prepareSocketDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if (st.uid !== uid) throw new Error(`${dir} belongs to uid ${st.uid}, not to us (uid ${uid})`);
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

/** A socket file nobody listens on is left over from a crash: remove it. One that answers means another daemon. */
async function removeStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (!alive) {
    fs.rmSync(path, { force: true });
    return;
  }
  throw makeError('EADDRINUSE', 'listen', `another audioloop daemon is serving ${path}`);
}
