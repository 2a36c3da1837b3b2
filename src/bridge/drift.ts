/**
 * Drift compensation for the receiver: the sender's sample clock and ours
 * (the output pacing, see receiver.ts) differ by some ppm, so at a fixed
 * resampling ratio the jitter buffer slowly fills up or runs dry. This slow
 * PI controller watches the jitter-buffer fill against its target and returns
 * the correction for the resampler's fractional rate:
 *
 *   input frames consumed per output frame = nominal ratio * (1 + ppm / 1e6)
 *
 * A positive ppm means the sender runs fast and we consume a little faster.
 * In steady state the integral term equals the clock difference: it is the
 * drift estimate shown in `audioloop status` (driftPpm; ratePpm is the
 * correction applied now).
 *
 * Tuning: the plant is  d(fill_ms)/dt = (drift_ppm - ppm) / 1000  (ms per s),
 * so with kp (ppm per ms of error) the time constant is 1000 / kp seconds;
 * ki = kp^2 / 4000 makes the loop critically damped. The default kp = 20
 * gives about 50 s: slow, so that the fill's noise (a sawtooth of one packet
 * duration, arrival jitter, bursts of the output timer), after a 4 s
 * smoothing, moves the rate by tens of ppm at most, not hundreds.
 */
export interface DriftOptions {
  /** ppm per ms of smoothed fill error */
  kp: number;
  /** ppm per (ms * s) of integrated error */
  ki: number;
  /** time constant of the fill smoothing, seconds */
  smoothS: number;
  /** the correction never exceeds this, ppm */
  maxPpm: number;
  /** the integral sees the error clamped to +- this, ms */
  intClampMs: number;
}

export const DEFAULT_DRIFT: DriftOptions = { kp: 20, ki: 0.1, smoothS: 4, maxPpm: 2000, intClampMs: 25 };

export class DriftController {
  private smoothed: number | null = null;
  private integral = 0;
  private out = 0;

  constructor(private readonly opts: DriftOptions = DEFAULT_DRIFT) {}

  /**
   * Feeds one observation: fill and target in ms, `dtS` seconds since the
   * previous one. Returns the rate correction in ppm.
   */
  update(fillMs: number, targetMs: number, dtS: number): number {
    if (!(dtS > 0)) return this.out;
    const err = fillMs - targetMs;
    if (this.smoothed === null) this.smoothed = err;
    else this.smoothed += (err - this.smoothed) * Math.min(1, dtS / this.opts.smoothS);
    const e = this.smoothed;
    // anti-windup: integrate only while the output is not pinned at the limit in the same direction
    const pinned = Math.abs(this.out) >= this.opts.maxPpm && Math.sign(e) === Math.sign(this.out);
    // a large error is a step (an underrun's concealment, a burst), not drift: the integral
    // (the drift estimate) takes at most +-intClampMs of it; the proportional term removes the rest
    if (!pinned) this.integral += Math.max(-this.opts.intClampMs, Math.min(this.opts.intClampMs, e)) * dtS;
    const raw = this.opts.kp * e + this.opts.ki * this.integral;
    this.out = Math.max(-this.opts.maxPpm, Math.min(this.opts.maxPpm, raw));
    return this.out;
  }

  /** the current correction (ppm) */
  get ppm(): number {
    return this.out;
  }

  /** the integral part alone: the long-term clock difference estimate (ppm) */
  get driftPpm(): number {
    return this.opts.ki * this.integral;
  }

  reset(): void {
    this.smoothed = null;
    this.integral = 0;
    this.out = 0;
  }
}
