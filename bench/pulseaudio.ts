/**
 * The PulseAudio column: the same loop on a real PulseAudio (a private
 * headless one, scripts/soundserver.sh start-pulse) with the PulseAudio
 * backend, against PulseAudio's own null sink with parec on its monitor,
 * pacat/parec on both sides, in the same run as the PipeWire figures.
 *
 * Latency: ours client->server (pacat -> audioloop0 -> server), ours
 * server->client (server -> audioloop1 -> parec) and two null sinks
 * (pacat -> null sink -> parec monitor): one as `pactl load-module
 * module-null-sink` gives it, and one with norewinds=1, the module and
 * arguments our read loop uses (so the difference is the daemon's own).
 * Counter-timestamp method.
 * CPU: K loops fed by pacat (ours: the daemon plus pulseaudio) against K
 * norewinds=1 null sinks fed by pacat and recorded by parec (peer: the parec
 * processes plus pulseaudio): the sound server is counted on both sides,
 * since it carries the null sink's whole job.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { startEmbeddedSoundServer, type EmbeddedSoundServer } from '../src/soundserver';
import { controlSocketPath } from '../src/protocol';
import { withPlayingLoops, type CpuSample } from './cpu';
import { loadNullSink, oursClientToServer, oursServerToClient, peerPath, playerArgs, recorderArgs, unloadModule } from './paths';
import { cpuSeconds, rssKiB, runSync, sleep, spawnChild, stopChild, waitFor, type Child } from './proc';
import { pathSummary, type PathSummary } from './report';

export interface PulseAudioResults {
  server: string;
  latency: {
    durationS: number;
    paths: Record<'ours_c2s' | 'ours_s2c' | 'nullsink' | 'nullsink_norewinds', PathSummary>;
    /** ours against the norewinds=1 null sink (the same module as our loop) */
    comparisons: { ours: string; ratioP50: number; ratioP99: number; excessP99Ms: number }[];
  };
  cpu: {
    intervalS: number;
    configs: { loops: number; ours: CpuSample; peer: CpuSample; ratioCpu: number }[];
  };
}

