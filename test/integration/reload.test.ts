/**
 * SIGHUP reload and structured logs, against the real daemon process and
 * the real headless PipeWire: instances come and go without disturbing an
 * active loop; a bad file changes nothing.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openServer } from '../../src/client';
import { fetchStatus } from '../../src/cli/main';
import type { DaemonStatus } from '../../src/daemon';
import { loopSocketPath } from '../../src/protocol';
import { requireSoundServer } from '../helpers/soundserver';
import { spawnTracked, waitFor, type Tracked } from '../helpers/proc';
import { checkCounter, counterPcm } from '../helpers/pcm';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const RATE = 48000;
const CH = 2;

describe('config reload on SIGHUP (real daemon, real PipeWire)', function () {
  this.timeout(60000);
  let tmp: string;
  let conf: string;
  let dir: string;
  let daemon: Tracked;

  before(requireSoundServer);
  beforeEach(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-reload-'));
    conf = path.join(tmp, 'audioloop.conf');
    dir = path.join(tmp, 'sock');
    fs.writeFileSync(conf, '# test\naudioloop_instances = 2\nlog_format = json\n');
    daemon = spawnTracked(process.execPath, [CLI, 'daemon', '-c', conf, '-s', dir, '--sound-server', 'system']);
    await waitFor(() => fetchStatus(dir).catch(() => null), 10000, 'the daemon');
  });
  afterEach(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  async function hup(until: (st: DaemonStatus) => boolean, what: string): Promise<DaemonStatus> {
    process.kill(daemon.pid, 'SIGHUP');
    return waitFor(async () => {
      const st = await fetchStatus(dir);
      return until(st) ? st : null;
    }, 5000, what);
  }

  it('removes an instance while it plays: the loop runs to its end untouched, then goes', async function () {
    const srv = await openServer(1, { mode: 'read', format: 's16le', rate: RATE, channels: CH, socketDir: dir });
    const chunks: Buffer[] = [];
    srv.readable.on('data', (c: Buffer) => chunks.push(c));
    const ended = new Promise<Error & { code?: string }>((r) => srv.readable.once('error', r));
    const file = path.join(tmp, 'c.raw');
    fs.writeFileSync(file, counterPcm('s16le', CH, RATE * 2));
    const play = spawnTracked('paplay', ['--raw', '--format=s16le', `--rate=${RATE}`, `--channels=${CH}`, '-d', 'audioloop1', file]);
    await waitFor(async () => (await fetchStatus(dir)).loops[1]!.state === 'running', 10000, 'loop 1 to run');

    fs.writeFileSync(conf, 'audioloop_instances = 1\nlog_format = json\n');
    const st = await hup((s) => s.loops[1]?.retiring === true, 'loop 1 to be retiring');
    assert.equal(st.loops[1]!.state, 'running', 'the active loop is not disturbed');
    assert.ok(!fs.existsSync(loopSocketPath(dir, 1)), 'no new server can open the removed instance');
    await assert.rejects(openServer(1, { mode: 'read', socketDir: dir }), { code: 'ENODEV' });

    const p = await play.done;
    assert.equal(p.code, 0, p.stderr);
    assert.equal((await ended).code, 'ECONNRESET');
    await srv.close();
    const chk = checkCounter(Buffer.concat(chunks), 's16le', CH);
    assert.equal(chk.first, 0);
    assert.equal(chk.frames, RATE * 2, 'every frame of the removed loop arrived');
    assert.equal(chk.bad, 0);
    const after = await waitFor(async () => {
      const s = await fetchStatus(dir);
      return s.loops.length === 1 ? s : null;
    }, 5000, 'loop 1 to go once idle');
    assert.deepEqual(after.loops.map((l) => l.node), ['audioloop0']);
  });

  it('adds instances, and a bad file changes nothing and is reported with file, line and key', async function () {
    fs.writeFileSync(conf, 'audioloop_instances = 4\nlog_format = json\n');
    const st = await hup((s) => s.loops.length === 4, 'four loops');
    assert.deepEqual(st.loops.map((l) => l.node), ['audioloop0', 'audioloop1', 'audioloop2', 'audioloop3']);
    const srv = await openServer(3, { mode: 'write', format: 'f32le', rate: 44100, channels: 1, socketDir: dir });
    assert.equal(srv.node, 'audioloop3');
    await srv.close();

    fs.writeFileSync(conf, '# broken\naudioloop_instances = 17\n');
    process.kill(daemon.pid, 'SIGHUP');
    const line = await waitFor(() => daemon.stderr().split('\n').find((l) => l.includes('reload refused')), 5000, 'the reload error');
    const rec = JSON.parse(line) as { level: string; msg: string; scope: string; time: string };
    assert.equal(rec.level, 'error');
    assert.ok(rec.msg.includes(`${conf}:2`), rec.msg);
    assert.ok(rec.msg.includes('audioloop_instances = 17') && rec.msg.includes('1-16'), rec.msg);
    assert.equal((await fetchStatus(dir)).loops.length, 4, 'nothing changed');
    assert.ok(fs.existsSync(loopSocketPath(dir, 3)));
  });

  it('logs one JSON object per line with time, level, scope and message (log_format = json)', async function () {
    const srv = await openServer(0, { mode: 'read', socketDir: dir });
    await srv.close();
    await waitFor(() => daemon.stderr().includes('waiting -> closing') || daemon.stderr().includes('-> idle'), 5000, 'the state log');
    const lines = daemon.stderr().split('\n').filter(Boolean);
    assert.ok(lines.length >= 3, daemon.stderr());
    for (const l of lines) {
      const rec = JSON.parse(l) as Record<string, unknown>;
      assert.ok(typeof rec.time === 'string' && !Number.isNaN(Date.parse(rec.time)), l);
      assert.ok(['error', 'warn', 'info', 'debug'].includes(rec.level as string), l);
      assert.equal(typeof rec.scope, 'string');
      assert.equal(typeof rec.msg, 'string');
    }
    assert.ok(
      lines.some((l) => (JSON.parse(l) as { scope: string; msg: string }).scope === 'audioloop/audioloop0' && l.includes('idle -> waiting')),
      'state changes are logged from -> to, scoped to the loop',
    );
  });
});
