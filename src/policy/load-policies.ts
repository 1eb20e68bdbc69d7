// Reads the role files in policies/ (YAML or JSON), validates each against the schema, and fails naming file and field.
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import YAML from 'yaml';
import { ACTIONS, DEFAULT_RATE_LIMITS, REVEALABLE_FIELDS, type Action, type Policies, type RevealableField, type Role } from '../domain/policy';

export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

export const POLICY_SCHEMA = {
  $id: 'https://cardvault.dev/schemas/policy.json',
  type: 'object',
  additionalProperties: false,
  required: ['role', 'actions'],
  properties: {
    role: { type: 'string', pattern: '^[a-z][a-z0-9_-]{0,31}$' },
    description: { type: 'string', maxLength: 500 },
    actions: { type: 'array', uniqueItems: true, items: { enum: [...ACTIONS] } },
    detokenize: {
      type: 'object',
      additionalProperties: false,
      required: ['purposes', 'reveal'],
      properties: {
        purposes: { type: 'array', minItems: 1, uniqueItems: true, items: { type: 'string', pattern: '^[a-z][a-z0-9_]{0,31}$' } },
        reveal: { type: 'array', minItems: 1, uniqueItems: true, items: { enum: [...REVEALABLE_FIELDS] } },
      },
    },
    rate_limits: {
      type: 'object',
      additionalProperties: false,
      required: ['per_minute'],
      properties: {
        per_minute: {
          type: 'object',
          additionalProperties: false,
          properties: Object.fromEntries(ACTIONS.map((action) => [action, { type: 'integer', minimum: 1 }])),
        },
      },
    },
  },
} as const;

interface PolicyFile {
  role: string;
  description?: string;
  actions: Action[];
  detokenize?: { purposes: string[]; reveal: RevealableField[] };
  rate_limits?: { per_minute: Partial<Record<Action, number>> };
}

/** Every granted action gets a limit: the file's, or the default. */
function rateLimitsOf(file: string, doc: PolicyFile): Map<Action, number> {
  const perMinute = doc.rate_limits?.per_minute ?? {};
  for (const action of Object.keys(perMinute) as Action[]) {
    // A limit on an action the role lacks is a typo or a stale file; either way it would silently do nothing.
    if (!doc.actions.includes(action)) {
      throw new PolicyError(`${file}: field /rate_limits/per_minute/${action} limits an action that /actions does not grant`);
    }
  }
  return new Map(doc.actions.map((action) => [action, perMinute[action] ?? DEFAULT_RATE_LIMITS[action]]));
}

const validate = new Ajv({ allErrors: true, strict: true }).compile<PolicyFile>(POLICY_SCHEMA);

function parseFile(file: string): unknown {
  const text = fs.readFileSync(file, 'utf8');
  const json = file.endsWith('.json');
  try {
    if (!json) return YAML.parse(text);
    const value: unknown = JSON.parse(text);
    // JSON.parse keeps the last of a repeated key, so a second "purposes" would widen a grant unseen. Valid JSON is
    // YAML 1.2, and yaml refuses a repeated key (escaped spellings included) as it does in the YAML files.
    YAML.parse(text, { schema: 'json', uniqueKeys: true });
    return value;
  } catch (err) {
    throw new PolicyError(`${file}: not valid ${json ? 'JSON' : 'YAML'} (${(err as Error).message.split('\n')[0]})`);
  }
}

export function loadPolicies(dir: string): Policies {
  if (!fs.existsSync(dir)) throw new PolicyError(`${dir}: policies directory not found`);
  const files = fs
    .readdirSync(dir)
    .filter((name) => /\.(ya?ml|json)$/.test(name))
    .sort()
    .map((name) => path.join(dir, name));
  if (files.length === 0) throw new PolicyError(`${dir}: no policy files (*.yaml, *.yml, *.json)`);

  const roles = new Map<string, Role>();
  for (const file of files) {
    const doc = parseFile(file);
    if (!validate(doc)) {
      const problems = (validate.errors ?? []).map((e) => {
        const field = e.instancePath || '/';
        const extra = e.keyword === 'additionalProperties' ? ` (${String(e.params.additionalProperty)})` : '';
        return `field ${field}: ${e.message}${extra}`;
      });
      throw new PolicyError(`${file}: ${problems.join('; ')}`);
    }
    // A detokenize grant needs its purposes and fields, and the fields mean nothing without the grant.
    const grantsDetokenize = doc.actions.includes('detokenize');
    if (grantsDetokenize && !doc.detokenize) {
      throw new PolicyError(`${file}: field /detokenize is required when /actions includes detokenize`);
    }
    if (!grantsDetokenize && doc.detokenize) {
      throw new PolicyError(`${file}: field /detokenize is only allowed when /actions includes detokenize`);
    }
    const expected = path.basename(file).replace(/\.(ya?ml|json)$/, '');
    if (doc.role !== expected) throw new PolicyError(`${file}: field /role must equal the file name (${expected})`);
    if (roles.has(doc.role)) throw new PolicyError(`${file}: field /role duplicates role ${doc.role}`);
    roles.set(doc.role, {
      name: doc.role,
      description: doc.description ?? '',
      actions: new Set(doc.actions),
      detokenize: doc.detokenize && { purposes: new Set(doc.detokenize.purposes), reveal: [...doc.detokenize.reveal] },
      rateLimits: rateLimitsOf(file, doc),
    });
  }
  return roles;
}
