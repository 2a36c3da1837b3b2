/**
 * The systemd user unit: rendered for this checkout, its ExecStart runs the
 * daemon for real (against the test's PipeWire) with the daemon's own config
 * search (a temporary XDG_CONFIG_HOME here), ExecReload's SIGHUP re-reads
 * that file and keeps it serving, and SIGTERM stops it cleanly with exit
 * status 0.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fetchStatus } from '../../src/control';
import { requireSoundServer } from '../helpers/soundserver';
import { run, spawnTracked, waitFor } from '../helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..', '..');

function unitField(unit: string, key: string): string {
  const line = unit.split('\n').find((l) => l.startsWith(`${key}=`));
  assert.ok(line, `${key}= in the unit`);
  return line.slice(key.length + 1);
}

describe('systemd user unit (conf/audioloop.service)', function () {
  this.timeout(30000);
  let unit: string;
  let tmp: string;

  before(requireSoundServer);
  before(async function () {
    const r = await run('bash', [path.join(ROOT, 'scripts', 'install-service.sh'), '--print']);
    assert.equal(r.code, 0, r.stderr);
    unit = r.stdout;
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-unit-'));
  });
  after(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('is rendered for this checkout with no placeholder left', function () {
    assert.ok(!unit.includes('@'), 'no @ROOT@/@NODE@ left');
    for (const s of ['[Unit]', '[Service]', '[Install]']) assert.ok(unit.includes(s), s);
    assert.equal(unitField(unit, 'ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(unitField(unit, 'Restart'), 'on-failure');
    assert.equal(unitField(unit, 'RestartPreventExitStatus'), '2', 'a bad config (exit 2) is not restarted in a loop');
    const [node, flag, script, ...args] = unitField(unit, 'ExecStart').split(' ');
    assert.ok(fs.existsSync(node!), node);
    assert.equal(flag, '--lite-mode', 'the daemon runs as scripts/run.sh runs it (README "Memory")');
    assert.equal(script, path.join(ROOT, 'dist', 'src', 'cli', 'main.js'));
    assert.deepEqual(args, ['daemon', '--sound-server', 'system'], 'no -c: the config is found where Linux keeps it');
  });

  it('passes systemd-analyze verify (where systemd is installed)', async function () {
    const which = await run('bash', ['-c', 'command -v systemd-analyze']);
    if (which.code !== 0) this.skip();
    const file = path.join(tmp, 'audioloop.service');
    fs.writeFileSync(file, unit);
    const v = await run('systemd-analyze', ['verify', file]);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stderr.trim(), '', 'no warnings');
  });

  it("ExecStart serves with ~/.config/audioloop/audioloop.conf, ExecReload's SIGHUP re-reads it, and SIGTERM exits 0", async function () {
    const [node, ...args] = unitField(unit, 'ExecStart').split(' ');
    const dir = path.join(tmp, 'sock');
    const conf = path.join(tmp, 'xdg', 'audioloop', 'audioloop.conf');
    fs.mkdirSync(path.dirname(conf), { recursive: true });
    fs.writeFileSync(conf, 'audioloop_instances = 2\n');
    const env = { ...process.env, XDG_CONFIG_HOME: path.join(tmp, 'xdg'), AUDIOLOOP_SYSCONFDIR: path.join(tmp, 'etc') };
    const d = spawnTracked(node!, [...args, '-s', dir], { env });
    const st = await waitFor(() => fetchStatus(dir).catch(() => null), 10000, 'the service to answer');
    assert.equal(st.soundServer.connected, true);
    assert.equal(st.pid, d.pid);
    assert.equal(st.loops.length, 2, 'audioloop_instances from the user config');
    assert.ok(d.stderr().includes(`config ${conf} (user config)`), d.stderr());
    fs.writeFileSync(conf, 'audioloop_instances = 3\n');
    process.kill(d.pid, 'SIGHUP');
    await waitFor(() => d.stderr().includes('reloaded'), 5000, 'the reload');
    const after = await fetchStatus(dir);
    assert.equal(after.pid, d.pid, 'still the same daemon');
    assert.equal(after.loops.length, 3, 'the same file, read again');
    process.kill(d.pid, 'SIGTERM');
    const fin = await d.done;
    assert.equal(fin.code, 0, fin.stderr);
    assert.ok(!fs.existsSync(path.join(dir, 'control')), 'its sockets are removed');
  });

  it('--help and unknown options', async function () {
    const h = await run('bash', [path.join(ROOT, 'scripts', 'install-service.sh'), '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--print/);
    const bad = await run('bash', [path.join(ROOT, 'scripts', 'install-service.sh'), '--frobnicate']);
    assert.equal(bad.code, 2);
  });
});
