/**
 * Latency chosen by the server (OPEN latency=MS): what the node asks the
 * graph for, how big the loop's ring is then, and what the graph granted.
 *
 * PipeWire: the node gets `node.latency = FRAMES/RATE` (FRAMES = MS x RATE /
 * 1000); the graph runs at the smallest latency its nodes ask for, within
 * the server's clock.min-quantum/max-quantum, so a client asking less still
 * wins and the granted quantum may differ from the request: status shows
 * the quantum of the last graph cycle (`granted`).
 */
import { bytesPerSecond, frameBytes, type PcmFormat } from './format';
import type { OpenRequest } from './protocol';

/** the ring holds this many requested latencies (one cycle in, one out, and slack for the JS side) */
export const RING_LATENCIES = 4;
/** but never less than this: the JS pump runs every ~10 ms */
export const MIN_RING_MS = 20;

export function ringFor(fmt: PcmFormat, bufferMs: number, latencyMs?: number): { ringBytes: number; latencyFrames?: number } {
  const ms = latencyMs === undefined ? bufferMs : Math.max(MIN_RING_MS, RING_LATENCIES * latencyMs);
  const ringBytes = Math.max(4096, Math.ceil((bytesPerSecond(fmt) * ms) / 1000));
  if (latencyMs === undefined) return { ringBytes };
  return { ringBytes: ringBytes - (ringBytes % frameBytes(fmt)), latencyFrames: latencyToFrames(latencyMs, fmt.rate) };
}

/** MS at `rate` in frames (node.latency's numerator), at least 1 */
export function latencyToFrames(ms: number, rate: number): number {
  return Math.max(1, Math.round((ms * rate) / 1000));
}

export interface LatencyStatus {
  /** latency=MS of the OPEN line, null when the server did not ask */
  requestedMs: number | null;
  /** node.latency frames asked for, null when not asked */
  requestedFrames: number | null;
  /**
   * node.latency frames the node asks the graph for: the request, or
   * without one config default_latency_ms for a PipeWire read loop's sink
   * (it runs before any client); null when the node asks nothing
   */
  nodeFrames: number | null;
  /** frames of the last graph cycle (the quantum the graph granted), 0 while the node does not run */
  grantedFrames: number;
  grantedMs: number;
}

export function grantedLatency(req: OpenRequest, quantum: number, nodeFrames: number | null): LatencyStatus {
  const requestedFrames = req.latencyMs === undefined ? null : latencyToFrames(req.latencyMs, req.rate);
  return {
    requestedMs: req.latencyMs ?? null,
    requestedFrames,
    nodeFrames,
    grantedFrames: quantum,
    grantedMs: Math.round((quantum * 10000) / req.rate) / 10,
  };
}
