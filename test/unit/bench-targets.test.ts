/** The bench's data-plane targets (issue 11): each check against the peer of the same run; a missing figure is not met. */
import assert from 'node:assert/strict';
import { dataPlaneTargets, mergeRuns, renderTable, withServerRatio, type BenchResults, type PathSummary } from '../../bench/report';
import type { CpuSample } from '../../bench/cpu';

const sample = (cpuPct: number, rssMiB: number, pipewireCpuPct = 1): CpuSample => ({ cpuPct, cpuPctPerLoop: cpuPct, rssKiB: rssMiB * 1024, pipewireCpuPct });
const config = (loops: number, ours: CpuSample, peer: CpuSample): BenchResults['cpu']['configs'][number] => ({
  loops,
  ours,
  peer,
  ratioCpu: ours.cpuPct / peer.cpuPct,
  ratioRss: ours.rssKiB / peer.rssKiB,
});
const cmp = (ours: string, ratioP99: number): BenchResults['latency']['comparisons'][number] => ({ ours, peer: 'pwloopback', ratioP50: 1, ratioP99, excessP99Ms: 0, targetMs: 12.67, met: true });

describe('bench data-plane targets', function () {
  it('all met: every CPU ratio <= 1, 16 loops < 3 %, RSS <= 55 MiB and <= 0.5x, every p99 ratio <= 1', function () {
    const t = dataPlaneTargets(
      [config(1, sample(0.5, 54), sample(0.53, 8)), config(4, sample(0.9, 56), sample(1.6, 32)), config(16, sample(2.6, 60), sample(5, 127))],
      [cmp('a', 0.8), cmp('b', 1)],
    );
    assert.equal(t.checks.length, 3 + 3 + 2);
    assert.deepEqual(t.checks.filter((c) => !c.met), []);
    assert.equal(t.met, true);
  });

  it('names each check that is not met, with its value and limit; NaN is not met', function () {
    const t = dataPlaneTargets(
      [config(1, sample(0.8, 54.1), sample(0.53, 8.1)), config(16, sample(3.2, 64.6), sample(4.99, 127.3))],
      [cmp('ours_c2s_pulse', 1.52), cmp('ours_s2c_pw', NaN)],
    );
    const notMet = t.checks.filter((c) => !c.met).map((c) => [c.name, c.limit]);
    assert.deepEqual(notMet, [
      ['CPU ratio at 1 loop(s)', 1],
      ['CPU at 16 loops', 3],
      ['RSS ratio at 16 loops', 0.5],
      ['latency p99 ours_c2s_pulse / pwloopback', 1],
      ['latency p99 ours_s2c_pw / pwloopback', 1],
    ]);
    assert.equal(t.met, false);
    const rss = t.checks.find((c) => c.name === 'RSS ratio at 16 loops');
    assert.ok(rss && Math.abs(rss.value - 64.6 / 127.3) < 1e-9);
  });

  it('no loops measured: the 16-loop and 1-loop checks are not met (never vacuously true)', function () {
    const t = dataPlaneTargets([], []);
    assert.equal(t.met, false);
    assert.deepEqual(t.checks.map((c) => c.met), [false, false, false]);
  });

  it('withServerRatio: (daemon + pipewire) / (peer + pipewire)', function () {
    assert.equal(withServerRatio(sample(1, 0, 2), sample(2, 0, 4)), 0.5);
    assert.ok(Number.isNaN(withServerRatio(sample(1, 0, 0), sample(0, 0, 0))));
  });

  it('renderTable lists every data-plane check with met / NOT met', function () {
    const r = {
      mode: 'full',
      machine: { pipewire: '0.3.65', cores: 2, measuredQuantum: 512, loadavg: [0] },
      latency: { paths: {}, comparisons: [] },
      cpu: { configs: [config(1, sample(0.8, 54), sample(0.5, 8))] },
      exactness: { durationS: 1, c2s: { framesIn: 0, framesOut: 0, lostFrames: 0, duplicatedFrames: 0 }, s2c: { framesIn: 0, framesOut: 0, lostFrames: 0, duplicatedFrames: 0 } },
      dsp: [],
      targets: {
        latency: { rule: '', targetMs: 1, met: true },
        cpu: { rule: '', valuePct: 1, met: true },
        exactness: { rule: '', lost: 0, duplicated: 0, met: true },
        dataPlane: dataPlaneTargets([config(1, sample(0.8, 54), sample(0.5, 8))], []),
      },
    } as unknown as BenchResults;
    const text = renderTable(r);
    assert.match(text, /NOT met CPU ratio at 1 loop\(s\): 1\.60 x \(limit 1\)/);
    assert.match(text, /met {5}RSS at 1 loop: 54\.00 MiB \(limit 55\)/);
    assert.match(text, /NOT met CPU at 16 loops: n\/a/);
  });
});

describe('bench mergeRuns: one path measured several times', function () {
  const run = (p50Ms: number, p99Ms: number, lost = 0): PathSummary => ({
    p50Ms,
    p99Ms,
    meanMs: p50Ms,
    minMs: p50Ms - 1,
    maxMs: p99Ms + 1,
    samples: 100,
    framesWritten: 1000,
    framesReceived: 1000 - lost,
    lostFrames: lost,
    duplicatedFrames: 0,
    silenceInserted: 0,
    restarts: 0,
  });

  it('p50/p99/mean are the medians over the runs, min/max over all, counts summed, each run kept', function () {
    const m = mergeRuns([run(9.4, 14.9), run(30.8, 36.3, 512), run(9.6, 15.8)]);
    assert.deepEqual([m.p50Ms, m.p99Ms, m.meanMs, m.minMs, m.maxMs], [9.6, 15.8, 9.6, 8.4, 37.3]);
    assert.deepEqual([m.samples, m.framesWritten, m.framesReceived, m.lostFrames], [300, 3000, 2488, 512]);
    assert.deepEqual(m.runs, [{ p50Ms: 9.4, p99Ms: 14.9 }, { p50Ms: 30.8, p99Ms: 36.3 }, { p50Ms: 9.6, p99Ms: 15.8 }]);
  });

  it('an even number of runs: the mean of the middle two; one run: itself, without a runs list', function () {
    const m = mergeRuns([run(10, 20), run(30, 40)]);
    assert.deepEqual([m.p50Ms, m.p99Ms], [20, 30]);
    const one = run(5, 6);
    assert.equal(mergeRuns([one]), one);
    assert.equal(mergeRuns([one]).runs, undefined);
  });
});
