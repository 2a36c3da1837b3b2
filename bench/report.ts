/** The bench's result shape (latest.json) and its text renderings. */
import * as fs from 'node:fs';
import type { CpuSample } from './cpu';
import type { DspResult } from './dsp';
import type { PathResult } from './paths';
import type { PulseAudioResults } from './pulseaudio';

export interface PathSummary {
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  minMs: number;
  maxMs: number;
  samples: number;
  framesWritten: number;
  framesReceived: number;
  lostFrames: number;
  duplicatedFrames: number;
  silenceInserted: number;
  restarts: number;
  /** each run's p50/p99 when the path was measured more than once (a fresh client stream each time) */
  runs?: { p50Ms: number; p99Ms: number }[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * One path measured several times, each with fresh client streams: a
 * client stream keeps the buffer fill it had when the graph first pulled it
 * for its whole life (seen: pacat -> us 9.4, 30.8, 9.6 ms p50 in three
 * runs; pw-loopback 28.2, 17.1, 13.8), so one run is one draw. p50, p99 and
 * mean are the medians over the runs, min/max over all, counts summed.
 */
export function mergeRuns(runs: PathSummary[]): PathSummary {
  if (runs.length === 1) return runs[0]!;
  const sum = (k: 'samples' | 'framesWritten' | 'framesReceived' | 'lostFrames' | 'duplicatedFrames' | 'silenceInserted' | 'restarts'): number =>
    runs.reduce((a, r) => a + r[k], 0);
  return {
    p50Ms: median(runs.map((r) => r.p50Ms)),
    p99Ms: median(runs.map((r) => r.p99Ms)),
    meanMs: median(runs.map((r) => r.meanMs)),
    minMs: Math.min(...runs.map((r) => r.minMs)),
    maxMs: Math.max(...runs.map((r) => r.maxMs)),
    samples: sum('samples'),
    framesWritten: sum('framesWritten'),
    framesReceived: sum('framesReceived'),
    lostFrames: sum('lostFrames'),
    duplicatedFrames: sum('duplicatedFrames'),
    silenceInserted: sum('silenceInserted'),
    restarts: sum('restarts'),
    runs: runs.map((r) => ({ p50Ms: r.p50Ms, p99Ms: r.p99Ms })),
  };
}

/** What the report keeps of one measured path. */
export function pathSummary(r: PathResult): PathSummary {
  return {
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    meanMs: r.meanMs,
    minMs: r.minMs,
    maxMs: r.maxMs,
    samples: r.samples,
    framesWritten: r.written,
    framesReceived: r.stats.frames,
    lostFrames: r.stats.lost + r.missingAtEnd,
    duplicatedFrames: r.stats.duplicated,
    silenceInserted: r.stats.silenceInserted,
    restarts: r.restarts,
  };
}

export interface ExactSummary {
  /** the daemon's xrun counter for the loop (overruns of the sink ring / underruns of the source ring) */
  daemonXruns: number;
  framesIn: number;
  framesOut: number;
  bytesReceived: number;
  /** see PathResult.restarts */
  restarts: number;
  lostFrames: number;
  duplicatedFrames: number;
  silenceInserted: number;
  p50Ms: number;
  p99Ms: number;
}

export interface BenchResults {
  version: 1;
  date: string;
  mode: 'quick' | 'full';
  elapsedS: number;
  machine: {
    cores: number;
    cpuModel: string;
    loadavg: number[];
    kernel: string;
    node: string;
    pipewire: string;
    defaultQuantum: number;
    measuredQuantum: number;
    rate: number;
    format: string;
    clientLatencyMs: number;
  };
  latency: {
    method: string;
    durationS: number;
    /** how many times each path was measured (absent: once) */
    runs?: number;
    paths: Record<string, PathSummary>;
    comparisons: { ours: string; peer: string; ratioP50: number; ratioP99: number; excessP99Ms: number; targetMs: number; met: boolean }[];
  };
  /** OPEN latency=MS (5, 10, 20 ms) against pw-loopback --latency MS, pw-play/pw-record asking the same */
  requestedLatency?: {
    requestedMs: number;
    ours: { p50Ms: number; p99Ms: number; lostFrames: number; grantedFrames: number };
    peer: { p50Ms: number; p99Ms: number; lostFrames: number };
  }[];
  cpu: {
    method: string;
    intervalS: number;
    daemonRssIdleKiB: number;
    configs: { loops: number; ours: CpuSample; peer: CpuSample; ratioCpu: number; ratioRss: number }[];
  };
  exactness: { durationS: number; clientLatencyMs: number; c2s: ExactSummary; s2c: ExactSummary };
  /** the same loop on a real PulseAudio against its own null sink + parec (bench/pulseaudio.ts) */
  pulseaudio?: PulseAudioResults;
  dsp: DspResult[];
  targets: {
    latency: { rule: string; targetMs: number; met: boolean };
    cpu: { rule: string; valuePct: number; met: boolean };
    exactness: { rule: string; lost: number; duplicated: number; met: boolean };
    /** the data-plane targets (issue 11), each check against a peer measured in the same run; absent in older results */
    dataPlane?: DataPlaneTargets;
  };
}

export interface DataPlaneCheck {
  name: string;
  value: number;
  limit: number;
  unit: string;
  met: boolean;
}
export interface DataPlaneTargets {
  checks: DataPlaneCheck[];
  met: boolean;
}

/**
 * The data-plane targets: CPU ratio daemon / pw-loopback <= 1.0 at every
 * loop count and 16 loops under 3 % of one core; RSS at 1 loop <= 55 MiB and
 * at 16 loops <= 0.5x the pw-loopback processes; latency p99 ours / peer <=
 * 1.0 on every compared path. A missing figure (NaN) is not met.
 */
export function dataPlaneTargets(configs: BenchResults['cpu']['configs'], comparisons: BenchResults['latency']['comparisons']): DataPlaneTargets {
  const checks: DataPlaneCheck[] = [];
  const add = (name: string, value: number, limit: number, unit: string): void =>
    void checks.push({ name, value, limit, unit, met: Number.isFinite(value) && value <= limit });
  for (const c of configs) add(`CPU ratio at ${c.loops} loop(s)`, c.ratioCpu, 1, 'x');
  const c16 = configs.find((c) => c.loops === 16);
  const c1 = configs.find((c) => c.loops === 1);
  add('CPU at 16 loops', c16?.ours.cpuPct ?? NaN, 3, '% of one core');
  add('RSS at 1 loop', (c1?.ours.rssKiB ?? NaN) / 1024, 55, 'MiB');
  add('RSS ratio at 16 loops', c16?.ratioRss ?? NaN, 0.5, 'x');
  for (const c of comparisons) add(`latency p99 ${c.ours} / ${c.peer}`, c.ratioP99, 1, 'x');
  return { checks, met: checks.length > 0 && checks.every((c) => c.met) };
}

/** (daemon + sound server) / (peer + sound server): no cost moved into the sound server unseen */
export function withServerRatio(ours: CpuSample, peer: CpuSample): number {
  const d = peer.cpuPct + peer.pipewireCpuPct;
  return d > 0 ? (ours.cpuPct + ours.pipewireCpuPct) / d : NaN;
}

export const PATH_LABELS: Record<string, string> = {
  ours_c2s_pulse: 'ours client->server (pacat -> audioloop -> server)',
  ours_s2c_pulse: 'ours server->client (server -> audioloop -> parec)',
  nullsink_pulse: 'null sink (pacat -> null sink -> parec monitor)',
  pwloopback_pulse: 'pw-loopback (pacat -> loopback -> parec)',
  ours_c2s_pw: 'ours client->server (pw-play -> audioloop -> server)',
  ours_s2c_pw: 'ours server->client (server -> audioloop -> pw-record)',
  nullsink_pw: 'null sink (pw-play -> null sink -> pw-record monitor)',
  pwloopback_pw: 'pw-loopback (pw-play -> loopback -> pw-record)',
};

export const PA_PATH_LABELS: Record<string, string> = {
  ours_c2s: 'ours client->server (pacat -> audioloop -> server)',
  ours_s2c: 'ours server->client (server -> audioloop -> parec)',
  nullsink: 'PulseAudio null sink, defaults (pacat -> null sink -> parec monitor)',
  nullsink_norewinds: 'PulseAudio null sink norewinds=1, as our loop loads it',
};

/** a number with `d` decimals, or n/a (shared with the plot) */
export function f(x: number, d = 1): string {
  return Number.isFinite(x) ? x.toFixed(d) : 'n/a';
}

function yes(b: boolean): string {
  return b ? 'met' : 'NOT met';
}

/** The Markdown section (README includes it between the bench markers). */
export function renderMarkdown(r: BenchResults): string {
  const m = r.machine;
  const L: string[] = [];
  L.push(`Run ${r.date} (${r.mode} mode, ${r.elapsedS} s): ${m.cores} cores (${m.cpuModel}), load average ${m.loadavg.join(' ')} at the end, ` +
    `PipeWire ${m.pipewire}, Node ${m.node}; ${m.format} ${m.rate} Hz; clients ask for ${m.clientLatencyMs} ms, which gives a graph quantum of ` +
    `${m.measuredQuantum} frames (${f((m.measuredQuantum / m.rate) * 1000, 2)} ms; default quantum ${m.defaultQuantum}).`);
  L.push('');
  const nRuns = r.latency.runs ?? 1;
  L.push(`**Latency** (counter-timestamp method, ${r.latency.durationS} s per path${nRuns > 1 ? `, ${nRuns} runs each with fresh client streams, interleaved; p50/p99 are the medians over the runs` : ''}; end to end, including the client tools' own buffers):`);
  L.push('');
  L.push('| path | p50 ms | p99 ms | p50 of each run | lost / dup frames | restarts |');
  L.push('|---|---:|---:|---:|---:|---:|');
  for (const [id, p] of Object.entries(r.latency.paths))
    L.push(`| ${PATH_LABELS[id] ?? id} | ${f(p.p50Ms)} | ${f(p.p99Ms)} | ${p.runs ? p.runs.map((x) => f(x.p50Ms)).join(', ') : '-'} | ${p.lostFrames} / ${p.duplicatedFrames} | ${p.restarts} |`);
  L.push('');
  L.push(`| ours vs peer | ratio p50 | ratio p99 | ours p99 - peer p99 (target <= ${f(r.targets.latency.targetMs, 2)} ms) |`);
  L.push('|---|---:|---:|---:|');
  for (const c of r.latency.comparisons)
    L.push(`| ${c.ours} / ${c.peer} | ${f(c.ratioP50, 2)} | ${f(c.ratioP99, 2)} | ${f(c.excessP99Ms)} ms (${yes(c.met)}) |`);
  L.push('');
  if (r.requestedLatency?.length) {
    L.push('**Latency chosen by the server** (OPEN `latency=MS`; pw-play asks the same MS; peer: `pw-loopback --latency MS` with pw-play -> it -> pw-record; granted = the quantum `status` showed):');
    L.push('');
    L.push('| requested ms | ours p50 ms | ours p99 ms | granted quantum (ms) | pw-loopback p50 ms | pw-loopback p99 ms | lost ours / peer |');
    L.push('|---:|---:|---:|---:|---:|---:|---:|');
    for (const q of r.requestedLatency)
      L.push(`| ${q.requestedMs} | ${f(q.ours.p50Ms)} | ${f(q.ours.p99Ms)} | ${q.ours.grantedFrames} (${f((q.ours.grantedFrames / r.machine.rate) * 1000, 2)}) | ${f(q.peer.p50Ms)} | ${f(q.peer.p99Ms)} | ${q.ours.lostFrames} / ${q.peer.lostFrames} |`);
    L.push('');
  }
  L.push(`**CPU and memory** (${r.cpu.intervalS} s per point, % of one core; ours = the daemon process, peer = the pw-loopback processes; pipewire itself for context):`);
  L.push('');
  L.push('| loops | ours CPU % | per loop | peer CPU % | per loop | ratio | ours RSS MiB | peer RSS MiB | ratio | pipewire CPU % ours / peer | ratio with pipewire |');
  L.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of r.cpu.configs)
    L.push(`| ${c.loops} | ${f(c.ours.cpuPct, 2)} | ${f(c.ours.cpuPctPerLoop, 2)} | ${f(c.peer.cpuPct, 2)} | ${f(c.peer.cpuPctPerLoop, 2)} | ${f(c.ratioCpu, 2)} | ` +
      `${f(c.ours.rssKiB / 1024)} | ${f(c.peer.rssKiB / 1024)} | ${f(c.ratioRss, 2)} | ${f(c.ours.pipewireCpuPct)} / ${f(c.peer.pipewireCpuPct)} | ${f(withServerRatio(c.ours, c.peer), 2)} |`);
  L.push('');
  const e = r.exactness;
  L.push(`**Sample exactness** (${e.durationS} s counter pattern, both directions at once, clients at ${e.clientLatencyMs} ms):`);
  L.push('');
  L.push('| direction | frames in | frames out | lost | duplicated | silence inserted | daemon xruns | restarts |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|');
  L.push(`| pacat -> audioloop0 -> server | ${e.c2s.framesIn} | ${e.c2s.framesOut} | ${e.c2s.lostFrames} | ${e.c2s.duplicatedFrames} | ${e.c2s.silenceInserted} | ${e.c2s.daemonXruns} | ${e.c2s.restarts} |`);
  L.push(`| server -> audioloop1 -> pw-record | ${e.s2c.framesIn} | ${e.s2c.framesOut} | ${e.s2c.lostFrames} | ${e.s2c.duplicatedFrames} | ${e.s2c.silenceInserted} | ${e.s2c.daemonXruns} | ${e.s2c.restarts} |`);
  L.push('');
  const pa = r.pulseaudio;
  if (pa) {
    L.push(`**PulseAudio** (${pa.server}, a private headless one with the PulseAudio backend; pacat/parec at ${m.clientLatencyMs} ms; ` +
      `latency ${pa.latency.durationS} s per path; CPU ${pa.cpu.intervalS} s per point, % of one core, pulseaudio counted on both sides: ` +
      `ours = the daemon + pulseaudio, peer = K norewinds=1 null sinks with parec on their monitors, the parec processes + pulseaudio):`);
    L.push('');
    L.push('| path | p50 ms | p99 ms | lost / dup frames | ours p99 - norewinds null sink p99 |');
    L.push('|---|---:|---:|---:|---:|');
    for (const [id, p] of Object.entries(pa.latency.paths)) {
      const c = pa.latency.comparisons.find((x) => x.ours === id);
      L.push(`| ${PA_PATH_LABELS[id] ?? id} | ${f(p.p50Ms)} | ${f(p.p99Ms)} | ${p.lostFrames} / ${p.duplicatedFrames} | ${c ? `${f(c.excessP99Ms)} ms` : '-'} |`);
    }
    L.push('');
    L.push('| loops | ours CPU % | per loop | null sink + parec CPU % | per loop | ratio | pulseaudio CPU % ours / peer | ours RSS MiB |');
    L.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const c of pa.cpu.configs)
      L.push(`| ${c.loops} | ${f(c.ours.cpuPct, 2)} | ${f(c.ours.cpuPctPerLoop, 2)} | ${f(c.peer.cpuPct, 2)} | ${f(c.peer.cpuPctPerLoop, 2)} | ${f(c.ratioCpu, 2)} | ` +
        `${f(c.ours.pipewireCpuPct)} / ${f(c.peer.pipewireCpuPct)} | ${f(c.ours.rssKiB / 1024)} |`);
    L.push('');
  }
  L.push('**DSP throughput** (one JS thread, 48 kHz stereo):');
  L.push('');
  L.push('| operation | x realtime |');
  L.push('|---|---:|');
  for (const d of r.dsp) L.push(`| ${d.name} | ${f(d.xRealtime, 0)} |`);
  L.push('');
  const t = r.targets;
  L.push(`**Targets**: latency (${t.latency.rule}): ${yes(t.latency.met)}; CPU (${t.cpu.rule}): ${f(t.cpu.valuePct, 2)} %, ${yes(t.cpu.met)}; ` +
    `exactness (${t.exactness.rule}): ${t.exactness.lost} lost, ${t.exactness.duplicated} duplicated, ${yes(t.exactness.met)}.`);
  L.push('');
  if (t.dataPlane) {
    L.push(`**Data-plane targets** (each against the peer measured in this run): ${yes(t.dataPlane.met)} in all; not met: ` +
      (t.dataPlane.checks.filter((c) => !c.met).map((c) => `${c.name} ${f(c.value, 2)} ${c.unit} (limit ${c.limit})`).join('; ') || 'none') + '.');
    L.push('');
  }
  L.push('![latency and CPU plot](bench/results/latest.png)');
  return L.join('\n') + '\n';
}

