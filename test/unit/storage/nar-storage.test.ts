import { afterEach, beforeEach, describe, expect, test } from '@jest/globals';
import { appendFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NarStorage, StagingInUseError } from '../../../src/storage/nar-storage.js';

const NAME = '0'.repeat(52) + '.nar.lz4';

describe('NarStorage', () => {
  let root: string;
  let storage: NarStorage;
  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'kiln-nars-'));
    storage = await NarStorage.open(root);
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  test('a staged upload is invisible until it is committed, then readable whole', async () => {
    const staged = await storage.stage('b1-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('frame-one'), plain: 100 }]);
    await staged.appendFrames([{ bytes: Buffer.from('frame-two!'), plain: 50 }]);
    expect(await storage.size(NAME)).toBeUndefined();
    expect(readdirSync(join(root, 'nar'))).toEqual([]);
    await staged.commit(NAME);
    expect(await storage.size(NAME)).toBe(19);
    const chunks: Buffer[] = [];
    for await (const c of storage.read(NAME)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('frame-oneframe-two!');
    expect(readdirSync(join(root, 'staging'))).toEqual([]);
  });

  test('frames appended together are journaled one by one: a resume sees each of them', async () => {
    const staged = await storage.stage('b9-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('first'), plain: 7 }]); // held in memory until a second comes
    await staged.appendFrames([
      { bytes: Buffer.from('second'), plain: 11 },
      { bytes: Buffer.from('third!!'), plain: 13 },
    ]);
    expect(staged.frames).toEqual([
      { stored: 5, plain: 7 },
      { stored: 6, plain: 11 },
      { stored: 7, plain: 13 },
    ]);
    await staged.close();
    const resumed = await storage.stage('b9-out', { fresh: false });
    expect(resumed.plainOffset).toBe(31);
    const frames: string[] = [];
    for await (const f of resumed.readFrames()) frames.push(f.toString());
    expect(frames).toEqual(['first', 'second', 'third!!']);
    await resumed.close();
  });

  test('resuming keeps whole frames and reports their uncompressed offset', async () => {
    const staged = await storage.stage('b2-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('aaaa'), plain: 10 }]);
    await staged.appendFrames([{ bytes: Buffer.from('bbbbbb'), plain: 20 }]);
    await staged.close();
    expect(await storage.stagedOffset('b2-out')).toBe(30);
    const resumed = await storage.stage('b2-out', { fresh: false });
    expect(resumed.plainOffset).toBe(30);
    expect(resumed.storedSize).toBe(10);
    const frames: string[] = [];
    for await (const f of resumed.readFrames()) frames.push(f.toString());
    expect(frames).toEqual(['aaaa', 'bbbbbb']);
    await resumed.close();
  });

  test('a frame cut off half way (no journal entry) is dropped on resume', async () => {
    const staged = await storage.stage('b3-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('whole'), plain: 7 }]);
    await staged.close();
    appendFileSync(join(root, 'staging', 'b3-out.part'), 'half-a-fra');
    const resumed = await storage.stage('b3-out', { fresh: false });
    expect(resumed.storedSize).toBe(5);
    expect(resumed.plainOffset).toBe(7);
    await resumed.appendFrames([{ bytes: Buffer.from('next'), plain: 3 }]);
    await resumed.close();
    expect(readFileSync(join(root, 'staging', 'b3-out.part'), 'utf8')).toBe('wholenext');
  });

  test('a torn journal entry is ignored along with its frame', async () => {
    const staged = await storage.stage('b4-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('one'), plain: 1 }]);
    await staged.close();
    appendFileSync(join(root, 'staging', 'b4-out.part'), 'two');
    appendFileSync(join(root, 'staging', 'b4-out.frames'), Buffer.alloc(9, 1));
    const resumed = await storage.stage('b4-out', { fresh: false });
    expect(resumed.frames).toEqual([{ stored: 3, plain: 1 }]);
    await resumed.close();
  });

  test('a fresh stage throws away what was staged before', async () => {
    const staged = await storage.stage('b5-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('old'), plain: 3 }]);
    await staged.close();
    const again = await storage.stage('b5-out', { fresh: true });
    expect(again.plainOffset).toBe(0);
    await again.close();
  });

  test('a one-frame upload is put into place whole, leaving no staging files, not even an earlier attempt\'s', async () => {
    const earlier = await storage.stage('b9-out', { fresh: true });
    await earlier.appendFrames([{ bytes: Buffer.from('stale'), plain: 5 }]);
    await earlier.appendFrames([{ bytes: Buffer.from('frames'), plain: 6 }]);
    await earlier.close();
    expect(await storage.stagedOffset('b9-out')).toBe(11);
    const staged = await storage.stage('b9-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('only-frame'), plain: 40 }]);
    expect(staged.plainOffset).toBe(40);
    expect(staged.frames).toEqual([{ stored: 10, plain: 40 }]);
    const replayed: string[] = [];
    for await (const f of staged.readFrames()) replayed.push(f.toString());
    expect(replayed).toEqual(['only-frame']);
    await staged.commit(NAME);
    expect(readFileSync(join(root, 'nar', NAME), 'utf8')).toBe('only-frame');
    expect(readdirSync(join(root, 'staging'))).toEqual([]);
    expect(await storage.stagedOffset('b9-out')).toBe(0);
    // Ended once: the key is free, and ending again does nothing.
    await staged.close();
    await (await storage.stage('b9-out', { fresh: false })).discard();
  });

  test("a one-frame upload removes the files an earlier process's attempt left (found when the storage opens)", async () => {
    const earlier = await storage.stage('b12-out', { fresh: true });
    await earlier.appendFrames([{ bytes: Buffer.from('stale'), plain: 5 }]);
    await earlier.appendFrames([{ bytes: Buffer.from('frames'), plain: 6 }]);
    await earlier.close();
    const restarted = await NarStorage.open(root);
    const staged = await restarted.stage('b12-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('only-frame'), plain: 40 }]);
    await staged.commit(NAME);
    expect(readdirSync(join(root, 'staging'))).toEqual([]);
    expect(await restarted.stagedOffset('b12-out')).toBe(0);
  });

  test('a one-frame upload kept for a resume is written out and resumes after its frame', async () => {
    const staged = await storage.stage('b10-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('held'), plain: 4 }]);
    await staged.close();
    expect(await storage.stagedOffset('b10-out')).toBe(4);
    const resumed = await storage.stage('b10-out', { fresh: false });
    await resumed.appendFrames([{ bytes: Buffer.from('-next'), plain: 5 }]);
    await resumed.commit(NAME);
    expect(readFileSync(join(root, 'nar', NAME), 'utf8')).toBe('held-next');
    expect(readdirSync(join(root, 'staging'))).toEqual([]);
  });

  test('a one-frame upload that is discarded leaves nothing, an earlier attempt\'s files included', async () => {
    const earlier = await storage.stage('b11-out', { fresh: true });
    await earlier.close();
    const staged = await storage.stage('b11-out', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('bad'), plain: 3 }]);
    await staged.discard();
    expect(readdirSync(join(root, 'staging'))).toEqual([]);
    expect(readdirSync(join(root, 'nar'))).toEqual([]);
  });

  test('a staged upload has one writer: a second stage of the same key is refused until the first ends', async () => {
    const first = await storage.stage('b7-out', { fresh: true });
    await first.appendFrames([{ bytes: Buffer.from('fir'), plain: 2 }]);
    await first.appendFrames([{ bytes: Buffer.from('st'), plain: 3 }]);
    await expect(storage.stage('b7-out', { fresh: true })).rejects.toThrow(StagingInUseError);
    await expect(storage.stage('b7-out', { fresh: false })).rejects.toThrow(StagingInUseError);
    // The refused attempts touched nothing.
    expect(readFileSync(join(root, 'staging', 'b7-out.part'), 'utf8')).toBe('first');
    // Other keys are not held up.
    await (await storage.stage('b8-out', { fresh: true })).discard();
    await first.close();
    // Ending twice lets go once: the key is the next writer's.
    const second = await storage.stage('b7-out', { fresh: false });
    await first.close();
    await expect(storage.stage('b7-out', { fresh: false })).rejects.toThrow(StagingInUseError);
    expect(second.plainOffset).toBe(5);
    await second.discard();
    expect(readdirSync(join(root, 'staging'))).toEqual([]);
    await (await storage.stage('b7-out', { fresh: false })).close();
  });

  test('refuses file names and keys that could leave its directories', () => {
    expect(() => storage.filePath('../../etc/passwd')).toThrow(/bad NAR file name/);
    expect(() => storage.filePath(NAME + '/..')).toThrow(/bad NAR file name/);
    return expect(storage.stage('../x', { fresh: true })).rejects.toThrow(/bad staging key/);
  });

  test('remove deletes a stored file and tolerates a missing one', async () => {
    const staged = await storage.stage('b6', { fresh: true });
    await staged.appendFrames([{ bytes: Buffer.from('x'), plain: 1 }]);
    await staged.commit(NAME);
    await storage.remove(NAME);
    expect(existsSync(storage.filePath(NAME))).toBe(false);
    await storage.remove(NAME);
  });
});
