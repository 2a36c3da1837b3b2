/**
 * The PipeWire graph's clock settings (the `settings` metadata): the rate the
 * graph runs at by default, the rates it may switch to, and a forced rate.
 * A loop at a rate the graph may not run at is resampled by PipeWire (not
 * bit-exact); `audioloop status` says so.
 */
import { execFile } from 'node:child_process';

export interface GraphSettings {
  /** clock.rate: the default graph rate */
  rate: number;
  /** clock.allowed-rates: the rates the graph may switch to when it is idle */
  allowedRates: number[];
  /** clock.force-rate: 0 when not forced */
  forceRate: number;
}

/** Parses `pw-metadata -n settings 0` output; null when it holds no clock.rate. */
export function parseGraphSettings(text: string): GraphSettings | null {
  const values = new Map<string, string>();
  for (const m of text.matchAll(/key:'([^']+)' value:'([^']*)'/g)) values.set(m[1]!, m[2]!);
  const rate = Number(values.get('clock.rate'));
  if (!Number.isInteger(rate) || rate <= 0) return null;
  const allowed = (values.get('clock.allowed-rates') ?? '')
    .replace(/[[\]]/g, ' ')
    .split(/[\s,]+/)
    .filter(Boolean)
    .map(Number)
    .filter((r) => Number.isInteger(r) && r > 0);
  const force = Number(values.get('clock.force-rate') ?? 0);
  return { rate, allowedRates: allowed.length ? allowed : [rate], forceRate: Number.isInteger(force) && force > 0 ? force : 0 };
}

/**
 * True when PipeWire must resample a node at `rate`: the rate is not one the
 * graph may run at (or another rate is forced). False means the graph can run
 * at it: it switches when it is idle, so a loop and a client at that rate
 * meet bit-exact unless another running stream holds the graph at its rate.
 */
export function isResampled(rate: number, s: GraphSettings): boolean {
  if (s.forceRate) return s.forceRate !== rate;
  return !s.allowedRates.includes(rate);
}

/** Reads the settings of the PipeWire this environment points at; null if pw-metadata fails. */
export function readGraphSettings(env: NodeJS.ProcessEnv = process.env, timeoutMs = 2000): Promise<GraphSettings | null> {
  return new Promise((resolve) => {
    execFile('pw-metadata', ['-n', 'settings', '0'], { env, timeout: timeoutMs }, (err, stdout) => {
      resolve(err ? null : parseGraphSettings(stdout));
    });
  });
}