/** A compact plain-text table for the terminal. */
export function renderTable(r: BenchResults): string {
  const L: string[] = [];
  const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
  const lpad = (s: string, n: number): string => (s.length >= n ? s : ' '.repeat(n - s.length) + s);
  L.push(`audioloop bench (${r.mode}), PipeWire ${r.machine.pipewire}, ${r.machine.cores} cores, quantum ${r.machine.measuredQuantum}, load ${r.machine.loadavg.join(' ')}`);
  L.push('');
  L.push(`${pad('latency path', 56)}${lpad('p50 ms', 9)}${lpad('p99 ms', 9)}${lpad('lost', 7)}`);
  for (const [id, p] of Object.entries(r.latency.paths))
    L.push(`${pad(PATH_LABELS[id] ?? id, 56)}${lpad(f(p.p50Ms), 9)}${lpad(f(p.p99Ms), 9)}${lpad(String(p.lostFrames), 7)}`);
  L.push('');
  L.push(`${pad('ours / peer', 42)}${lpad('p50 x', 8)}${lpad('p99 x', 8)}${lpad('p99 diff ms', 13)}`);
  for (const c of r.latency.comparisons)
    L.push(`${pad(`${c.ours} / ${c.peer}`, 42)}${lpad(f(c.ratioP50, 2), 8)}${lpad(f(c.ratioP99, 2), 8)}${lpad(f(c.excessP99Ms), 13)}`);
  L.push('');
  for (const q of r.requestedLatency ?? [])
    L.push(`requested ${lpad(String(q.requestedMs), 3)} ms: ours p50/p99 ${f(q.ours.p50Ms)}/${f(q.ours.p99Ms)} ms (granted quantum ${q.ours.grantedFrames}), pw-loopback ${f(q.peer.p50Ms)}/${f(q.peer.p99Ms)} ms`);
  if (r.requestedLatency?.length) L.push('');
  L.push(`${pad('loops', 7)}${lpad('ours %', 9)}${lpad('peer %', 9)}${lpad('ratio', 8)}${lpad('ours MiB', 10)}${lpad('peer MiB', 10)}${lpad('ratio', 8)}`);
  for (const c of r.cpu.configs)
    L.push(`${pad(String(c.loops), 7)}${lpad(f(c.ours.cpuPct, 2), 9)}${lpad(f(c.peer.cpuPct, 2), 9)}${lpad(f(c.ratioCpu, 2), 8)}` +
      `${lpad(f(c.ours.rssKiB / 1024), 10)}${lpad(f(c.peer.rssKiB / 1024), 10)}${lpad(f(c.ratioRss, 2), 8)}`);
  L.push('');
  const e = r.exactness;
  L.push(`exactness ${e.durationS} s: c->s ${e.c2s.framesIn} in, ${e.c2s.framesOut} out, ${e.c2s.lostFrames} lost, ${e.c2s.duplicatedFrames} dup; ` +
    `s->c ${e.s2c.framesIn} in, ${e.s2c.framesOut} out, ${e.s2c.lostFrames} lost, ${e.s2c.duplicatedFrames} dup`);
  L.push('');
  if (r.pulseaudio) {
    const pa = r.pulseaudio;
    L.push(`${pa.server}:`);
    for (const [id, p] of Object.entries(pa.latency.paths))
      L.push(`${pad(PA_PATH_LABELS[id] ?? id, 56)}${lpad(f(p.p50Ms), 9)}${lpad(f(p.p99Ms), 9)}${lpad(String(p.lostFrames), 7)}`);
    for (const c of pa.cpu.configs)
      L.push(`${pad(String(c.loops), 7)}${lpad(f(c.ours.cpuPct, 2), 9)}${lpad(f(c.peer.cpuPct, 2), 9)}${lpad(f(c.ratioCpu, 2), 8)}  (CPU %: ours = daemon + pulseaudio, peer = parec + pulseaudio)`);
    L.push('');
  }
  for (const d of r.dsp) L.push(`${pad(d.name, 42)}${lpad(f(d.xRealtime, 0), 10)} x realtime`);
  L.push('');
  const t = r.targets;
  L.push(`targets: latency ${yes(t.latency.met)} (<= ${f(t.latency.targetMs, 2)} ms over peer p99), cpu ${yes(t.cpu.met)} (${f(t.cpu.valuePct, 2)} % for 16 loops), ` +
    `exactness ${yes(t.exactness.met)} (${t.exactness.lost} lost, ${t.exactness.duplicated} dup)`);
  if (t.dataPlane)
    for (const c of t.dataPlane.checks) L.push(`  ${c.met ? 'met    ' : 'NOT met'} ${c.name}: ${f(c.value, 2)} ${c.unit} (limit ${c.limit})`);
  return L.join('\n');
}

export const README_BEGIN = '<!-- bench:begin (generated by `npm run bench -- --update-readme` from bench/results/latest.md) -->';
export const README_END = '<!-- bench:end -->';

/** Replaces the text between the markers in README.md with `md`. */
export function updateReadme(file: string, md: string): void {
  const text = fs.readFileSync(file, 'utf8');
  const a = text.indexOf(README_BEGIN);
  const b = text.indexOf(README_END);
  if (a < 0 || b < a) throw new Error(`${file} has no bench markers (${README_BEGIN} ... ${README_END})`);
  const out = text.slice(0, a + README_BEGIN.length) + '\n' + md + text.slice(b);
  fs.writeFileSync(file, out);
}
