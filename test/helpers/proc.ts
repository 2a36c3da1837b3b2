/**
 * Child processes started by tests, tracked by PID and always stopped.
 * Nothing is ever killed by name.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Tracked {
  child: ChildProcess;
  pid: number;
  /** resolves when the process exits */
  done: Promise<Finished>;
  stdout(): string;
  stderr(): string;
}

const live = new Map<number, ChildProcess>();

export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): Tracked {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const pid = child.pid ?? -1;
  if (pid > 0) live.set(pid, child);
  const done = new Promise<Finished>((resolve) => {
    child.on('error', (e) => {
      live.delete(pid);
      resolve({ code: -1, signal: null, stdout: out, stderr: err + String(e) });
    });
    child.on('close', (code, signal) => {
      live.delete(pid);
      resolve({ code, signal, stdout: out, stderr: err });
    });
  });
  return { child, pid, done, stdout: () => out, stderr: () => err };
}

/** Runs to completion (with a time limit) and returns its output. */
export async function run(cmd: string, args: string[], opts: SpawnOptions & { timeoutMs?: number } = {}): Promise<Finished> {
  const t = spawnTracked(cmd, args, opts);
  const timer = setTimeout(() => stopTracked(t.pid), opts.timeoutMs ?? 20000);
  try {
    return await t.done;
  } finally {
    clearTimeout(timer);
  }
}

/** SIGTERM, then SIGKILL after a grace period, for one tracked PID. */
export function stopTracked(pid: number, graceMs = 2000): void {
  const child = live.get(pid);
  if (!child || child.exitCode !== null) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, graceMs);
  t.unref();
}

/** Stops every process a test left running; returns how many there were. */
export async function stopAllTracked(): Promise<number> {
  const children = [...live.values()];
  for (const c of children) if (c.pid) stopTracked(c.pid, 1000);
  await Promise.all(
    children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once('close', r)))),
  );
  return children.length;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a truthy value or the time runs out. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 5000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** Waits for a tracked child to exit, failing with its stderr if it has not within `ms`. */
export async function finished(t: Tracked, ms: number, what: string): Promise<Finished> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      t.done,
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`${what} did not exit within ${ms} ms; stderr: ${t.stderr()}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
