/**
 * audioloop benchmarks against peers measured in the same run.
 *
 *   npm run bench [-- --quick] [-- --duration 3m] [-- --update-readme]
 *
 * Starts its own private headless sound server and daemon (tracked PIDs,
 * stopped at the end), measures latency (ours and peers), daemon CPU/RSS
 * for 1/4/16 loops against pw-loopback, sample exactness over a long run,
 * and DSP throughput; prints a table and writes bench/results/latest.json,
 * latest.md and latest.png. See README.md, "Benchmarks".
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { startEmbeddedSoundServer, type EmbeddedSoundServer } from '../src/soundserver';
import { PipeWireBackend } from '../src/backend/pipewire';
import { controlSocketPath } from '../src/protocol';
import type { DaemonStatus } from '../src/daemon';
import { measureOurs, measurePeer, type CpuSample } from './cpu';
import { measureDsp } from './dsp';
import {
  CLIENT_LATENCY_MS,
  loadNullSink,
  oursClientToServer,
  oursServerToClient,
  peerPath,
  playerArgs,
  startLoopback,
  unloadModule,
  type Family,
  type PathResult,
} from './paths';
import { killAllSync, rssKiB, runSync, sleep, spawnChild, stopAll, stopChild, waitFor } from './proc';
import { dataPlaneTargets, mergeRuns, pathSummary, renderMarkdown, renderTable, updateReadme, type BenchResults, type PathSummary } from './report';
import { renderPng } from './png';
import { measurePulseAudio, type PulseAudioResults } from './pulseaudio';

const ROOT = path.resolve(__dirname, '..', '..');
const HELP = `usage: npm run bench -- [options]
       node dist/bench/run.js [options]

Benchmarks audioloop against peers (pw-loopback, a PulseAudio null sink)
in one run, on a private headless sound server that it starts and stops.

  --quick              smoke test: short runs (about 40 s in all)
  --duration D         length of the sample-exactness run: seconds, or with
                       a unit (90s, 3m, 1h); default 3m (quick: 2s)
  --latency-duration D length of each latency run (default 10s, quick 1s)
  --latency-runs N     measure each latency path N times, interleaved, with
                       fresh client streams (default 3, quick 2): a client
                       stream keeps its start-up buffer fill for life, so
                       one run is one draw; the report gives the medians
  --out DIR            where to write latest.json/.md/.png (default bench/results)
  --update-readme      replace the table between the bench markers in README.md
                       with the new latest.md
  -h, --help

Environment: BENCH_QUICK=1 and BENCH_DURATION=D do what the flags do.
Exit codes: 0 done (targets are reported, never enforced), 1 error, 2 usage.`;

function parseDuration(v: string, name: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new UsageError(`${name} must be a number of seconds or have a unit (500ms, 90s, 3m, 1h), got "${v}"`);
  const n = Number(m[1]);
  const s = m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 'ms' ? n / 1000 : n;
  if (!(s > 0) || s > 24 * 3600) throw new UsageError(`${name} must be between 0 and 24 h, got "${v}"`);
  return s;
}

class UsageError extends Error {}

function parseRuns(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 20) throw new UsageError(`--latency-runs: an integer 1-20, got "${v}"`);
  return n;
}

interface Options {
  quick: boolean;
  durationS: number;
  latencyS: number;
  /** each latency path this many times, interleaved, fresh client streams each time */
  latencyRuns: number;
  outDir: string;
  updateReadme: boolean;
}

function options(argv: string[]): Options | null {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean' },
        duration: { type: 'string' },
        'latency-duration': { type: 'string' },
        'latency-runs': { type: 'string' },
        out: { type: 'string' },
        'update-readme': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const v = parsed.values;
  if (v.help) return null;
  const quick = !!v.quick || process.env.BENCH_QUICK === '1';
  const dur = v.duration ?? process.env.BENCH_DURATION;
  return {
    quick,
    durationS: dur !== undefined ? parseDuration(dur, '--duration') : quick ? 2 : 180,
    latencyS: v['latency-duration'] !== undefined ? parseDuration(v['latency-duration'], '--latency-duration') : quick ? 1 : 10,
    latencyRuns: v['latency-runs'] !== undefined ? parseRuns(v['latency-runs']) : quick ? 2 : 3,
    outDir: path.resolve(v.out ?? path.join(ROOT, 'bench', 'results')),
    updateReadme: !!v['update-readme'],
  };
}

