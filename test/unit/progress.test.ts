import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { formatBytes, formatElapsed, Progress, renderProgress } from '../../src/cli/progress';
import { SILENCE_DB } from '../../src/dsp/level';

describe('record/play progress line', () => {
  it('formats elapsed time and bytes', () => {
    assert.equal(formatElapsed(0), '00:00.0');
    assert.equal(formatElapsed(1234), '00:01.2');
    assert.equal(formatElapsed(61999), '01:01.9');
    assert.equal(formatElapsed(100 * 60000), '100:00.0');
    assert.equal(formatBytes(999), '999 B');
    assert.equal(formatBytes(230400), '230.4 kB');
    assert.equal(formatBytes(12_345_678), '12.3 MB');
    assert.equal(formatBytes(2_500_000_000), '2.50 GB');
  });

  it('renders a meter per channel that fits the terminal', () => {
    const line = renderProgress('rec', 1234, 230400, [-6, SILENCE_DB], 80);
    assert.equal(line, 'rec 00:01.2  230.4 kB  L [#############-]  -6.0  R [--------------]  -inf dBFS');
    assert.ok(line.length >= 77 && line.length <= 79, 'fills the line, never wraps');
    // 8 channels on a narrow terminal: bars shrink to 4 cells, then the line is cut to width - 1
    const many = renderProgress('play', 0, 0, [0, -10, -20, -30, -40, -50, -60, SILENCE_DB], 60);
    assert.equal(many.length, 59);
    assert.ok(many.startsWith('play 00:00.0       0 B  1 [####]   0.0  2 [###-] -10.0'), many);
    // mono
    assert.match(renderProgress('rec', 0, 0, [-20], 80), /  M \[#+-+\] -20\.0 dBFS$/);
  });

  it('redraws in place and keeps messages on their own lines', () => {
    const out = new PassThrough() as unknown as NodeJS.WriteStream;
    let text = '';
    (out as unknown as PassThrough).on('data', (d: Buffer) => (text += d.toString()));
    const p = new Progress('rec', { format: 's16le', rate: 48000, channels: 2 }, out);
    p.say('waiting');
    p.update(Buffer.from([0, 0x40, 0, 0x20])); // one frame: L 0.5, R 0.25
    p.start();
    p.say('client started');
    p.finish();
    const lines = text.split('\n');
    assert.equal(lines[0], 'waiting');
    assert.match(lines[1]!, /^\rrec 00:00\.0 +4 B  L \[#+-*\]  -6\.0  R \[#+-*\] -12\.0 dBFS\x1b\[K\r\x1b\[Kclient started$/);
    assert.match(lines[2]!, /^\rrec .*\x1b\[K\rrec .* dBFS\x1b\[K$/);
    assert.equal(lines[3], '');
  });

  it('paced (play): counts and meters at the loop rate from START, everything at finish', () => {
    const out = new PassThrough() as unknown as NodeJS.WriteStream;
    let text = '';
    (out as unknown as PassThrough).on('data', (d: Buffer) => (text += d.toString()));
    let t = 1000;
    // 1000 Hz mono s16: 2 bytes per ms
    const p = new Progress('play', { format: 's16le', rate: 1000, channels: 1 }, out, true, () => t);
    const loud = Buffer.alloc(2000);
    for (let i = 0; i < 1000; i++) loud.writeInt16LE(i % 2 ? 16384 : -16384, 2 * i); // -6 dBFS
    const last = (): string => text.split('\r').filter((l) => l.startsWith('play ')).pop()!.replace('\x1b[K', '');
    p.start();
    p.update(Buffer.alloc(400)); // 200 ms of silence, then 1 s at -6 dBFS: all written at once
    p.update(loud);
    t += 150;
    p.draw();
    assert.equal(last(), 'play 00:00.1     300 B  M [--------------------]  -inf dBFS');
    t += 150;
    p.draw();
    assert.match(last(), /^play 00:00\.3     600 B  M \[#+-*\]  -6\.0 dBFS$/);
    p.finish();
    assert.match(last(), /^play 00:00\.3    2\.4 kB  M \[#+-*\]  -6\.0 dBFS\n$/, 'the last state stays, then a new line');
  });
});
