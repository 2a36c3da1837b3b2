/**
 * The contract between the loop logic and a sound-server backend
 * (serialport's "binding" idea). The PipeWire backend implements it over the
 * native addon; the memory backend implements it in plain TS for unit tests.
 * Nothing above this interface touches native code.
 */
import type { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { PcmFormat } from '../format';

/** sink: clients play into the node and the server reads; source: the server writes and clients record. */
export type EndpointDirection = 'sink' | 'source';

export interface EndpointOptions extends PcmFormat {
  direction: EndpointDirection;
  /** node.name on the sound server, e.g. audioloop0 */
  name: string;
  /** human readable description shown by pavucontrol */
  description: string;
  /** ring buffer size in bytes (rounded up to a power of two) */
  ringBytes: number;
  /** wake the JS side when this many bytes are readable (sink) or free (source) */
  wakeBytes?: number;
  /** the latency the node asks the graph for, in frames at `rate` (PipeWire node.latency) */
  latencyFrames?: number;
  /**
   * without latencyFrames: what a sink node that runs before any client
   * (PipeWire's, node.always-process) asks instead (config
   * default_latency_ms); a backend whose node does not run before its
   * clients ignores it
   */
  defaultLatencyFrames?: number;
  /** extra node properties for the sound server */
  props?: Record<string, string>;
}

export interface EndpointStats {
  /** backend stream state, e.g. 'paused', 'streaming' */
  state: string;
  /** node id on the sound server, -1 when unknown */
  nodeId: number;
  /** bytes in the ring now */
  fill: number;
  /** ring capacity in bytes */
  size: number;
  /** frames moved by the realtime side */
  frames: number;
  /** overruns (sink) / underruns (source) */
  xruns: number;
  /** bytes dropped (sink) or silence inserted (source) by xruns */
  xrunBytes: number;
  /** graph cycles seen */
  cycles: number;
  /** frames in the last cycle */
  quantum: number;
  /** client links to the node */
  links: number;
  /** those of them active: the client's data flows (a paused/corked client's link is not) */
  activeLinks: number;
}

/** A client of the loop: an application stream linked to our node. */
export interface ClientInfo {
  nodeId: number;
  name: string | null;
  appName: string | null;
  mediaName: string | null;
  pid: number | null;
  /**
   * the buffer the sound server keeps for this client stream, in seconds
   * (its node.latency; pipewire-pulse sets it from a recorder's fragsize),
   * null when the stream names none
   */
  latency: number | null;
}

/**
 * One client-side device ("the cable's far end").
 * Events:
 *  - 'client-start'  a client's data flows (a link to the node is active and the client's node runs)
 *  - 'client-stop'   no client's data flows any more: every client paused
 *                    (corked) or gone; the 'clients' list tells which
 *  - 'readable'      (sink) data is waiting in the ring
 *  - 'writable'      (source) the ring has room again after a short write
 *  - 'clients'       the set of linked client streams changed
 *  - 'error' (err)   the endpoint failed (e.g. the sound server went away)
 */
export interface Endpoint extends EventEmitter {
  readonly options: Readonly<EndpointOptions>;
  /** true between 'client-start' and 'client-stop' */
  readonly clientActive: boolean;
  readonly destroyed: boolean;
  /**
   * sink: copies up to buf.length bytes (whole frames) out of the ring.
   * After the endpoint failed (sound server gone), it hands out what the
   * ring had captured, then returns 0; after destroy(), EBADF.
   */
  read(buf: Buffer): number;
  /** source: copies whole frames of buf into the ring, returns bytes taken */
  write(buf: Buffer): number;
  stats(): EndpointStats;
  /**
   * One data wake-up ('writable' for a source, 'readable' for a sink) once
   * the node has moved `frames` more frames (silence included); 0 cancels.
   */
  wakeAfter(frames: number): void;
  /**
   * sink: keep (true) or drop (false, the default) the silence the node
   * hears while no client's data flows (none linked, every one paused): OPEN
   * clock=1 after START, so the reading server reads in real time on the
   * graph's clock
   */
  keepSilence(on: boolean): void;
  clients(): ClientInfo[];
  /** ends every client stream linked to the node (they must not move elsewhere) */
  disconnectClients(): Promise<void>;
  /** idempotent; removes the node */
  destroy(): void;
}

export interface CableOptions extends PcmFormat {
  /** sink: clients play, the server reads; source: the server writes, clients record */
  direction: EndpointDirection;
  /** ring buffer size in bytes (rounded up to a power of two) */
  ringBytes: number;
  /** capture: the server end is served once this many bytes are in the ring (default ring/8) */
  wakeBytes?: number;
}

export interface CableStats {
  /** bytes in the ring now, and its capacity */
  fill: number;
  size: number;
  /** PCM bytes moved over the server's socket */
  bytes: number;
  /** bytes held outside the ring: protocol lines not sent yet, bytes read past the OPEN line not in the ring yet */
  queued: number;
  /** source: bytes of the server's data consume() discarded (clock=1, before start()) */
  consumed: number;
  /** the server's socket is plugged and not closed */
  open: boolean;
  eof: boolean;
  finished: boolean;
  failed: boolean;
  /** peak level per channel in dBFS (falling 20 dB/s) of the PCM that crossed */
  levels: number[];
}

/**
 * The data plane of one loop (native/cable.h): the ring an Endpoint's node
 * fills or drains, and, once plugged, the server's socket, which the cable
 * then serves itself: PCM moves between ring and socket without the loop
 * (without JS at all for the native one), with backpressure. The loop only
 * asks for protocol lines, which go out in order around the PCM.
 * A cable outlives the endpoints bound to it (a node recreated after the
 * sound server came back, a failed sink whose ring still holds data).
 * Events (asynchronous, in order):
 *  - 'first'     the first PCM crossed the socket after start()
 *  - 'eof'       the server's EOF (a writing server: everything it sent is in the ring)
 *  - 'drained'   source after 'eof': the ring is empty (gone to the graph)
 *  - 'finished'  finish() done: everything asked for was sent, the socket's write side is shut
 *  - 'error' (err) the socket failed (EPIPE, ECONNRESET: the server is gone)
 */
export interface Cable extends EventEmitter {
  readonly options: Readonly<CableOptions>;
  /**
   * Takes over the server's socket after its OPEN line; `rest` holds the
   * bytes read past the line (a source keeps them as the first PCM), `hold`
   * bounds what a source reads ahead before start(). The socket object is
   * spent afterwards (the native cable destroys it and serves a dup of its
   * fd). Throws EBADF when the socket is gone, EBUSY when plugged already.
   */
  plug(socket: Socket, rest: Buffer, hold: number): void;
  /** queues a protocol line (before any PCM that follows) */
  line(text: string): void;
  /** a client started: queues `line` (START), then PCM flows */
  start(line: string): void;
  /** the end: a sink with `drain` delivers the ring first; then `line` (may be null), the write side shuts, 'finished' */
  finish(line: string | null, drain: boolean): void;
  /** serves the socket now (a sink delivers what the ring holds, below its wake-up size too) */
  kick(): void;
  /**
   * source before start() (OPEN clock=1: the loop's clock runs while no
   * client does): discards up to `bytes` (whole frames) of what the server
   * sent, oldest first: what is held, and what the socket has at once.
   * Never more: what the server has not sent yet is not owed (a writer
   * behind the clock underruns it). Nothing after start(); stats().consumed
   * counts what went.
   */
  consume(bytes: number): void;
  stats(): CableStats;
  /**
   * The server's end now, without waiting for the event ('eof'/'error' come
   * from another thread): 'open', 'eof' (it shut its write side) or 'closed'.
   */
  peer(): 'open' | 'eof' | 'closed';
  /** idempotent: closes the server's socket; no more events */
  close(): void;
}

/** Whatever makes cables (every Backend; the native one needs no sound-server connection). */
export interface CableFactory {
  createCable(opts: CableOptions): Cable;
}

/**
 * A connection to a sound server.
 * Events: 'disconnected' (err) when the server goes away.
 */
export interface Backend extends EventEmitter, CableFactory {
  readonly name: string;
  readonly connected: boolean;
  /** with `cable` (one this backend's createCable made), the node fills or drains that cable's ring */
  createEndpoint(opts: EndpointOptions, cable?: Cable): Endpoint;
  /** idempotent */
  close(): void;
}
