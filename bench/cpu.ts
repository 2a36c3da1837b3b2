/**
 * CPU and memory of the daemon with K active loops (48 kHz stereo s16, a
 * pw-play client playing silence into each, our server reading) against K
 * pw-loopback processes doing the same job (a pw-play client playing into
 * each virtual sink, which loops back into a null sink). CPU is utime +
 * stime from /proc/PID/stat over a fixed interval, all threads included, in
 * percent of one core; RSS is VmRSS at the end of the interval.
 */
import * as fs from 'node:fs';
import type { LoopServer } from '../src/client';
import { CHANNELS, RATE } from './counter';
import { openLoop, playerArgs, type Family } from './paths';
import { cpuSeconds, rssKiB, runSync, sleep, spawnChild, stopChild, waitFor, type Child } from './proc';
import { startLoopback } from './paths';

export interface CpuSample {
  /** percent of one core, all K together */
  cpuPct: number;
  cpuPctPerLoop: number;
  /** total RSS of the measured process(es) */
  rssKiB: number;
  /** the sound server (pipewire) over the same interval, for context */
  pipewireCpuPct: number;
}

export interface CpuOptions {
  warmupS: number;
  intervalS: number;
  /** pipewire's PID (context only), or 0 */
  pipewirePid: number;
}

function openZero(): number {
  return fs.openSync('/dev/zero', 'r');
}

async function sample(pids: number[], k: number, o: CpuOptions): Promise<CpuSample> {
  await sleep(o.warmupS * 1000);
  const t0 = process.hrtime.bigint();
  const c0 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const pw0 = o.pipewirePid ? cpuSeconds(o.pipewirePid) : 0;
  await sleep(o.intervalS * 1000);
  const c1 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
  const pw1 = o.pipewirePid ? cpuSeconds(o.pipewirePid) : 0;
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const rss = pids.reduce((s, p) => s + rssKiB(p), 0);
  const cpuPct = ((c1 - c0) / wall) * 100;
  const r = (x: number): number => Math.round(x * 1000) / 1000;
  return { cpuPct: r(cpuPct), cpuPctPerLoop: r(cpuPct / k), rssKiB: rss, pipewireCpuPct: r(((pw1 - pw0) / wall) * 100) };
}

/** K loops of the daemon (PID `daemonPid`, serving >= K instances in `socketDir`). */
export function measureOurs(k: number, daemonPid: number, socketDir: string, o: CpuOptions): Promise<CpuSample> {
  return withPlayingLoops(k, 'pw', socketDir, () => sample([daemonPid], k, o));
}

/**
 * Opens K read loops of the daemon in `socketDir`, each with a player of `family` playing silence into it,
 * runs `measure` once data flows on every loop, then stops the players and closes the loops.
 */
export async function withPlayingLoops<T>(k: number, family: Family, socketDir: string, measure: () => Promise<T>): Promise<T> {
  const servers: LoopServer[] = [];
  const players: Child[] = [];
  const zero = openZero();
  const bytes = new Array<number>(k).fill(0);
  try {
    for (let i = 0; i < k; i++) {
      const srv = await openLoop(i, { mode: 'read', format: 's16le', rate: RATE, channels: CHANNELS, socketDir, app: 'bench-cpu' });
      srv.readable.on('data', (c: Buffer) => (bytes[i]! += c.length));
      srv.readable.on('error', () => undefined);
      servers.push(srv);
      const [cmd, args] = playerArgs(family, srv.node);
      players.push(spawnChild(cmd, args, { stdio: [zero, 'ignore', 'pipe'] }));
    }
    await clientsStarted(servers, players, CLIENT_START_MS);
    await waitFor(() => bytes.every((b) => b > 0), 10000, 'data on every loop');
    return await measure();
  } finally {
    fs.closeSync(zero);
    await Promise.all(players.map((p) => stopChild(p)));
    await Promise.all(servers.map((s) => s.close()));
  }
}

/** how long each loop's player may take to start (its START) before the bench gives up on it */
const CLIENT_START_MS = 10000;

/**
 * Waits (at most `ms`, or 0.5 s after a player exited first) for a client
 * to start on every server; otherwise fails naming each loop whose player
 * did not start: refused (it exited, e.g. "no audioloop server on
 * audioloopN" from the server-first rule) or absent (still running, never
 * linked), with its exit status and stderr.
 */
async function clientsStarted(servers: LoopServer[], players: Child[], ms: number): Promise<void> {
  const started = servers.map(() => false);
  const failed: (string | null)[] = servers.map(() => null);
  const all = Promise.all(
    servers.map((s, i) =>
      s.waitForClient().then(
        () => void (started[i] = true),
        (e: Error) => void (failed[i] = e.message),
      ),
    ),
  );
  // done when every loop started, or at the bound, or soon after a player
  // exited before its loop started (these players play /dev/zero for ever)
  let settled = false;
  void all.then(() => (settled = true));
  const t0 = Date.now();
  const deadline = t0 + ms;
  let exitSeen = 0;
  while (!settled && Date.now() < deadline) {
    if (!exitSeen && players.some((p, i) => !started[i] && (p.proc.exitCode !== null || p.proc.signalCode !== null))) exitSeen = Date.now();
    if (exitSeen && Date.now() - exitSeen > 500) break;
    await sleep(50);
  }
  if (started.every(Boolean)) return;
  const missing = servers.flatMap((s, i) => {
    if (started[i]) return [];
    const p = players[i];
    const code = p?.proc.exitCode ?? null;
    const sig = p?.proc.signalCode ?? null;
    const how = !p
      ? 'no player'
      : code !== null || sig !== null
        ? `refused: ${p.name} (pid ${p.pid}) exited ${code ?? sig}`
        : `absent: ${p.name} (pid ${p.pid}) still runs but never started`;
    const err = p?.stderr().trim();
    return [`${s.node}: ${how}${failed[i] ? `; the server end: ${failed[i]}` : ''}${err ? `; stderr: ${err.slice(-300)}` : ''}`];
  });
  throw new Error(`bench: cpu: ${missing.length} of ${servers.length} players did not start (waited ${Date.now() - t0} ms of at most ${ms}):\n  ${missing.join('\n  ')}`);
}

/** K pw-loopback processes, each fed by a pw-play client, looping into `nullSink`. */
export async function measurePeer(k: number, nullSink: string, o: CpuOptions): Promise<CpuSample> {
  const loops: Child[] = [];
  const players: Child[] = [];
  const zero = openZero();
  try {
    for (let i = 0; i < k; i++) {
      const name = `bench_cpu_lb${i}`;
      loops.push(await startLoopback(name, nullSink));
      const [cmd, args] = playerArgs('pw', name);
      players.push(spawnChild(cmd, args, { stdio: [zero, 'ignore', 'pipe'] }));
    }
    // every player is linked and running: as many RUNNING sink-inputs as players
    await waitFor(
      () => runSync('pactl', ['list', 'short', 'sinks']).split('\n').filter((l) => /bench_cpu_lb\d+\t.*RUNNING/.test(l)).length >= k,
      10000,
      `${k} pw-loopback sinks running`,
    );
    return await sample(loops.map((l) => l.pid), k, o);
  } finally {
    fs.closeSync(zero);
    await Promise.all(players.map((p) => stopChild(p)));
    await Promise.all(loops.map((p) => stopChild(p)));
  }
}