const T0 = Date.now();
function log(msg: string): void {
  process.stderr.write(`bench [${((Date.now() - T0) / 1000).toFixed(1)} s]: ${msg}\n`);
}

function pidOf(dir: string, name: string): number {
  try {
    const line = fs.readFileSync(path.join(dir, 'pids'), 'utf8').split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : 0;
  } catch {
    return 0;
  }
}

function machine(): BenchResults['machine'] {
  const cpus = os.cpus();
  let pw = 'unknown';
  try {
    pw = /libpipewire ([\d.]+)/.exec(runSync('pipewire', ['--version']))?.[1] ?? pw;
  } catch {
    /* keep unknown */
  }
  let quantum = 0;
  try {
    quantum = Number(/clock\.quantum' value:'(\d+)'/.exec(runSync('pw-metadata', ['-n', 'settings']))?.[1] ?? 0);
  } catch {
    /* keep 0 */
  }
  return {
    cores: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100),
    kernel: os.release(),
    node: process.version,
    pipewire: pw,
    defaultQuantum: quantum,
    measuredQuantum: 0,
    rate: 48000,
    format: 's16le 2ch',
    clientLatencyMs: CLIENT_LATENCY_MS,
  };
}

/**
 * The graph quantum that clients asking for CLIENT_LATENCY_MS get: a probe
 * sink in this process, a pw-play client into it, the sink's cycle size.
 */
async function probeQuantum(): Promise<number> {
  const backend = new PipeWireBackend({ appName: 'audioloop-bench-probe' });
  const ep = backend.createEndpoint({ direction: 'sink', name: 'bench_probe', description: 'bench quantum probe', format: 's16le', rate: 48000, channels: 2, ringBytes: 1 << 16 });
  const zero = fs.openSync('/dev/zero', 'r');
  const [cmd, args] = playerArgs('pw', 'bench_probe');
  const player = spawnChild(cmd, args, { stdio: [zero, 'ignore', 'pipe'] });
  const drain = Buffer.alloc(1 << 16);
  const timer = setInterval(() => ep.read(drain), 10);
  try {
    await waitFor(() => ep.stats().cycles > 50 && ep.stats().links > 0, 10000, 'the probe to run');
    await sleep(300);
    return ep.stats().quantum;
  } finally {
    clearInterval(timer);
    await stopChild(player);
    fs.closeSync(zero);
    ep.destroy();
    backend.close();
  }
}

