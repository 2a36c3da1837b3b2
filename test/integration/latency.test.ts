/**
 * OPEN latency=MS: the node asks PipeWire for that latency (node.latency,
 * read back with pw-dump, an independent tool), the ring is sized for it,
 * and status reports what the graph granted once a client (paplay) runs.
 * Real daemon, real PipeWire.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { openServer } from '../../src/client';
import { fetchStatus } from '../../src/control';
import { counterPcm } from '../helpers/pcm';
import { requireSoundServer } from '../helpers/soundserver';
import { run, spawnTracked, waitFor } from '../helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** node.latency of the node called `name`, as pw-dump shows it (null: no such node or no such prop) */
async function nodeLatency(name: string): Promise<string | null | undefined> {
  const r = await run('pw-dump', []);
  assert.equal(r.code, 0, r.stderr);
  const objs = JSON.parse(r.stdout) as { type: string; info?: { props?: Record<string, unknown> } }[];
  const node = objs.find((o) => o.type === 'PipeWire:Interface:Node' && o.info?.props?.['node.name'] === name);
  if (!node) return undefined;
  const v = node.info?.props?.['node.latency'];
  return v === undefined ? null : String(v);
}

describe('OPEN latency=MS (real daemon, real PipeWire, pw-dump)', function () {
  this.timeout(60000);
  let tmp: string;
  let sock: string;

  before(requireSoundServer);
  beforeEach(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-latency-'));
    sock = path.join(tmp, 'sock');
    spawnTracked(process.execPath, [CLI, 'daemon', '-c', '/dev/null', '-s', sock, '--sound-server', 'system']);
    await waitFor(() => fetchStatus(sock).catch(() => null), 15000, 'the daemon');
  });
  afterEach(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  for (const [mode, ms, frames, rate] of [
    ['read', 5, 240, 48000],
    ['write', 20, 960, 48000],
    ['read', 10, 441, 44100],
  ] as const) {
    it(`mode=${mode} latency=${ms} at ${rate} Hz: pw-dump shows node.latency ${frames}/${rate}; status has the request; the ring holds ${4 * ms} ms`, async function () {
      const srv = await openServer(0, { mode, rate, latencyMs: ms, socketDir: sock });
      try {
        const got = await waitFor(() => nodeLatency('audioloop0'), 5000, 'audioloop0 in pw-dump');
        assert.equal(got, `${frames}/${rate}`);
        const st = (await fetchStatus(sock)).loops[0]!;
        assert.equal(st.latency?.requestedMs, ms);
        assert.equal(st.latency?.requestedFrames, frames);
        // 4 x the latency, but at least 20 ms, rounded up to a power of two by the ring
        const want = Math.max(4096, Math.ceil((rate * 4 * Math.max(20, 4 * ms)) / 1000));
        assert.ok(st.size >= want && st.size < 2 * want, `ring ${st.size} for ${want}`);
      } finally {
        await srv.close();
      }
    });
  }

  /** waits for audioloop0 in pw-dump; its node.latency (null: none) */
  const latencyOf0 = (): Promise<string | null> =>
    waitFor(() => nodeLatency('audioloop0').then((v) => (v === undefined ? undefined : { v })), 5000, 'audioloop0').then((x) => x.v);

  it('without latency= a read loop asks default_latency_ms (20: node.latency 960/48000; status says so) and the ring is buffer_ms', async function () {
    const srv = await openServer(0, { mode: 'read', socketDir: sock });
    try {
      assert.equal(await latencyOf0(), '960/48000');
      const st = (await fetchStatus(sock)).loops[0]!;
      assert.equal(st.latency?.requestedMs, null);
      assert.equal(st.latency?.requestedFrames, null);
      assert.equal(st.latency?.nodeFrames, 960);
      assert.ok(st.size >= 48000 * 4 * 0.2, `ring ${st.size}`);
      const text = await run(process.execPath, [CLI, 'status', '-s', sock]);
      assert.match(text.stdout, /^audioloop0 latency: .*; asked nothing; the node asks node\.latency 960\/48000 \(default_latency_ms\)$/m);
    } finally {
      await srv.close();
    }
  });

  it('without latency= a write loop asks nothing (its source runs only with its clients: they decide)', async function () {
    const srv = await openServer(0, { mode: 'write', socketDir: sock });
    try {
      assert.equal(await latencyOf0(), null);
      const st = (await fetchStatus(sock)).loops[0]!;
      assert.equal(st.latency?.requestedMs, null);
      assert.equal(st.latency?.nodeFrames, null);
    } finally {
      await srv.close();
    }
  });

  it('default_latency_ms = 0: a read loop without latency= asks nothing; = 5 at 44100 Hz: node.latency 221/44100', async function () {
    for (const [ms, rate, want] of [
      [0, 48000, null],
      [5, 44100, '221/44100'],
    ] as const) {
      const conf = path.join(tmp, `d${ms}.conf`);
      fs.writeFileSync(conf, `default_latency_ms = ${ms}\n`);
      const sock2 = path.join(tmp, `sock${ms}`);
      const d = spawnTracked(process.execPath, [CLI, 'daemon', '-c', conf, '-s', sock2, '--sound-server', 'system']);
      await waitFor(() => fetchStatus(sock2).catch(() => null), 15000, 'the second daemon');
      const srv = await openServer(0, { mode: 'read', rate, socketDir: sock2 });
      try {
        // the first daemon's audioloop0 is not open: pw-dump's audioloop0 is this one
        assert.equal(await latencyOf0(), want, `default_latency_ms = ${ms}`);
        assert.equal((await fetchStatus(sock2)).loops[0]!.latency?.nodeFrames, want === null ? null : 221);
      } finally {
        await srv.close();
        d.child.kill('SIGTERM');
        await d.done;
      }
    }
  });

  it('status shows the granted quantum once paplay plays; audioloop status prints it', async function () {
    const srv = await openServer(0, { mode: 'read', latencyMs: 10, socketDir: sock });
    const file = path.join(tmp, 'c.raw');
    fs.writeFileSync(file, counterPcm('s16le', 2, 48000 * 2));
    const play = spawnTracked('paplay', ['--raw', '--format=s16le', '--rate=48000', '--channels=2', '--latency-msec=100', '-d', 'audioloop0', file]);
    try {
      const st = await waitFor(async () => {
        const l = (await fetchStatus(sock)).loops[0]!;
        return l.latency && l.latency.grantedFrames > 0 ? l : null;
      }, 10000, 'a granted quantum');
      // the quantum is a real graph cycle: between PipeWire's min and max quantum (32..8192 by default)
      assert.ok(st.latency!.grantedFrames >= 32 && st.latency!.grantedFrames <= 8192, JSON.stringify(st.latency));
      assert.equal(st.latency!.grantedMs, Math.round((st.latency!.grantedFrames * 10000) / 48000) / 10);
      const text = await run(process.execPath, [CLI, 'status', '-s', sock]);
      assert.match(text.stdout, new RegExp(`^audioloop0 latency: granted ${st.latency!.grantedMs} ms \\(quantum ${st.latency!.grantedFrames} at 48000 Hz\\); asked 10 ms \\(node.latency 480/48000\\)$`, 'm'));
    } finally {
      await play.done;
      await srv.close();
    }
  });

  it('bad values: openServer EINVAL, the raw protocol ERR EINVAL, CLI --latency exits 2', async function () {
    await assert.rejects(openServer(0, { mode: 'read', latencyMs: 0, socketDir: sock }), (e: { code?: string }) => e.code === 'EINVAL');
    await assert.rejects(openServer(0, { mode: 'read', latencyMs: 2.5, socketDir: sock }), (e: { code?: string }) => e.code === 'EINVAL');
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect(path.join(sock, 'audioloop0'));
      let got = '';
      c.on('data', (d) => (got += d.toString()));
      c.on('close', () => resolve(got));
      c.on('error', reject);
      c.write('OPEN mode=read latency=1001\n');
    });
    assert.match(reply, /^ERR EINVAL 22 latency must be an integer number of milliseconds, 1-1000\n$/);
    for (const cmd of [['record', '0', path.join(tmp, 'x.wav')], ['play', '0', path.join(tmp, 'x.wav')], ['bridge', '0', '--send', 'rtp://127.0.0.1:5004']]) {
      const r = await run(process.execPath, [CLI, ...cmd, '--latency', '0', '-s', sock]);
      assert.equal(r.code, 2, `${cmd[0]}: ${r.stderr}`);
      assert.match(r.stderr, /--latency must be an integer 1-1000/);
    }
  });
});