function pidOf(dir: string, name: string): number {
  const line = fs.readFileSync(path.join(dir, 'pids'), 'utf8').split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

async function sample(pids: number[], serverPid: number, k: number, warmupS: number, intervalS: number): Promise<CpuSample> {
  await sleep(warmupS * 1000);
  const t0 = process.hrtime.bigint();
  const all = [...pids, serverPid];
  const c0 = all.map((p) => cpuSeconds(p));
  await sleep(intervalS * 1000);
  const c1 = all.map((p) => cpuSeconds(p));
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const pct = (i: number): number => ((c1[i]! - c0[i]!) / wall) * 100;
  const total = all.reduce((s, _, i) => s + pct(i), 0);
  return {
    cpuPct: round(total, 3),
    cpuPctPerLoop: round(total / k, 3),
    rssKiB: pids.reduce((s, p) => s + rssKiB(p), 0),
    pipewireCpuPct: round(pct(all.length - 1), 3), // here: pulseaudio's share
  };
}

/** K loops, pacat playing silence into each, our server reading. */
function cpuOurs(k: number, daemonPid: number, serverPid: number, socketDir: string, warmupS: number, intervalS: number): Promise<CpuSample> {
  return withPlayingLoops(k, 'pulse', socketDir, () => sample([daemonPid], serverPid, k, warmupS, intervalS));
}

/** K null sinks, pacat playing silence into each, parec recording each monitor. */
async function cpuPeer(k: number, serverPid: number, warmupS: number, intervalS: number): Promise<CpuSample> {
  const modules: number[] = [];
  const kids: Child[] = [];
  const recorders: Child[] = [];
  const zero = fs.openSync('/dev/zero', 'r');
  try {
    for (let i = 0; i < k; i++) {
      const name = `bench_pa_cpu${i}`;
      modules.push(loadNullSink(name, ['norewinds=1']));
      const [pcmd, pargs] = playerArgs('pulse', name);
      kids.push(spawnChild(pcmd, pargs, { stdio: [zero, 'ignore', 'pipe'] }));
      const [rcmd, rargs] = recorderArgs('pulse', name, true);
      const rec = spawnChild(rcmd, rargs, { stdio: ['ignore', 'pipe', 'pipe'] });
      rec.proc.stdout!.resume();
      recorders.push(rec);
    }
    await waitFor(() => runSync('pactl', ['list', 'short', 'sinks']).split('\n').filter((l) => /bench_pa_cpu\d+\t.*RUNNING/.test(l)).length >= k, 10000, `${k} null sinks running`);
    return await sample(recorders.map((r) => r.pid), serverPid, k, warmupS, intervalS);
  } finally {
    fs.closeSync(zero);
    await Promise.all([...kids, ...recorders].map((p) => stopChild(p)));
    for (const m of modules) unloadModule(m);
  }
}

/**
 * Starts the private PulseAudio in `rt` (this process's environment then
 * points at it: run it after the PipeWire part), a daemon with the
 * PulseAudio backend, measures, and stops both.
 */
export async function measurePulseAudio(rt: string, cliMain: string, o: { latencyS: number; quick: boolean }, log: (m: string) => void): Promise<PulseAudioResults> {
  let server: EmbeddedSoundServer | null = null;
  let daemon: Child | null = null;
  try {
    server = await startEmbeddedSoundServer(rt, 'pulseaudio');
    delete process.env.PIPEWIRE_REMOTE;
    const paPid = pidOf(rt, 'pulseaudio');
    const version = /pulseaudio ([\d.]+)/.exec(runSync('pulseaudio', ['--version']))?.[1] ?? 'unknown';
    log(`PulseAudio ${version} (pid ${paPid}) in ${rt}`);
    const socketDir = path.join(rt, 'audioloop');
    daemon = spawnChild(process.execPath, [cliMain, 'daemon', '-n', '16', '--backend', 'pulseaudio', '--sound-server', 'system', '-s', socketDir, '--log-level', 'warn']);
    await waitFor(() => fs.existsSync(controlSocketPath(socketDir)) || daemon!.proc.exitCode !== null, 15000, 'the PulseAudio daemon');
    if (daemon.proc.exitCode !== null) throw new Error(`bench: the daemon (PulseAudio backend) exited: ${daemon.stderr()}`);

    log(`PulseAudio latency (pulse tools, ${o.latencyS} s each)`);
    const lo = { durationS: o.latencyS };
    const nullIdx = loadNullSink('bench_pa_null');
    const nullNrIdx = loadNullSink('bench_pa_null_nr', ['norewinds=1']);
    const c2s = await oursClientToServer(0, 'pulse', lo, socketDir);
    const s2c = await oursServerToClient(1, 'pulse', lo, socketDir);
    const peer = await peerPath('pulse', 'bench_pa_null', null, lo);
    const peerNr = await peerPath('pulse', 'bench_pa_null_nr', null, lo);
    unloadModule(nullIdx);
    unloadModule(nullNrIdx);
    const paths = { ours_c2s: pathSummary(c2s), ours_s2c: pathSummary(s2c), nullsink: pathSummary(peer), nullsink_norewinds: pathSummary(peerNr) };
    const ref = paths.nullsink_norewinds;
    const comparisons = (['ours_c2s', 'ours_s2c'] as const).map((id) => ({
      ours: id,
      ratioP50: ref.p50Ms > 0 ? round(paths[id].p50Ms / ref.p50Ms) : NaN,
      ratioP99: ref.p99Ms > 0 ? round(paths[id].p99Ms / ref.p99Ms) : NaN,
      excessP99Ms: round(paths[id].p99Ms - ref.p99Ms),
    }));

    const warmupS = o.quick ? 0.3 : 2;
    const intervalS = o.quick ? 1 : 15;
    const configs: PulseAudioResults['cpu']['configs'] = [];
    for (const k of [1, 4, 16]) {
      log(`PulseAudio cpu: ${k} loop(s), ${intervalS} s`);
      const ours = await cpuOurs(k, daemon.pid, paPid, socketDir, warmupS, intervalS);
      const peerCpu = await cpuPeer(k, paPid, warmupS, intervalS);
      configs.push({ loops: k, ours, peer: peerCpu, ratioCpu: peerCpu.cpuPct > 0 ? round(ours.cpuPct / peerCpu.cpuPct) : NaN });
    }
    return { server: `PulseAudio ${version}`, latency: { durationS: o.latencyS, paths, comparisons }, cpu: { intervalS, configs } };
  } finally {
    if (daemon) await stopChild(daemon);
    server?.stop();
  }
}