async function main(o: Options): Promise<void> {
  const t0 = Date.now();
  const rt = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-bench-'));
  let server: EmbeddedSoundServer | null = null;
  const cleanupSync = (): void => {
    killAllSync();
    server?.stop();
    fs.rmSync(rt, { recursive: true, force: true });
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`${sig}: stopping`);
    cleanupSync();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    log(`starting a private sound server in ${rt}`);
    server = await startEmbeddedSoundServer(rt);
    const pipewirePid = pidOf(rt, 'pipewire');
    const socketDir = path.join(rt, 'audioloop');
    // BENCH_DAEMON_LOG=FILE keeps the daemon's log (debug level) for a look afterwards
    const logFile = process.env.BENCH_DAEMON_LOG;
    const logFd = logFile ? fs.openSync(logFile, 'w') : null;
    const daemon = spawnChild(
      process.execPath,
      // as scripts/run.sh and the systemd unit start it (README "Memory")
      ['--lite-mode', path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'daemon', '-n', '16', '--sound-server', 'system', '-s', socketDir, '--log-level', logFd !== null ? 'debug' : 'warn'],
      logFd !== null ? { stdio: ['ignore', logFd, logFd] } : {},
    );
    if (logFd !== null) fs.closeSync(logFd);
    await waitFor(() => fs.existsSync(controlSocketPath(socketDir)) || daemon.proc.exitCode !== null, 15000, 'the daemon');
    if (daemon.proc.exitCode !== null) throw new Error(`bench: the daemon exited: ${daemon.stderr()}`);

    const m = machine();
    m.measuredQuantum = await probeQuantum();
    log(`PipeWire ${m.pipewire}, ${m.cores} cores, quantum ${m.measuredQuantum} at ${CLIENT_LATENCY_MS} ms client latency (default ${m.defaultQuantum})`);

    // (a) latency
    const lat: Record<string, PathSummary[]> = {};
    const nullIdx = loadNullSink('bench_null');
    const lb = await startLoopback('bench_lb');
    const lo = { durationS: o.latencyS };
    const keep = (id: string, r: PathResult): void => void (lat[id] ??= []).push(pathSummary(r));
    for (let run = 1; run <= o.latencyRuns; run++) {
      for (const fam of ['pulse', 'pw'] as Family[]) {
        log(`latency (${fam} tools, ${o.latencyS} s each, run ${run} of ${o.latencyRuns})`);
        keep(`ours_c2s_${fam}`, await oursClientToServer(0, fam, lo, socketDir));
        keep(`ours_s2c_${fam}`, await oursServerToClient(1, fam, lo, socketDir));
        keep(`nullsink_${fam}`, await peerPath(fam, 'bench_null', null, lo));
        keep(`pwloopback_${fam}`, await peerPath(fam, 'bench_lb', 'bench_lb_src', lo));
      }
    }
    await stopChild(lb);

    // (a2) latency chosen by the server: ours with OPEN latency=MS against pw-loopback --latency MS
    const requestedLatency: NonNullable<BenchResults['requestedLatency']> = [];
    for (const ms of [5, 10, 20]) {
      log(`requested latency ${ms} ms (pw tools, ${o.latencyS} s each)`);
      let grantedFrames = 0;
      const ours = await oursClientToServer(0, 'pw', {
        durationS: o.latencyS,
        clientLatencyMs: ms,
        latencyMs: ms,
        beforeCleanup: async () => {
          grantedFrames = (await daemonStatus(socketDir))?.loops[0]?.latency?.grantedFrames ?? 0;
        },
      }, socketDir);
      const lbN = await startLoopback(`bench_lb${ms}`, undefined, ms);
      const peer = await peerPath('pw', `bench_lb${ms}`, `bench_lb${ms}_src`, { durationS: o.latencyS, clientLatencyMs: ms });
      await stopChild(lbN);
      requestedLatency.push({
        requestedMs: ms,
        ours: { p50Ms: ours.p50Ms, p99Ms: ours.p99Ms, lostFrames: ours.stats.lost, grantedFrames },
        peer: { p50Ms: peer.p50Ms, p99Ms: peer.p99Ms, lostFrames: peer.stats.lost },
      });
    }

    // (b) CPU
    const cpuOpts = o.quick ? { warmupS: 0.3, intervalS: 1, pipewirePid } : { warmupS: 2, intervalS: 15, pipewirePid };
    const cpu: { loops: number; ours: CpuSample; peer: CpuSample }[] = [];
    for (const k of [1, 4, 16]) {
      log(`cpu: ${k} loop(s), ${cpuOpts.intervalS} s`);
      const ours = await measureOurs(k, daemon.pid, socketDir, cpuOpts);
      const peer = await measurePeer(k, 'bench_null', cpuOpts);
      cpu.push({ loops: k, ours, peer });
    }
    const daemonRssIdle = rssKiB(daemon.pid);
    // bench_null stays loaded through the exactness phase: it drove the graph
    // during the CPU phase, and unloading it right after our 16 loops and 16
    // pw-loopbacks left PipeWire 0.3.65 handing every playback stream zeros
    // (the exactness path's "silent stream"; README, Known limits)

    // (c) sample exactness: both directions at once, generous client buffers and a prefill
    log(`exactness: ${o.durationS} s through audioloop0 (pacat -> server) and audioloop1 (server -> pw-record)`);
    const exo = { durationS: o.durationS, leadMs: 150, clientLatencyMs: 100 };
    // the daemon's own xrun counters for the two loops, polled while they run (they reset on each open)
    const xruns = [0, 0];
    const poll = setInterval(() => {
      void daemonStatus(socketDir).then((st) => {
        for (const i of [0, 1]) {
          const l = st?.loops[i];
          if (l && (l.state === 'running' || l.state === 'draining')) xruns[i] = Math.max(xruns[i]!, l.xruns);
        }
      });
    }, 500);
    const [c2s, s2c] = await Promise.all([oursClientToServer(0, 'pulse', exo, socketDir), oursServerToClient(1, 'pw', exo, socketDir)]).finally(() => clearInterval(poll));
    unloadModule(nullIdx);

    // (d) DSP
    log('dsp throughput');
    const dsp = await measureDsp(o.quick ? 0.25 : 5, o.quick ? 0.05 : 1);

    await stopChild(daemon);

    // (e) the PulseAudio column: the same loop on a real PulseAudio against its own null sink
    // (BENCH_NO_PULSEAUDIO=1, or no pulseaudio installed, skips it)
    let pulseaudio: PulseAudioResults | undefined;
    if (process.env.BENCH_NO_PULSEAUDIO !== '1' && hasPulseAudio()) {
      server.stop(); // the PipeWire part is done
      server = null;
      pulseaudio = await measurePulseAudio(path.join(rt, 'pulseaudio'), path.join(ROOT, 'dist', 'src', 'cli', 'main.js'), o, log);
    } else {
      log('PulseAudio column skipped');
    }
    const results: BenchResults = {
      ...buildResults(o, m, lat, cpu, daemonRssIdle, { c2s, s2c, xruns }, dsp, (Date.now() - t0) / 1000),
      requestedLatency,
      ...(pulseaudio ? { pulseaudio } : {}),
    };
    fs.mkdirSync(o.outDir, { recursive: true });
    const md = renderMarkdown(results);
    writeAtomic(path.join(o.outDir, 'latest.json'), JSON.stringify(results, null, 2) + '\n');
    writeAtomic(path.join(o.outDir, 'latest.md'), md);
    writeAtomic(path.join(o.outDir, 'latest.png'), renderPng(results));
    process.stdout.write(renderTable(results) + '\n');
    log(`wrote ${path.join(o.outDir, 'latest.{json,md,png}')} in ${results.elapsedS} s`);
    if (o.updateReadme) {
      updateReadme(path.join(ROOT, 'README.md'), md);
      log('updated README.md');
    }
  } finally {
    await stopAll();
    server?.stop();
    fs.rmSync(rt, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function hasPulseAudio(): boolean {
  try {
    runSync('pulseaudio', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** The daemon's STATUS (null on any failure). */
function daemonStatus(socketDir: string): Promise<DaemonStatus | null> {
  return new Promise((resolve) => {
    const sock = net.connect(controlSocketPath(socketDir));
    let buf = '';
    const t = setTimeout(() => {
      sock.destroy();
      resolve(null);
    }, 2000);
    sock.on('data', (d) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(t);
      sock.destroy();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as DaemonStatus);
      } catch {
        resolve(null);
      }
    });
    sock.on('error', () => {
      clearTimeout(t);
      resolve(null);
    });
    sock.write('STATUS\n');
  });
}

function writeAtomic(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

function ratio(a: number, b: number): number {
  return b > 0 ? Math.round((a / b) * 100) / 100 : NaN;
}

function buildResults(
  o: Options,
  m: BenchResults['machine'],
  lat: Record<string, PathSummary[]>,
  cpu: { loops: number; ours: CpuSample; peer: CpuSample }[],
  daemonRssIdle: number,
  exact: { c2s: PathResult; s2c: PathResult; xruns: number[] },
  dsp: BenchResults['dsp'],
  elapsedS: number,
): BenchResults {
  const quantumMs = (m.measuredQuantum / m.rate) * 1000;
  const targetMs = Math.round((quantumMs + 2) * 100) / 100;
  const paths: BenchResults['latency']['paths'] = {};
  for (const [id, runs] of Object.entries(lat)) paths[id] = mergeRuns(runs);
  const comparisons: BenchResults['latency']['comparisons'] = [];
  for (const fam of ['pulse', 'pw']) {
    for (const dir of ['c2s', 's2c']) {
      for (const peer of ['nullsink', 'pwloopback']) {
        const a = paths[`ours_${dir}_${fam}`]!;
        const b = paths[`${peer}_${fam}`]!;
        const excess = Math.round((a.p99Ms - b.p99Ms) * 100) / 100;
        comparisons.push({
          ours: `ours_${dir}_${fam}`,
          peer: `${peer}_${fam}`,
          ratioP50: ratio(a.p50Ms, b.p50Ms),
          ratioP99: ratio(a.p99Ms, b.p99Ms),
          excessP99Ms: excess,
          targetMs,
          met: excess <= targetMs,
        });
      }
    }
  }
  const exactOut = (r: PathResult, daemonXruns: number) => ({
    daemonXruns,
    framesIn: r.written,
    framesOut: r.stats.frames,
    bytesReceived: r.bytesReceived,
    restarts: r.restarts,
    lostFrames: r.stats.lost + r.missingAtEnd,
    duplicatedFrames: r.stats.duplicated,
    silenceInserted: r.stats.silenceInserted,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
  });
  const ex = { c2s: exactOut(exact.c2s, exact.xruns[0]!), s2c: exactOut(exact.s2c, exact.xruns[1]!) };
  const cpu16 = cpu.find((c) => c.loops === 16);
  const cpuConfigs = cpu.map((c) => ({
    loops: c.loops,
    ours: c.ours,
    peer: c.peer,
    ratioCpu: ratio(c.ours.cpuPct, c.peer.cpuPct),
    ratioRss: ratio(c.ours.rssKiB, c.peer.rssKiB),
  }));
  return {
    version: 1,
    date: new Date().toISOString(),
    mode: o.quick ? 'quick' : 'full',
    elapsedS: Math.round(elapsedS),
    machine: m,
    latency: {
      method: 'counter-timestamp: s16le stereo frames carry their index; latency = receive time - write time, sampled every 48th frame',
      durationS: o.latencyS,
      runs: o.latencyRuns,
      paths,
      comparisons,
    },
    cpu: {
      method: 'utime+stime from /proc/PID/stat over a fixed interval, % of one core; RSS = VmRSS',
      intervalS: o.quick ? 1 : 15,
      daemonRssIdleKiB: daemonRssIdle,
      configs: cpuConfigs,
    },
    exactness: { durationS: o.durationS, clientLatencyMs: 100, ...ex },
    dsp,
    targets: {
      latency: { rule: 'ours p99 - peer p99 <= 1 quantum + 2 ms', targetMs, met: comparisons.every((c) => c.met) },
      cpu: { rule: '16 loops < 5 % of one core', valuePct: cpu16?.ours.cpuPct ?? NaN, met: (cpu16?.ours.cpuPct ?? Infinity) < 5 },
      exactness: {
        rule: 'zero lost (and duplicated) frames',
        lost: ex.c2s.lostFrames + ex.s2c.lostFrames,
        duplicated: ex.c2s.duplicatedFrames + ex.s2c.duplicatedFrames,
        met: ex.c2s.lostFrames + ex.s2c.lostFrames + ex.c2s.duplicatedFrames + ex.s2c.duplicatedFrames === 0,
      },
      dataPlane: dataPlaneTargets(cpuConfigs, comparisons),
    },
  };
}

if (require.main === module) {
  let o: Options | null;
  try {
    o = options(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n\n${HELP}\n`);
    process.exit(2);
  }
  if (!o) {
    process.stdout.write(HELP + '\n');
    process.exit(0);
  }
  main(o).then(
    () => process.exit(0),
    (e: Error) => {
      process.stderr.write(`bench: failed: ${e.stack ?? e.message}\n`);
      process.exit(1);
    },
  );
}
