/**
 * The contract between the loop logic and a sound-server backend
 * (serialport's "binding" idea). The PipeWire backend implements it over the
 * native addon; the memory backend implements it in plain TS for unit tests.
 * Nothing above this interface touches native code.
 */
import type { EventEmitter } from 'node:events';
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
 *  - 'client-start'  a client's data flows (a link to the node is active)
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
  clients(): ClientInfo[];
  /** ends every client stream linked to the node (they must not move elsewhere) */
  disconnectClients(): Promise<void>;
  /** idempotent; removes the node */
  destroy(): void;
}

/**
 * A connection to a sound server.
 * Events: 'disconnected' (err) when the server goes away.
 */
export interface Backend extends EventEmitter {
  readonly name: string;
  readonly connected: boolean;
  createEndpoint(opts: EndpointOptions): Endpoint;
  /** idempotent */
  close(): void;
}
