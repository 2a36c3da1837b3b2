/**
 * Process helpers for the bench: every child is tracked by PID and stopped
 * by PID (never by name); /proc readers for CPU time and RSS.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import * as fs from 'node:fs';

export interface Child {
  proc: ChildProcess;
  pid: number;
  name: string;
  /** resolves with the exit code (or -1 on a signal/spawn error) */
  exited: Promise<number>;
  stderr(): string;
}

const live = new Map<number, Child>();

/** Spawns a tracked child. stdout is left to the caller unless `stdio` says otherwise. */
export function spawnChild(cmd: string, args: string[], opts: SpawnOptions = {}): Child {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], ...opts });
  let err = '';
  proc.stderr?.on('data', (d: Buffer) => {
    if (err.length < 8192) err += d.toString();
  });
  const pid = proc.pid ?? -1;
  const exited = new Promise<number>((resolve) => {
    proc.once('error', (e) => {
      err += String(e);
      live.delete(pid);
      resolve(-1);
    });
    proc.once('close', (code) => {
      live.delete(pid);
      resolve(code ?? -1);
    });
  });
  const child: Child = { proc, pid, name: cmd, exited, stderr: () => err };
  if (pid > 0) live.set(pid, child);
  return child;
}

/** SIGTERM, SIGKILL after `graceMs`; resolves when it is gone. */
export async function stopChild(c: Child, graceMs = 3000): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  c.proc.kill('SIGTERM');
  const t = setTimeout(() => {
    if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  }, graceMs);
  await c.exited;
  clearTimeout(t);
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live.values()].map((c) => stopChild(c, 1500)));
}

/** Synchronous last resort for exit handlers. */
export function killAllSync(): void {
  for (const c of live.values()) {
    try {
      c.proc.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until truthy or the time runs out (then throws, naming `what`). */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Runs a command to completion and returns stdout (throws on failure). */
export function runSync(cmd: string, args: string[], timeoutMs = 15000): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
}

let clkTck = 0;
/** Clock ticks per second for /proc/PID/stat (getconf CLK_TCK, 100 on Linux). */
export function clockTicks(): number {
  if (!clkTck) {
    try {
      clkTck = Number(runSync('getconf', ['CLK_TCK']).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of a process (all its threads), in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // the command name (field 2) may contain spaces: fields after the last ')'
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / clockTicks();
}

/** Resident set size in KiB (VmRSS). */
export function rssKiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return m ? Number(m[1]) : 0;
}
