/**
 * Where the daemon finds its config, run for real (`audioloop daemon` as a
 * process, with a temporary HOME, XDG_CONFIG_HOME and AUDIOLOOP_SYSCONFDIR
 * standing in for /etc): -c FILE, then $XDG_CONFIG_HOME (default
 * ~/.config), then /etc, then the defaults. Each place holds a different
 * audioloop_instances, so the number of loops the daemon serves says which
 * file it read; its log must say the same.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fetchStatus } from '../../src/control';
import type { DaemonStatus } from '../../src/daemon';
import { requireSoundServer } from '../helpers/soundserver';
import { run, spawnTracked, waitFor, type Tracked } from '../helpers/proc';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

describe('config search: -c, $XDG_CONFIG_HOME (~/.config), /etc, defaults (real daemon)', function () {
  this.timeout(60000);
  let tmp: string;
  let sock: string;
  /** the four places, each with its own instance count */
  let cmdline: string;
  let xdgHome: string;
  let xdgConf: string;
  let home: string;
  let homeConf: string;
  let sysconf: string;
  let etcConf: string;

  before(requireSoundServer);
  beforeEach(function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'audioloop-confsearch-'));
    sock = path.join(tmp, 'sock');
    cmdline = path.join(tmp, 'cmdline.conf');
    xdgHome = path.join(tmp, 'xdg');
    xdgConf = path.join(xdgHome, 'audioloop', 'audioloop.conf');
    home = path.join(tmp, 'home');
    homeConf = path.join(home, '.config', 'audioloop', 'audioloop.conf');
    sysconf = path.join(tmp, 'etc');
    etcConf = path.join(sysconf, 'audioloop', 'audioloop.conf');
    write(cmdline, 'audioloop_instances = 4\n');
    write(xdgConf, 'audioloop_instances = 3\n');
    write(homeConf, 'audioloop_instances = 5\n');
    write(etcConf, 'audioloop_instances = 2\n');
  });
  afterEach(function () {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  function write(file: string, text: string): void {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
  }

  /** The test's environment (its sound server) with HOME, XDG_CONFIG_HOME and the sysconfdir replaced. */
  function env(o: { xdg?: boolean } = {}): NodeJS.ProcessEnv {
    const e: NodeJS.ProcessEnv = { ...process.env, HOME: home, AUDIOLOOP_SYSCONFDIR: sysconf };
    if (o.xdg) e.XDG_CONFIG_HOME = xdgHome;
    else delete e.XDG_CONFIG_HOME;
    return e;
  }

  async function startDaemon(e: NodeJS.ProcessEnv, args: string[] = []): Promise<{ d: Tracked; st: DaemonStatus }> {
    const d = spawnTracked(process.execPath, [CLI, 'daemon', ...args, '-s', sock, '--sound-server', 'system'], { env: e });
    const st = await waitFor(
      async () => {
        if (d.child.exitCode !== null) throw new Error(`the daemon exited (${d.child.exitCode}): ${d.stderr()}`);
        return fetchStatus(sock).catch(() => null);
      },
      15000,
      'the daemon to answer',
    );
    return { d, st };
  }

  /** The daemon's log line that names the config it read. */
  function configLine(d: Tracked): string {
    const line = d.stderr().split('\n').find((l) => / audioloop: (config |no config file)/.test(l));
    assert.ok(line, `a log line naming the config: ${d.stderr()}`);
    return line;
  }

  it('-c FILE wins over all the others', async function () {
    const { d, st } = await startDaemon(env({ xdg: true }), ['-c', cmdline]);
    assert.equal(st.loops.length, 4);
    assert.ok(configLine(d).includes(`config ${cmdline} (-c)`), configLine(d));
  });

  it('then $XDG_CONFIG_HOME/audioloop/audioloop.conf (over ~/.config and /etc)', async function () {
    const { d, st } = await startDaemon(env({ xdg: true }));
    assert.equal(st.loops.length, 3);
    assert.ok(configLine(d).includes(`config ${xdgConf} (user config)`), configLine(d));
  });

  it('without XDG_CONFIG_HOME: ~/.config/audioloop/audioloop.conf (over /etc)', async function () {
    const { d, st } = await startDaemon(env());
    assert.equal(st.loops.length, 5);
    assert.ok(configLine(d).includes(`config ${homeConf} (user config)`), configLine(d));
  });

  it('a relative XDG_CONFIG_HOME is ignored, as the XDG spec says: ~/.config', async function () {
    const { d, st } = await startDaemon({ ...env(), XDG_CONFIG_HOME: 'xdg' }, []);
    assert.equal(st.loops.length, 5);
    assert.ok(configLine(d).includes(homeConf), configLine(d));
  });

  it('then /etc/audioloop/audioloop.conf ($AUDIOLOOP_SYSCONFDIR here)', async function () {
    fs.rmSync(xdgConf);
    fs.rmSync(homeConf);
    const { d, st } = await startDaemon(env({ xdg: true }));
    assert.equal(st.loops.length, 2);
    assert.ok(configLine(d).includes(`config ${etcConf} (system config)`), configLine(d));
  });

  it('then the built-in defaults; the log lists the places searched', async function () {
    fs.rmSync(xdgConf);
    fs.rmSync(etcConf);
    const { d, st } = await startDaemon(env({ xdg: true }));
    assert.equal(st.loops.length, 1);
    const line = configLine(d);
    assert.ok(line.includes(`no config file (searched ${xdgConf}, ${etcConf}): built-in defaults`), line);
  });

  it('logs the chosen file as a field in the JSON log', async function () {
    const { d } = await startDaemon(env({ xdg: true }), ['--log-format', 'json']);
    const rec = d
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; config?: string; source?: string })
      .find((r) => r.config !== undefined);
    assert.ok(rec, d.stderr());
    assert.equal(rec.config, xdgConf);
    assert.equal(rec.source, 'user');
  });

  describe('a bad file is reported with its path, line and key, wherever it is (exit 2, nothing served)', function () {
    const BAD = '# bad\nbuffer_ms = 5\n';
    const cases: [string, () => string, () => NodeJS.ProcessEnv, () => string[]][] = [
      ['-c FILE', () => cmdline, () => env({ xdg: true }), () => ['-c', cmdline]],
      ['$XDG_CONFIG_HOME', () => xdgConf, () => env({ xdg: true }), () => []],
      ['~/.config', () => homeConf, () => env(), () => []],
      ['/etc', () => etcConf, () => env(), () => []],
    ];
    for (const [where, file, e, args] of cases) {
      it(`in ${where}`, async function () {
        if (where === '/etc') fs.rmSync(homeConf);
        write(file(), BAD);
        const r = await run(process.execPath, [CLI, 'daemon', ...args(), '-s', sock, '--sound-server', 'system'], { env: e(), timeoutMs: 15000 });
        assert.equal(r.code, 2, r.stderr);
        assert.ok(r.stderr.includes(`${file()}:2: buffer_ms = 5 is invalid`), r.stderr);
        assert.match(r.stderr, /10-2000/);
        assert.ok(!fs.existsSync(sock), 'no socket directory');
      });
    }

    it('a bad user file is not skipped for a good /etc one', async function () {
      write(xdgConf, 'audioloop_instance = 2\n');
      const r = await run(process.execPath, [CLI, 'daemon', '-s', sock, '--sound-server', 'system'], { env: env({ xdg: true }), timeoutMs: 15000 });
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(`${xdgConf}:1: unknown key audioloop_instance`), r.stderr);
    });

    it('an unreadable place (a directory where the file should be) is an error, not skipped', async function () {
      fs.rmSync(xdgConf);
      fs.mkdirSync(xdgConf);
      const r = await run(process.execPath, [CLI, 'daemon', '-s', sock, '--sound-server', 'system'], { env: env({ xdg: true }), timeoutMs: 15000 });
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(`${xdgConf}: cannot read config file (EISDIR)`), r.stderr);
    });
  });

  describe('SIGHUP', function () {
    async function hup(d: Tracked, until: (st: DaemonStatus) => boolean, what: string): Promise<DaemonStatus> {
      process.kill(d.pid, 'SIGHUP');
      return waitFor(async () => {
        const st = await fetchStatus(sock);
        return until(st) ? st : null;
      }, 5000, what);
    }

    it('re-reads the same file it found at start (not another place)', async function () {
      const { d, st } = await startDaemon(env({ xdg: true }));
      assert.equal(st.loops.length, 3);
      write(xdgConf, 'audioloop_instances = 6\n');
      write(etcConf, 'audioloop_instances = 7\n');
      const after = await hup(d, (s) => s.loops.length !== 3, 'the reload');
      assert.equal(after.loops.length, 6);
      assert.match(d.stderr(), new RegExp(`SIGHUP: reloading config ${xdgConf.replace(/[.]/g, '\\.')} \\(user config\\)`));
    });

    it('with no file at start, searches again: a config created later is read', async function () {
      fs.rmSync(xdgConf);
      fs.rmSync(etcConf);
      const { d, st } = await startDaemon(env({ xdg: true }));
      assert.equal(st.loops.length, 1);
      write(etcConf, 'audioloop_instances = 2\n');
      const after = await hup(d, (s) => s.loops.length !== 1, 'the reload');
      assert.equal(after.loops.length, 2);
      assert.ok(d.stderr().includes(`SIGHUP: reloading config ${etcConf} (system config)`), d.stderr());
    });
  });

  it('daemon --help names the places with this environment\'s paths and marks the one that would be read', async function () {
    const r = await run(process.execPath, [CLI, 'daemon', '--help'], { env: env({ xdg: true }) });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(`${xdgConf}   <- found, read`), r.stdout);
    assert.ok(r.stdout.includes(etcConf), r.stdout);
    assert.ok(!r.stdout.includes(`${etcConf}   <- found`), r.stdout);
    fs.rmSync(xdgConf);
    fs.rmSync(etcConf);
    const none = await run(process.execPath, [CLI, 'daemon', '--help'], { env: env({ xdg: true }) });
    assert.match(none.stdout, /built-in defaults \(so here: defaults\)/);
    assert.ok(!none.stdout.includes('<- found'), none.stdout);
  });

  describe('scripts/install-service.sh --install-config', function () {
    const SCRIPT = path.join(ROOT, 'scripts', 'install-service.sh');

    it('copies the checkout\'s example to the user place when no place has a file, and never overwrites', async function () {
      fs.rmSync(xdgConf);
      fs.rmSync(etcConf);
      const r = await run('bash', [SCRIPT, '--install-config'], { env: env({ xdg: true }) });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.includes(`installed the example as ${xdgConf}`), r.stdout);
      assert.equal(fs.readFileSync(xdgConf, 'utf8'), fs.readFileSync(path.join(ROOT, 'conf', 'audioloop.conf'), 'utf8'));
      fs.writeFileSync(xdgConf, 'audioloop_instances = 3\n');
      const again = await run('bash', [SCRIPT, '--install-config'], { env: env({ xdg: true }) });
      assert.equal(again.code, 0, again.stderr);
      assert.ok(again.stdout.includes(`${xdgConf} (kept)`), again.stdout);
      assert.equal(fs.readFileSync(xdgConf, 'utf8'), 'audioloop_instances = 3\n');
    });

    it('leaves an /etc config alone and installs nothing beside it', async function () {
      fs.rmSync(xdgConf);
      const r = await run('bash', [SCRIPT, '--install-config'], { env: env({ xdg: true }) });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.includes(`${etcConf} (kept)`), r.stdout);
      assert.ok(!fs.existsSync(xdgConf));
    });
  });
});
