import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CONFIG_KEYS, ConfigError, configSearchPath, DEFAULT_CONFIG, describeConfigLocation, findConfig, loadConfig, parseConfig, SYSCONFDIR, type AudioloopConfig } from '../../src/config';

const FILE = 'conf/audioloop.conf';

/** Runs fn, asserts it throws a ConfigError, and returns it. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'ECONFIG');
    assert.equal(err.name, 'ConfigError');
    return err;
  }
  assert.fail('expected a ConfigError');
}

describe('config', () => {
  describe('defaults', () => {
    it('has the documented defaults', () => {
      assert.deepEqual({ ...DEFAULT_CONFIG }, { audioloopInstances: 1, bufferMs: 200, clientGraceMs: 1000, defaultLatencyMs: 20, logLevel: 'info', logFormat: 'text' });
      assert.equal('socketDir' in DEFAULT_CONFIG, false);
      assert.ok(Object.isFrozen(DEFAULT_CONFIG));
    });

    it('returns the defaults for empty, blank and comment-only text', () => {
      for (const text of ['', '\n\n', '   \t\n', '# only a comment\n  # indented comment\n', '\uFEFF']) {
        assert.deepEqual(parseConfig(text, FILE), { ...DEFAULT_CONFIG }, JSON.stringify(text));
      }
    });

    it('returns a fresh object each time', () => {
      const a = parseConfig('', FILE);
      a.bufferMs = 999;
      assert.equal(parseConfig('', FILE).bufferMs, 200);
      assert.equal(DEFAULT_CONFIG.bufferMs, 200);
    });

    it('default_latency_ms defaults to 20; 0-1000 (0: none); others name the range', () => {
      assert.equal(parseConfig('', FILE).defaultLatencyMs, 20);
      assert.equal(parseConfig('default_latency_ms = 0', FILE).defaultLatencyMs, 0);
      assert.equal(parseConfig('default_latency_ms = 1000', FILE).defaultLatencyMs, 1000);
      assert.throws(
        () => parseConfig('\ndefault_latency_ms = 1001', FILE),
        (e: ConfigError) => e.line === 2 && e.key === 'default_latency_ms' && e.allowed === 'integers 0-1000 (0: none)',
      );
    });

    it('lists the known keys', () => {
      assert.deepEqual(CONFIG_KEYS, ['audioloop_instances', 'socket_dir', 'buffer_ms', 'client_grace_ms', 'default_latency_ms', 'log_level', 'log_format', 'backend', 'data_plane']);
    });
  });

  describe('syntax', () => {
    it('parses every key, with and without spaces around =', () => {
      const cfg = parseConfig(
        [
          'audioloop_instances = 4',
          'socket_dir=/run/audioloop test',
          '  buffer_ms\t=\t50  ',
          'log_level =debug',
          'log_format= json',
          'default_latency_ms = 0',
        ].join('\n'),
        FILE,
      );
      const expected: AudioloopConfig = {
        audioloopInstances: 4,
        socketDir: '/run/audioloop test',
        bufferMs: 50,
        clientGraceMs: 1000,
        defaultLatencyMs: 0,
        logLevel: 'debug',
        logFormat: 'json',
      };
      assert.deepEqual(cfg, expected);
    });

    it('ignores whole-line and trailing comments', () => {
      const cfg = parseConfig(
        '# header\naudioloop_instances = 3 # three loops\n\n   # indented\nbuffer_ms = 100#no space\n',
        FILE,
      );
      assert.equal(cfg.audioloopInstances, 3);
      assert.equal(cfg.bufferMs, 100);
    });

    it('treats # as a comment even inside a value', () => {
      assert.equal(parseConfig('socket_dir = /tmp/a#b', FILE).socketDir, '/tmp/a');
    });

    it('accepts CRLF line endings and a UTF-8 BOM', () => {
      const cfg = parseConfig('\uFEFFaudioloop_instances = 2\r\nlog_level = warn\r\n', FILE);
      assert.equal(cfg.audioloopInstances, 2);
      assert.equal(cfg.logLevel, 'warn');
    });

    it('keeps everything after the first = as the value', () => {
      assert.equal(parseConfig('socket_dir = /tmp/x=y', FILE).socketDir, '/tmp/x=y');
    });

    it('rejects a line without = as a syntax error with its line number', () => {
      const err = configError(() => parseConfig('audioloop_instances = 1\n\naudioloop_instances 2\n', FILE));
      assert.equal(err.line, 3);
      assert.equal(err.file, FILE);
      assert.equal(err.key, undefined);
      assert.equal(err.message, `${FILE}:3: syntax error: expected "key = value", got "audioloop_instances 2"`);
    });

    it('rejects a missing key', () => {
      const err = configError(() => parseConfig('= 5', FILE));
      assert.equal(err.line, 1);
      assert.match(err.message, /^conf\/audioloop\.conf:1: syntax error: missing key/);
    });

    it('rejects a key with spaces in it', () => {
      const err = configError(() => parseConfig('buffer ms = 5', FILE));
      assert.equal(err.line, 1);
      assert.match(err.message, /invalid key "buffer ms"/);
    });
  });

  describe('audioloop_instances', () => {
    it('accepts 1 through 16', () => {
      for (let n = 1; n <= 16; n++) {
        assert.equal(parseConfig(`audioloop_instances = ${n}`, FILE).audioloopInstances, n);
      }
    });

    it('formats the error message with file, line, key and allowed values', () => {
      const err = configError(() => parseConfig('# c\nlog_level = info\naudioloop_instances = 40\n', FILE));
      assert.equal(err.message, 'conf/audioloop.conf:3: audioloop_instances = 40 is invalid: allowed values are integers 1-16');
      assert.equal(err.file, FILE);
      assert.equal(err.line, 3);
      assert.equal(err.key, 'audioloop_instances');
      assert.equal(err.allowed, 'integers 1-16');
    });

    for (const bad of ['0x10', '1.5', '', 'abc', '17', '0', '-1', '+1', '1e1', '01', '1 2', '16abc', '99999999999999999999']) {
      it(`rejects ${JSON.stringify(bad)}`, () => {
        const err = configError(() => parseConfig(`audioloop_instances = ${bad}`, FILE));
        assert.equal(err.line, 1);
        assert.equal(err.key, 'audioloop_instances');
        const shown = bad === '' ? '""' : bad;
        assert.equal(err.message, `${FILE}:1: audioloop_instances = ${shown} is invalid: allowed values are integers 1-16`);
      });
    }
  });

  describe('buffer_ms', () => {
    it('accepts the range limits', () => {
      assert.equal(parseConfig('buffer_ms = 10', FILE).bufferMs, 10);
      assert.equal(parseConfig('buffer_ms = 2000', FILE).bufferMs, 2000);
    });

    for (const bad of ['9', '2001', '100ms', '0', '']) {
      it(`rejects ${JSON.stringify(bad)}`, () => {
        const err = configError(() => parseConfig(`\nbuffer_ms = ${bad}`, FILE));
        assert.equal(err.line, 2);
        assert.equal(err.key, 'buffer_ms');
        assert.equal(err.allowed, 'integers 10-2000');
        assert.match(err.message, /^conf\/audioloop\.conf:2: buffer_ms = .* is invalid: allowed values are integers 10-2000$/);
      });
    }
  });

  describe('log_format', () => {
    it('accepts text and json', () => {
      assert.equal(parseConfig('log_format = text', FILE).logFormat, 'text');
      assert.equal(parseConfig('log_format = json', FILE).logFormat, 'json');
      assert.equal(parseConfig('', FILE).logFormat, 'text');
    });
    it('refuses anything else, naming file, line, key and allowed values', () => {
      const err = configError(() => parseConfig('\nlog_format = yaml', FILE));
      assert.equal(err.line, 2);
      assert.equal(err.key, 'log_format');
      assert.match(err.message, /^conf\/audioloop\.conf:2: log_format = yaml is invalid: allowed values are text, json$/);
    });
  });

  describe('log_level', () => {
    it('accepts each level', () => {
      for (const level of ['error', 'warn', 'info', 'debug'] as const) {
        assert.equal(parseConfig(`log_level = ${level}`, FILE).logLevel, level);
      }
    });

    for (const bad of ['INFO', 'verbose', 'trace', '']) {
      it(`rejects ${JSON.stringify(bad)}`, () => {
        const err = configError(() => parseConfig(`log_level = ${bad}`, FILE));
        assert.equal(err.allowed, 'error, warn, info, debug');
        assert.match(err.message, /^conf\/audioloop\.conf:1: log_level = .* is invalid: allowed values are error, warn, info, debug$/);
      });
    }
  });

  describe('socket_dir', () => {
    it('is absent by default and set when given', () => {
      assert.equal('socketDir' in parseConfig('buffer_ms = 20', FILE), false);
      assert.equal(parseConfig('socket_dir = /run/user/1000/audioloop', FILE).socketDir, '/run/user/1000/audioloop');
    });

    it('rejects an empty value', () => {
      const err = configError(() => parseConfig('socket_dir =   # nothing', FILE));
      assert.equal(err.message, `${FILE}:1: socket_dir = "" is invalid: allowed values are a non-empty directory path`);
    });
  });

  describe('keys', () => {
    it('rejects an unknown key, naming it and listing the known keys', () => {
      const err = configError(() => parseConfig('buffer_ms = 20\naudioloop_instance = 2', FILE));
      assert.equal(err.line, 2);
      assert.equal(err.key, 'audioloop_instance');
      assert.equal(err.allowed, 'audioloop_instances, socket_dir, buffer_ms, client_grace_ms, default_latency_ms, log_level, log_format, backend, data_plane');
      assert.equal(
        err.message,
        `${FILE}:2: unknown key audioloop_instance: known keys are audioloop_instances, socket_dir, buffer_ms, client_grace_ms, default_latency_ms, log_level, log_format, backend, data_plane`,
      );
    });

    it('does not treat Object.prototype names as keys', () => {
      for (const key of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
        const err = configError(() => parseConfig(`${key} = 1`, FILE));
        assert.equal(err.key, key);
        assert.match(err.message, /unknown key/);
      }
    });

    it('keys are case-sensitive', () => {
      const err = configError(() => parseConfig('Buffer_MS = 20', FILE));
      assert.match(err.message, /unknown key Buffer_MS/);
    });

    it('rejects a duplicate key, naming both lines', () => {
      const err = configError(() => parseConfig('buffer_ms = 20\n# x\nlog_level = info\nbuffer_ms = 20\n', FILE));
      assert.equal(err.line, 4);
      assert.equal(err.key, 'buffer_ms');
      assert.equal(err.message, `${FILE}:4: duplicate key buffer_ms: first set on line 1, again on line 4`);
    });

    it('reports the first error in file order', () => {
      const err = configError(() => parseConfig('buffer_ms = 1\nbogus = 2\n', FILE));
      assert.equal(err.line, 1);
      assert.equal(err.key, 'buffer_ms');
    });
  });

  describe('loadConfig', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'audioloop-config-'));
    });
    afterEach(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    it('reads and parses a file, naming it in errors', () => {
      const file = join(dir, 'a.conf');
      writeFileSync(file, 'audioloop_instances = 5\nbuffer_ms = 30\n');
      assert.deepEqual(loadConfig(file), { audioloopInstances: 5, bufferMs: 30, clientGraceMs: 1000, defaultLatencyMs: 20, logLevel: 'info', logFormat: 'text' });
      writeFileSync(file, 'audioloop_instances = 5\nbuffer_ms = 3\n');
      const err = configError(() => loadConfig(file));
      assert.equal(err.file, file);
      assert.equal(err.line, 2);
      assert.ok(err.message.startsWith(`${file}:2: buffer_ms = 3 is invalid`));
    });

    it('throws ConfigError for a missing file', () => {
      const file = join(dir, 'missing.conf');
      const err = configError(() => loadConfig(file));
      assert.equal(err.file, file);
      assert.equal(err.line, undefined);
      assert.equal(err.message, `${file}: config file not found`);
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOENT');
    });

    it('returns the defaults for a missing file when optional', () => {
      const cfg = loadConfig(join(dir, 'missing.conf'), { optional: true });
      assert.deepEqual(cfg, { ...DEFAULT_CONFIG });
    });

    it('still fails on unreadable paths when optional', () => {
      const sub = join(dir, 'sub.conf');
      mkdirSync(sub);
      const err = configError(() => loadConfig(sub, { optional: true }));
      assert.equal(err.line, undefined);
      assert.match(err.message, /cannot read config file \(EISDIR\)/);
    });

    it('still validates an existing file when optional', () => {
      const file = join(dir, 'a.conf');
      writeFileSync(file, 'log_level = loud\n');
      const err = configError(() => loadConfig(file, { optional: true }));
      assert.equal(err.key, 'log_level');
    });
  });

  describe('search (findConfig)', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'audioloop-find-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('the places: $XDG_CONFIG_HOME (absolute only, else $HOME/.config), then $AUDIOLOOP_SYSCONFDIR or /etc', () => {
      assert.equal(SYSCONFDIR, '/etc');
      assert.deepEqual(configSearchPath({ HOME: '/home/u' }), {
        user: '/home/u/.config/audioloop/audioloop.conf',
        system: '/etc/audioloop/audioloop.conf',
      });
      assert.equal(configSearchPath({ HOME: '/home/u', XDG_CONFIG_HOME: '/x/cfg' }).user, '/x/cfg/audioloop/audioloop.conf');
      assert.equal(configSearchPath({ HOME: '/home/u', XDG_CONFIG_HOME: 'rel' }).user, '/home/u/.config/audioloop/audioloop.conf');
      assert.equal(configSearchPath({ HOME: '/home/u', XDG_CONFIG_HOME: '' }).user, '/home/u/.config/audioloop/audioloop.conf');
      assert.equal(configSearchPath({ HOME: '/h', AUDIOLOOP_SYSCONFDIR: '/opt/etc' }).system, '/opt/etc/audioloop/audioloop.conf');
    });

    it('takes -c first (even when missing), then the first place that exists, then the defaults', () => {
      const env = { HOME: join(dir, 'home'), XDG_CONFIG_HOME: join(dir, 'xdg'), AUDIOLOOP_SYSCONFDIR: join(dir, 'etc') };
      const { user, system } = configSearchPath(env);
      assert.deepEqual(findConfig(undefined, env), { file: null, source: 'defaults', searched: [user, system] });
      assert.equal(describeConfigLocation(findConfig(undefined, env)), `no config file (searched ${user}, ${system}): built-in defaults`);
      mkdirSync(join(dir, 'etc', 'audioloop'), { recursive: true });
      writeFileSync(system, '');
      assert.deepEqual(findConfig(undefined, env), { file: system, source: 'system', searched: [user, system] });
      mkdirSync(join(dir, 'xdg', 'audioloop'), { recursive: true });
      writeFileSync(user, '');
      assert.equal(findConfig(undefined, env).file, user);
      assert.equal(describeConfigLocation(findConfig(undefined, env)), `config ${user} (user config)`);
      const missing = join(dir, 'none.conf');
      assert.deepEqual(findConfig(missing, env), { file: missing, source: 'command line', searched: [user, system] });
      // a directory in place of the file is there (loadConfig reports EISDIR), not skipped
      rmSync(user);
      mkdirSync(user);
      assert.equal(findConfig(undefined, env).file, user);
      assert.match(configError(() => loadConfig(user)).message, /EISDIR/);
    });
  });

  describe('shipped conf/audioloop.conf', () => {
    // compiled to dist/test/unit: the repository root is three levels up
    const shipped = resolve(__dirname, '..', '..', '..', 'conf', 'audioloop.conf');

    it('parses and sets audioloop_instances = 1', () => {
      assert.match(readFileSync(shipped, 'utf8'), /^audioloop_instances = 1$/m);
      assert.deepEqual(loadConfig(shipped), { ...DEFAULT_CONFIG });
    });

    it('documents every key', () => {
      const text = readFileSync(shipped, 'utf8');
      for (const key of CONFIG_KEYS) assert.match(text, new RegExp(`^#?${key} = `, 'm'), key);
    });
  });
});
