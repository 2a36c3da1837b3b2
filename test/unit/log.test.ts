import assert from 'node:assert/strict';
import { createLogger } from '../../src/log';

describe('log', () => {
  function capture(level: 'error' | 'warn' | 'info' | 'debug', format: 'text' | 'json' = 'text') {
    const lines: string[] = [];
    const log = createLogger(level, 'audioloop', (l) => lines.push(l), format);
    return { log, lines };
  }

  it('text lines carry time, level, scope, message and fields', () => {
    const { log, lines } = capture('info');
    log.child('audioloop0').info('idle -> waiting', { pid: 42 });
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info  audioloop\/audioloop0: idle -> waiting \{"pid":42\}$/);
  });

  it('drops messages below the level', () => {
    const { log, lines } = capture('warn');
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    assert.deepEqual(
      lines.map((l) => l.split(' ')[1]),
      ['warn', 'error'],
    );
  });

  it('json lines are one object each', () => {
    const { log, lines } = capture('debug', 'json');
    log.child('x').debug('hello "world"', { n: 1 });
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(rec.level, 'debug');
    assert.equal(rec.scope, 'audioloop/x');
    assert.equal(rec.msg, 'hello "world"');
    assert.equal(rec.n, 1);
  });

  it('configure() changes level and format for parent and children alike (SIGHUP reload)', () => {
    const { log, lines } = capture('error');
    const child = log.child('audioloop3');
    child.info('dropped');
    log.configure({ level: 'info', format: 'json' });
    child.info('kept');
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0]!) as { msg: string }).msg, 'kept');
  });
});
