// Policies: the shipped roles, deny-by-default authorization, and every malformed policy file refused by file and field.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { authorize, authorizeDetokenize, ACTIONS, type Action, type Principal, type Role } from '../../src/domain/policy';
import { isVaultError } from '../../src/errors';
import { loadPolicies, PolicyError } from '../../src/policy/load-policies';
import { grantsDigest } from '../../src/policy/policy-load-details';
import { errorOf } from '../support/error-of';

const SHIPPED = path.resolve(__dirname, '..', '..', 'policies');

const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

function policyDir(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-policies-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

function loadError(dir: string): PolicyError {
  try {
    loadPolicies(dir);
  } catch (err) {
    if (err instanceof PolicyError) return err;
    throw err;
  }
  throw new Error('expected loadPolicies to throw a PolicyError');
}

function principal(role: Role): Principal {
  return {
    tenant: { id: 'tenant-1', name: 'acme', createdAt: new Date(0) },
    apiKeyId: 'key-1',
    role,
  };
}


describe('the shipped policies/', () => {
  const policies = loadPolicies(SHIPPED);

  it('defines exactly the merchant, payments, auditor and admin roles', () => {
    expect([...policies.keys()].sort()).toEqual(['admin', 'auditor', 'merchant', 'payments']);
    for (const [name, role] of policies) {
      expect(role.name).toBe(name);
      expect(role.description.length).toBeGreaterThan(0);
    }
  });

  it('lets merchant tokenize, read, update, delete and run the account updater and webhooks, but never detokenize', () => {
    const merchant = policies.get('merchant')!;
    expect([...merchant.actions].sort()).toEqual(['delete', 'read', 'tokenize', 'update', 'updater', 'webhooks']);
    expect(merchant.detokenize).toBeUndefined();
  });

  it('lets payments only detokenize, for authorization and refund, revealing number, expiry and (for authorization, once) the CVC', () => {
    const payments = policies.get('payments')!;
    expect([...payments.actions]).toEqual(['detokenize']);
    expect([...payments.detokenize!.purposes].sort()).toEqual(['authorization', 'refund']);
    expect([...payments.detokenize!.reveal].sort()).toEqual(['cvc', 'exp_month', 'exp_year', 'number']);
  });

  it('lets auditor only read the audit log', () => {
    const auditor = policies.get('auditor')!;
    expect([...auditor.actions]).toEqual(['audit.read']);
    expect(auditor.detokenize).toBeUndefined();
  });

  it('lets admin administer, read and read the audit log, but not detokenize or touch cards', () => {
    const admin = policies.get('admin')!;
    expect([...admin.actions].sort()).toEqual(['admin', 'audit.read', 'read']);
    expect(admin.detokenize).toBeUndefined();
  });
});

describe('authorize', () => {
  const policies = loadPolicies(SHIPPED);

  it('allows exactly the actions each role lists and forbids every other one', () => {
    for (const role of policies.values()) {
      for (const action of ACTIONS) {
        const err = errorOf(() => authorize(principal(role), action));
        if (role.actions.has(action)) expect(err).toBeUndefined();
        else expect(isVaultError(err, 'forbidden')).toBe(true);
      }
    }
  });

  it('denies everything to a role with no actions', () => {
    const empty: Role = { name: 'nobody', description: '', actions: new Set<Action>(), detokenize: undefined };
    for (const action of ACTIONS) expect(isVaultError(errorOf(() => authorize(principal(empty), action)), 'forbidden')).toBe(true);
  });

  it('forbids an action name the policy vocabulary does not know', () => {
    const admin = policies.get('admin')!;
    expect(isVaultError(errorOf(() => authorize(principal(admin), 'superuser' as Action)), 'forbidden')).toBe(true);
  });
});

describe('authorizeDetokenize', () => {
  const policies = loadPolicies(SHIPPED);
  const payments = principal(policies.get('payments')!);

  it('returns the fields payments may see for each granted purpose', () => {
    expect([...authorizeDetokenize(payments, 'authorization')].sort()).toEqual(['cvc', 'exp_month', 'exp_year', 'number']);
    expect([...authorizeDetokenize(payments, 'refund')].sort()).toEqual(['cvc', 'exp_month', 'exp_year', 'number']);
  });

  it('refuses payments a purpose it is not granted with purpose_not_allowed', () => {
    for (const purpose of ['marketing', 'Authorization', 'authorization ', '', 'constructor', '__proto__']) {
      expect(isVaultError(errorOf(() => authorizeDetokenize(payments, purpose)), 'purpose_not_allowed')).toBe(true);
    }
  });

  it('refuses every role without the detokenize action with forbidden, before looking at the purpose', () => {
    for (const name of ['merchant', 'auditor', 'admin']) {
      const err = errorOf(() => authorizeDetokenize(principal(policies.get(name)!), 'authorization'));
      expect(isVaultError(err, 'forbidden')).toBe(true);
    }
  });

  it('refuses with purpose_not_allowed a role that has the action but no grant', () => {
    const bare: Role = { name: 'bare', description: '', actions: new Set<Action>(['detokenize']), detokenize: undefined };
    expect(isVaultError(errorOf(() => authorizeDetokenize(principal(bare), 'authorization')), 'purpose_not_allowed')).toBe(true);
  });
});

describe('loadPolicies', () => {
  it('loads JSON and .yml files alongside YAML, ignoring other files', () => {
    const dir = policyDir({
      'reader.json': JSON.stringify({ role: 'reader', actions: ['read'] }),
      'refunds.json': JSON.stringify({ role: 'refunds', actions: ['detokenize'], detokenize: { purposes: ['refund'], reveal: ['number'] } }),
      'writer.yml': 'role: writer\nactions: [tokenize]\n',
      'README.md': '# not a policy',
    });
    const policies = loadPolicies(dir);
    expect([...policies.keys()].sort()).toEqual(['reader', 'refunds', 'writer']);
    expect([...policies.get('refunds')!.detokenize!.purposes]).toEqual(['refund']);
    expect(policies.get('reader')!.description).toBe('');
  });

  // [case, file name, contents, what the error must name besides the file]
  const bad: Array<[string, string, string, RegExp]> = [
    ['an unknown action', 'clerk.yaml', 'role: clerk\nactions: [read, refund]\n', /field \/actions\/1/],
    ['an unknown top-level field', 'clerk.yaml', 'role: clerk\nactions: [read]\nowner: ops\n', /field \/.*\(owner\)/],
    ['a misspelt detokenize block field', 'clerk.yaml', 'role: clerk\nactions: [detokenize]\ndetokenize:\n  purposes: [refund]\n  reveal: [number]\n  fields: [cvc]\n', /\/detokenize.*\(fields\)/],
    ['detokenize granted without a detokenize block', 'clerk.yaml', 'role: clerk\nactions: [detokenize]\n', /detokenize/],
    ['a detokenize block without the detokenize action', 'clerk.yaml', 'role: clerk\nactions: [read]\ndetokenize:\n  purposes: [refund]\n  reveal: [number]\n', /detokenize/],
    ['reveal of a track', 'clerk.yaml', 'role: clerk\nactions: [detokenize]\ndetokenize:\n  purposes: [refund]\n  reveal: [number, track2]\n', /field \/detokenize\/reveal\/1/],
    ['an empty purpose list', 'clerk.yaml', 'role: clerk\nactions: [detokenize]\ndetokenize:\n  purposes: []\n  reveal: [number]\n', /field \/detokenize\/purposes/],
    ['a missing actions list', 'clerk.yaml', 'role: clerk\n', /actions/],
    ['a role not matching the file name', 'clerk.yaml', 'role: cashier\nactions: [read]\n', /field \/role/],
    ['a role name that is not a lowercase identifier', 'Clerk.yaml', 'role: Clerk\nactions: [read]\n', /field \/role/],
    ['invalid YAML', 'clerk.yaml', 'role: clerk\nactions: [read\n', /not valid YAML/],
    ['duplicate YAML keys', 'clerk.yaml', 'role: clerk\nrole: clerk\nactions: [read]\n', /not valid YAML/],
    ['invalid JSON', 'clerk.json', '{"role": "clerk", "actions": ["read",]}', /not valid JSON/],
    // JSON.parse would keep the last value: here the wider purpose list.
    [
      'a repeated key inside a JSON block',
      'clerk.json',
      '{"role": "clerk", "actions": ["detokenize"], "detokenize": {"purposes": ["refund"], "reveal": ["number"], "purposes": ["refund", "authorization", "marketing"]}}',
      /not valid JSON \(Map keys must be unique/,
    ],
    ['a repeated top-level JSON key', 'clerk.json', '{"role": "clerk", "actions": ["read"], "actions": ["read", "admin"]}', /not valid JSON \(Map keys must be unique/],
    ['a JSON key repeated through an escape', 'clerk.json', '{"role": "clerk", "actions": ["read"], "\\u0061ctions": ["admin"]}', /not valid JSON \(Map keys must be unique/],
    ['an empty file', 'clerk.yaml', '', /field \/: must be object/],
  ];

  it.each(bad)('refuses %s, naming the file and the field', (_case, name, text, names) => {
    const dir = policyDir({ 'merchant.yaml': 'role: merchant\nactions: [read]\n', [name]: text });
    const err = loadError(dir);
    expect(err.message).toContain(path.join(dir, name));
    expect(err.message).toMatch(names);
  });

  it('refuses a role defined twice, in a YAML and a JSON file', () => {
    const dir = policyDir({ 'clerk.yaml': 'role: clerk\nactions: [read]\n', 'clerk.json': '{"role": "clerk", "actions": ["read"]}' });
    expect(loadError(dir).message).toMatch(/duplicates role clerk/);
  });

  it('refuses an empty directory, naming it', () => {
    const dir = policyDir({ 'notes.txt': 'nothing here' });
    const err = loadError(dir);
    expect(err.message).toContain(dir);
    expect(err.message).toMatch(/no policy files/);
  });

  it('refuses a missing directory, naming it', () => {
    const dir = path.join(policyDir({}), 'absent');
    const err = loadError(dir);
    expect(err.message).toContain(dir);
    expect(err.message).toMatch(/not found/);
  });
});

describe('grantsDigest', () => {
  const digestOf = (text: string) => grantsDigest(loadPolicies(policyDir({ 'clerk.yaml': text })).get('clerk')!);
  const base = 'role: clerk\nactions: [read, detokenize]\ndetokenize:\n  purposes: [refund]\n  reveal: [number, exp_month]\n';

  it('is the same for the same grants, whatever their order, the description or the spelling of a default limit', () => {
    expect(digestOf(base)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(digestOf('role: clerk\ndescription: other words\nactions: [detokenize, read]\ndetokenize:\n  reveal: [exp_month, number]\n  purposes: [refund]\n')).toBe(digestOf(base));
    expect(digestOf(`${base}rate_limits:\n  per_minute:\n    read: 1200\n`)).toBe(digestOf(base));
  });

  it('changes with an action, a purpose, a revealed field or a rate limit', () => {
    const variants = [
      'role: clerk\nactions: [read, detokenize, tokenize]\ndetokenize:\n  purposes: [refund]\n  reveal: [number, exp_month]\n',
      'role: clerk\nactions: [read, detokenize]\ndetokenize:\n  purposes: [refund, marketing]\n  reveal: [number, exp_month]\n',
      'role: clerk\nactions: [read, detokenize]\ndetokenize:\n  purposes: [refund]\n  reveal: [number, exp_month, cvc]\n',
      `${base}rate_limits:\n  per_minute:\n    detokenize: 601\n`,
    ];
    const digests = new Set([base, ...variants].map(digestOf));
    expect(digests.size).toBe(variants.length + 1);
  });
});
