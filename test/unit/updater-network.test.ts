// The account updater's network side: the file-drop exchange and the rules-driven network simulator.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { luhnValid } from '../../src/domain/pan';
import { abu } from '../../src/updater/formats/abu';
import { vau } from '../../src/updater/formats/vau';
import { answerDrop } from '../../src/updater/network/answer-drop';
import { OUTCOMES, type DropFormat, type Inquiry, type NetworkResponse, type Outcome } from '../../src/updater/network/contract';
import { FileDropTransport } from '../../src/updater/network/file-drop';
import { deriveNewPan, NetworkSimulator } from '../../src/updater/network/simulator';
import { loadSimulatorRules, parseSimulatorRules, SimulatorRulesError, type SimulatorRules } from '../../src/updater/network/simulator-rules';
import { newPan } from '../support/pans';

const tempDirs: string[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-drop-'));
  tempDirs.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function modeOf(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

function dropIn(root = tempDir()): FileDropTransport {
  return new FileDropTransport({ outbox: path.join(root, 'out'), inbox: path.join(root, 'in') });
}

/** Card number `index` on test BIN 411111, with the check digit that makes it pass Luhn; the same on every run. */
function testPan(index: number, length = 16): string {
  const body = `411111${String(index).padStart(length - 7, '0')}`;
  for (let check = 0; check <= 9; check++) if (luhnValid(`${body}${check}`)) return `${body}${check}`;
  throw new Error('unreachable');
}

function inquiry(index: number, pan = testPan(index)): Inquiry {
  return { ref: `ref-${index}`, pan, expMonth: 1 + (index % 12), expYear: 2027 + (index % 5), merchantId: 'merchant-1' };
}

/** A request file is `{ batchId, inquiries }` as JSON: the smallest format answerDrop can work with. */
const jsonFormat: DropFormat = {
  parseInquiry: (text) => ({ ...(JSON.parse(text) as { batchId: string; inquiries: Inquiry[] }), errors: [] }),
  writeResponse: (batchId, responses) => JSON.stringify({ batchId, responses }),
};

describe('FileDropTransport', () => {
  it('round-trips a request and its response with 0700 folders and 0600 files', async () => {
    const vault = dropIn();
    const sent = await vault.send('batch-1', 'request text');
    expect(sent).toBe(path.join(vault.outbox, 'batch-1.req'));
    expect(fs.readFileSync(sent, 'utf8')).toBe('request text');
    expect(modeOf(vault.outbox)).toBe(0o700);
    expect(modeOf(sent)).toBe(0o600);

    const network = vault.counterpart();
    expect(await network.receive('batch-1')).toBe('request text');
    const answered = await network.send('batch-1', 'response text');
    expect(answered).toBe(path.join(vault.inbox, 'batch-1.resp'));
    expect(modeOf(vault.inbox)).toBe(0o700);
    expect(modeOf(answered)).toBe(0o600);
    expect(await vault.receive('batch-1')).toBe('response text');
  });

  it('receives nothing while no response has arrived', async () => {
    expect(await dropIn().receive('batch-1')).toBeUndefined();
  });

  it('never shows a partial file under the final name and leaves no temp file behind', async () => {
    const vault = dropIn();
    const text = 'x'.repeat(32 * 1024 * 1024);
    const finalName = 'big.req';
    const seen: Array<{ name: string; size: number }> = [];
    let writing = true;
    const watch = (async () => {
      while (writing) {
        for (const name of fs.existsSync(vault.outbox) ? fs.readdirSync(vault.outbox) : []) {
          try {
            seen.push({ name, size: fs.statSync(path.join(vault.outbox, name)).size });
          } catch {
            // renamed between readdir and stat
          }
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    await vault.send('big', text);
    writing = false;
    await watch;

    expect(seen.filter(({ name }) => name === finalName).every(({ size }) => size === text.length)).toBe(true);
    // The watcher did look while the bytes were going in: it saw them, under a dot-named temp file.
    expect(seen.some(({ name, size }) => name.startsWith('.big.') && size < text.length)).toBe(true);
    expect(fs.readdirSync(vault.outbox)).toEqual([finalName]);
  });

  it('replaces an earlier request when the same batch is sent again', async () => {
    const vault = dropIn();
    await vault.send('batch-1', 'first');
    await vault.send('batch-1', 'second');
    expect(await vault.counterpart().receive('batch-1')).toBe('second');
    expect(fs.readdirSync(vault.outbox)).toEqual(['batch-1.req']);
  });

  it('removes the temp file a send killed before its rename left behind, once the batch is sent again or withdrawn', async () => {
    // A batch file holds card numbers: a worker killed between writing and renaming must not leave one for good.
    const vault = dropIn();
    fs.mkdirSync(vault.outbox, { recursive: true });
    const leftover = (batchId: string) => {
      fs.writeFileSync(path.join(vault.outbox, `.${batchId}.req.0123456789ab.tmp`), `cards of ${batchId}`, { mode: 0o600 });
    };
    leftover('batch-1');
    leftover('batch-2');
    await vault.send('batch-1', 'request text');
    expect(fs.readdirSync(vault.outbox).sort()).toEqual(['.batch-2.req.0123456789ab.tmp', 'batch-1.req']);
    await vault.withdraw('batch-2');
    expect(fs.readdirSync(vault.outbox)).toEqual(['batch-1.req']);
  });

  it('archives a response to processed/ once, and archiving again changes nothing', async () => {
    const vault = dropIn();
    await vault.counterpart().send('batch-1', 'response text');
    const archived = await vault.archive('batch-1');
    expect(archived).toBe(path.join(vault.inbox, 'processed', 'batch-1.resp'));
    expect(await vault.archive('batch-1')).toBe(archived);
    expect(fs.readFileSync(archived, 'utf8')).toBe('response text');
    expect(modeOf(path.join(vault.inbox, 'processed'))).toBe(0o700);
    expect(modeOf(archived)).toBe(0o600);
    expect(await vault.receive('batch-1')).toBeUndefined();
  });

  it("discards every copy the vault holds of an applied batch: the response, its archive, and the request the relay left", async () => {
    const vault = dropIn();
    await vault.send('batch-1', 'request text');
    await vault.send('batch-2', 'another request');
    const network = vault.counterpart();
    await network.send('batch-1', 'response text');
    await vault.archive('batch-1');
    await vault.discard('batch-1');
    expect(fs.readdirSync(vault.outbox)).toEqual(['batch-2.req']);
    expect(fs.readdirSync(path.join(vault.inbox, 'processed'))).toEqual([]);
    await vault.discard('batch-1');

    // The network side's discard (the simulator's) leaves the response it sent for the vault to read.
    await network.send('batch-2', 'second response');
    await network.discard('batch-2');
    expect(await vault.receive('batch-2')).toBe('second response');
  });

  it('tightens a response the other side wrote 0644 to 0600 when archiving it', async () => {
    const vault = dropIn();
    fs.mkdirSync(vault.inbox, { recursive: true });
    fs.writeFileSync(path.join(vault.inbox, 'batch-1.resp'), 'response text', { mode: 0o644 });
    expect(modeOf(await vault.archive('batch-1'))).toBe(0o600);
  });

  it('rejects archiving a batch that never arrived with not_found', async () => {
    await expect(dropIn().archive('batch-1')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('refuses to read a symlink dropped in the inbox', async () => {
    const root = tempDir();
    const vault = dropIn(root);
    fs.mkdirSync(vault.inbox, { recursive: true });
    fs.writeFileSync(path.join(root, 'elsewhere.txt'), 'not a batch');
    fs.symlinkSync(path.join(root, 'elsewhere.txt'), path.join(vault.inbox, 'batch-1.resp'));
    await expect(vault.receive('batch-1')).rejects.toMatchObject({ code: 'ELOOP' });
    await expect(vault.archive('batch-1')).rejects.toMatchObject({ code: 'invalid_request' });
  });

  it.each(['../escape', 'a/b', '.hidden', '', 'a..b', 'x'.repeat(129)])('rejects the batch id %j with invalid_field', async (batchId) => {
    const vault = dropIn();
    await expect(vault.send(batchId, 'text')).rejects.toMatchObject({ code: 'invalid_field' });
    await expect(vault.receive(batchId)).rejects.toMatchObject({ code: 'invalid_field' });
    await expect(vault.archive(batchId)).rejects.toMatchObject({ code: 'invalid_field' });
  });
});

describe('NetworkSimulator', () => {
  const inquiries = Array.from({ length: 10_000 }, (_, i) => inquiry(i));

  it('answers the same inquiries the same way from separate instances, whatever the batch they come in', () => {
    const first = NetworkSimulator.fromFile().respond(inquiries.slice(0, 2000));
    const second = NetworkSimulator.fromFile().respond(inquiries.slice(0, 2000));
    expect(second).toEqual(first);
    const oneByOne = inquiries.slice(0, 200).flatMap((one) => NetworkSimulator.fromFile().respond([one]));
    expect(oneByOne).toEqual(first.slice(0, 200));
  });

  it('reaches every outcome from the default rules over 10,000 cards on test BIN 411111', () => {
    const responses = NetworkSimulator.fromFile().respond(inquiries);
    expect(responses.map(({ ref }) => ref)).toEqual(inquiries.map(({ ref }) => ref));
    const counts = new Map<string, number>();
    for (const { outcome } of responses) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual([...OUTCOMES].sort());
    for (const outcome of OUTCOMES) expect(counts.get(outcome)).toBeGreaterThan(100);
  });

  it('gives new_account a new Luhn-valid PAN of the same length on the same BIN, and new_expiry a later year', () => {
    const byRef = new Map(inquiries.map((one) => [one.ref, one]));
    const responses = NetworkSimulator.fromFile().respond(inquiries);
    const reissued = responses.filter(({ outcome }) => outcome === 'new_account');
    expect(reissued.length).toBeGreaterThan(0);
    for (const { ref, newPan } of reissued) {
      const old = byRef.get(ref)!.pan;
      expect(newPan).toBeDefined();
      expect(luhnValid(newPan!)).toBe(true);
      expect(newPan).toHaveLength(old.length);
      expect(newPan!.slice(0, 6)).toBe('411111');
      expect(newPan).not.toBe(old);
    }
    for (const { ref, newExpMonth, newExpYear } of responses.filter(({ outcome }) => outcome === 'new_expiry')) {
      const old = byRef.get(ref)!;
      expect({ newExpMonth, newExpYear }).toEqual({ newExpMonth: old.expMonth, newExpYear: old.expYear + 3 });
    }
    const quiet = responses.filter(({ outcome }) => outcome !== 'new_account' && outcome !== 'new_expiry');
    expect(quiet.every((r) => r.newPan === undefined && r.newExpYear === undefined)).toBe(true);
  });

  it.each([12, 13, 15, 19])('derives a valid, different, same-length PAN for a %i-digit card', (length) => {
    for (let i = 0; i < 500; i++) {
      const old = testPan(i, length);
      const fresh = deriveNewPan(old);
      expect([luhnValid(fresh), fresh.length, fresh.slice(0, 6), fresh === old]).toEqual([true, length, '411111', false]);
    }
  });

  it('answers published test cards, exact refs and BIN ranges from the default rules', () => {
    const [visa, mastercard, amex, byRef] = NetworkSimulator.fromFile().respond([
      { ...inquiry(1), pan: '4242424242424242', expYear: 2028 },
      { ...inquiry(2), pan: '5555555555554444', expMonth: 6, expYear: 2027 },
      { ...inquiry(3), pan: '378282246310005' },
      { ...inquiry(4), ref: 'sim-unknown' },
    ]);
    expect(visa).toMatchObject({ outcome: 'new_account', networkCode: 'A', newExpYear: 2032 });
    expect(mastercard).toEqual({ ref: 'ref-2', outcome: 'new_expiry', networkCode: 'E', newExpMonth: 6, newExpYear: 2029 });
    expect(amex).toEqual({ ref: 'ref-3', outcome: 'non_participating', networkCode: 'P' });
    expect(byRef).toEqual({ ref: 'sim-unknown', outcome: 'unknown', networkCode: 'U' });
  });

  it('lets the first matching rule answer, with the rule networkCode, and falls back to the default', () => {
    const rules: SimulatorRules = {
      default: { outcome: 'no_match', networkCode: 'NM' },
      rules: [
        { match: { last4: '1111', panPrefix: '4111' }, outcome: 'closed', networkCode: 'X1' },
        { match: { panPrefix: '4111' }, outcome: 'opted_out' },
      ],
    };
    const answers = new NetworkSimulator(rules).respond([
      { ...inquiry(1), pan: '4111111111111111' },
      { ...inquiry(2), pan: '4111111111111129' },
      { ...inquiry(3), pan: '5555555555554444' },
    ]);
    expect(answers.map(({ outcome, networkCode }) => [outcome, networkCode])).toEqual([['closed', 'X1'], ['opted_out', 'O'], ['no_match', 'NM']]);
  });

  it('answers no_match for a PAN that is not a card number', () => {
    const [answer] = NetworkSimulator.fromFile().respond([{ ...inquiry(1), pan: '4111111111111112' }]);
    expect(answer).toEqual({ ref: 'ref-1', outcome: 'no_match', networkCode: 'N' });
  });
});

describe('simulator rules', () => {
  function rulesError(doc: unknown): string {
    try {
      parseSimulatorRules(doc, 'rules.yaml');
    } catch (err) {
      expect(err).toBeInstanceOf(SimulatorRulesError);
      return (err as Error).message;
    }
    throw new Error('the rules were accepted');
  }
  const base = { default: { outcome: 'no_change' }, rules: [{ match: { last4: '1111' }, outcome: 'closed' }] };

  it('accepts the shipped rules and the same rules as JSON', () => {
    const rules = loadSimulatorRules();
    const file = path.join(tempDir(), 'rules.json');
    fs.writeFileSync(file, JSON.stringify(rules));
    expect(loadSimulatorRules(file)).toEqual(rules);
  });

  it.each<[string, unknown, string]>([
    ['an unknown outcome', { ...base, rules: [base.rules[0], { match: { last4: '2222' }, outcome: 'expired' }] }, 'field /rules/1/outcome'],
    ['a misspelt field', { ...base, rules: [{ match: { lastFour: '1111' }, outcome: 'closed' }] }, 'field /rules/0/match: must NOT have additional properties (lastFour)'],
    ['an empty match', { ...base, rules: [{ match: {}, outcome: 'closed' }] }, 'field /rules/0/match'],
    ['a non-digit prefix', { ...base, rules: [{ match: { panPrefix: '41x1' }, outcome: 'closed' }] }, 'field /rules/0/match/panPrefix'],
    ['an offset not below every', { ...base, rules: [{ match: { every: 7, offset: 7 }, outcome: 'closed' }] }, 'field /rules/0/match/offset'],
    ['an offset without every', { ...base, rules: [{ match: { offset: 3 }, outcome: 'closed' }] }, 'field /rules/0/match/every'],
    ['addYears on an outcome without an expiry', { ...base, rules: [{ match: { last4: '1111' }, outcome: 'closed', addYears: 2 }] }, 'field /rules/0/addYears'],
    ['a backwards BIN range', { ...base, rules: [{ match: { binRange: { from: '4999', to: '4000' } }, outcome: 'closed' }] }, 'field /rules/0/match/binRange'],
    ['no default', { rules: [] }, "field /: must have required property 'default'"],
  ])('rejects %s naming the field', (_, doc, field) => {
    expect(rulesError(doc)).toContain(field);
  });

  it('names the field but never its value', () => {
    expect(rulesError({ ...base, rules: [{ match: { panPrefix: '4111-1111' }, outcome: 'closed' }] })).not.toContain('4111-1111');
  });

  it('rejects a file that is not YAML naming the file', () => {
    const file = path.join(tempDir(), 'broken.yaml');
    fs.writeFileSync(file, 'rules: [\n');
    expect(() => loadSimulatorRules(file)).toThrow(`${file}: not valid YAML`);
  });

  it('rejects a hand-built rules object just as it rejects a file', () => {
    expect(() => new NetworkSimulator({ default: { outcome: 'closed', addYears: 1 }, rules: [] })).toThrow('field /default/addYears');
  });
});

describe('answerDrop', () => {
  /** What answerDrop makes of the simulator's answers: a reissue that names no new expiry keeps the one on file. */
  function expectedAnswers(simulator: NetworkSimulator, batch: Inquiry[]): NetworkResponse[] {
    return simulator.respond(batch).map((r, i) =>
      r.outcome === 'new_account' && r.newExpYear === undefined ? { ...r, newExpMonth: batch[i]!.expMonth, newExpYear: batch[i]!.expYear } : r,
    );
  }

  it('answers a dropped request with the simulator and archives it, once', async () => {
    const vault = dropIn();
    const simulator = NetworkSimulator.fromFile();
    const batch = Array.from({ length: 50 }, (_, i) => inquiry(i));
    await vault.send('batch-7', JSON.stringify({ batchId: 'batch-7', inquiries: batch }));

    const written = await answerDrop(vault, jsonFormat, 'batch-7', simulator);
    expect(written).toBe(path.join(vault.inbox, 'batch-7.resp'));
    const received = JSON.parse((await vault.receive('batch-7'))!) as { batchId: string; responses: NetworkResponse[] };
    expect(received).toEqual({ batchId: 'batch-7', responses: expectedAnswers(simulator, batch) });
    expect(fs.existsSync(path.join(vault.outbox, 'processed', 'batch-7.req'))).toBe(true);

    expect(await answerDrop(vault, jsonFormat, 'batch-7', simulator)).toBeUndefined();
  });

  it('states the expiry on file for a card the simulator reissues without a new one', async () => {
    const vault = dropIn();
    const simulator = new NetworkSimulator({ default: { outcome: 'new_account' }, rules: [] });
    const batch = [inquiry(1), inquiry(2)];
    expect(simulator.respond(batch).every((r) => r.newExpYear === undefined)).toBe(true);
    await vault.send('batch-8', JSON.stringify({ batchId: 'batch-8', inquiries: batch }));
    await answerDrop(vault, jsonFormat, 'batch-8', simulator);
    const { responses } = JSON.parse((await vault.receive('batch-8'))!) as { responses: NetworkResponse[] };
    expect(responses.map(({ newExpMonth, newExpYear }) => ({ newExpMonth, newExpYear }))).toEqual(
      batch.map(({ expMonth, expYear }) => ({ newExpMonth: expMonth, newExpYear: expYear })),
    );
  });
});

describe.each([
  ['vau', vau, { unknown: 'no_match' }],
  ['abu', abu, { non_participating: 'unknown', opted_out: 'unknown' }],
] as const)('answerDrop with the %s format over a real folder', (_name, format, closest: Partial<Record<Outcome, Outcome>>) => {
  /** Cards on the three test BINs, fresh each run; refs fixed, so the simulator's ref buckets give every outcome. */
  function vaultBatch(size: number): Inquiry[] {
    const bins = ['411111', '555555', '222300'];
    return Array.from({ length: size }, (_, i) => ({
      ref: i === 0 ? 'sim-unknown' : `card-${i}`,
      pan: newPan(bins[i % 3], 16),
      expMonth: 1 + (i % 12),
      expYear: 2027 + (i % 4),
      merchantId: 'merchant-1',
    }));
  }

  it('answers every inquiry the vault sends, and the vault reads one response per inquiry', async () => {
    const vault = dropIn();
    const simulator = NetworkSimulator.fromFile();
    const batch = vaultBatch(120);
    await vault.send('B7', format.writeInquiry('B7', batch));

    expect(await answerDrop(vault, format, 'B7', simulator)).toBe(path.join(vault.inbox, 'B7.resp'));
    const report = format.parseResponse((await vault.receive('B7'))!);
    expect(report.errors).toEqual([]);
    expect(report.batchId).toBe('B7');
    expect(report.responses.map(({ ref }) => ref)).toEqual(batch.map(({ ref }) => ref));

    // What the simulator said, as this format can say it: the same outcome, or the documented closest one.
    const said = simulator.respond(batch);
    expect(new Set(said.map(({ outcome }) => outcome))).toEqual(new Set(OUTCOMES));
    report.responses.forEach((heard, i) => {
      const { outcome, newPan: reissued } = said[i]!;
      expect(heard.outcome).toBe(closest[outcome] ?? outcome);
      expect(heard.newPan).toBe(reissued);
    });
    expect(fs.existsSync(path.join(vault.outbox, 'processed', 'B7.req'))).toBe(true);
  });

  it('answers only the good inquiries of a request with bad records, in a file the vault reads without error', async () => {
    const vault = dropIn();
    const batch = vaultBatch(4);
    const pan = batch[2]!.pan;
    const broken = pan.slice(0, -1) + String((Number(pan.at(-1)) + 1) % 10);
    await vault.send('B9', format.writeInquiry('B9', batch).replace(pan, broken));

    await answerDrop(vault, format, 'B9', NetworkSimulator.fromFile());
    const report = format.parseResponse((await vault.receive('B9'))!);
    expect(report.errors).toEqual([]);
    expect(report.responses.map(({ ref }) => ref)).toEqual([batch[0]!.ref, batch[1]!.ref, batch[3]!.ref]);
  });

  it('answers no card of a request whose header names another batch', async () => {
    const vault = dropIn();
    await vault.send('B10', format.writeInquiry('B11', vaultBatch(3)));
    await answerDrop(vault, format, 'B10', NetworkSimulator.fromFile());
    expect(format.parseResponse((await vault.receive('B10'))!)).toEqual({ batchId: 'B10', responses: [], errors: [] });
  });
});
