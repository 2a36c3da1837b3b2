import assert from 'node:assert/strict';
import { AudioloopError, errnoError, makeError, SystemError } from '../../src/errors';
import { ProtocolError, parseOpen } from '../../src/protocol';
import { ConfigError, parseConfig } from '../../src/config';
import { WavFormatError, parseWavHeader } from '../../src/wav';
import { RtpError, decodeRtp } from '../../src/bridge/rtp';

describe('errors: one helper, kinds told apart by instanceof', function () {
  it('every coded error is an AudioloopError with code, errno and the right subclass', function () {
    const sys = makeError('ECONNRESET', 'read');
    assert.ok(sys instanceof SystemError && sys instanceof AudioloopError);
    assert.deepEqual([sys.code, sys.errno, sys.syscall, sys.name], ['ECONNRESET', 104, 'read', 'SystemError']);
    assert.equal(errnoError(-16, 'open').code, 'EBUSY');
    const got: unknown[] = [];
    for (const f of [
      () => parseOpen('OPEN mode=rw'),
      () => parseConfig('audioloop_instances = 99\n', 'x.conf'),
      () => parseWavHeader(Buffer.from('not a wav file at all, no RIFF here....')),
      () => decodeRtp(Buffer.from([0, 1, 2])),
    ]) {
      try {
        f();
      } catch (e) {
        got.push(e);
      }
    }
    assert.equal(got.length, 4, 'each call throws');
    const [p, c, w, r] = got;
    assert.ok(p instanceof ProtocolError && !(p instanceof ConfigError) && p instanceof AudioloopError);
    assert.ok(c instanceof ConfigError && !(c instanceof ProtocolError) && c.code === 'ECONFIG');
    assert.ok(w instanceof WavFormatError && w.code === 'EWAVFORMAT');
    assert.ok(r instanceof RtpError && r.code === 'EPROTO' && r.errno === 71);
    assert.equal((p as ProtocolError).errno, 22, 'EINVAL');
    for (const e of got) assert.ok(!(e instanceof SystemError));
  });
});
