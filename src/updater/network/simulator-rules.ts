// Reads the network simulator's rules file (YAML or JSON), validates it, and fails naming the file and the field.
import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import YAML from 'yaml';
import { OUTCOMES, type Outcome } from './contract';

export class SimulatorRulesError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SimulatorRulesError';
  }
}

/** Every condition given must hold. `every`/`offset` pick one card in `every`, by a keyed hash of the ref or PAN. */
export interface RuleMatch {
  ref?: string;
  panPrefix?: string;
  binRange?: { from: string; to: string };
  last4?: string;
  every?: number;
  offset?: number;
  by?: 'ref' | 'pan';
}

export interface Answer {
  outcome: Outcome;
  /** Overrides the simulator's code for the outcome. */
  networkCode?: string;
  /** new_expiry: years added to the expiry (default 3); new_account: also move the expiry on by this much. */
  addYears?: number;
}

export interface Rule extends Answer {
  name?: string;
  match: RuleMatch;
}

export interface SimulatorRules {
  /** For cards no rule matches. */
  default: Answer;
  /** In order: the first rule that matches answers. */
  rules: Rule[];
}

/** The rules shipped for development and tests; it sits beside this file in src/ (the build does not copy it). */
export const DEFAULT_RULES_FILE = path.resolve(__dirname, '..', '..', '..', 'src', 'updater', 'network', 'simulator-rules.yaml');

const ANSWER_PROPERTIES = {
  outcome: { enum: [...OUTCOMES] },
  networkCode: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,16}$' },
  addYears: { type: 'integer', minimum: 1, maximum: 20 },
} as const;

export const SIMULATOR_RULES_SCHEMA = {
  $id: 'https://cardvault.dev/schemas/network-simulator-rules.json',
  type: 'object',
  additionalProperties: false,
  required: ['default', 'rules'],
  properties: {
    default: { type: 'object', additionalProperties: false, required: ['outcome'], properties: ANSWER_PROPERTIES },
    rules: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['match', 'outcome'],
        properties: {
          name: { type: 'string', maxLength: 200 },
          ...ANSWER_PROPERTIES,
          match: {
            type: 'object',
            additionalProperties: false,
            minProperties: 1,
            properties: {
              ref: { type: 'string', minLength: 1, maxLength: 128 },
              panPrefix: { type: 'string', pattern: '^[0-9]{1,11}$' },
              binRange: {
                type: 'object',
                additionalProperties: false,
                required: ['from', 'to'],
                properties: {
                  from: { type: 'string', pattern: '^[0-9]{1,11}$' },
                  to: { type: 'string', pattern: '^[0-9]{1,11}$' },
                },
              },
              last4: { type: 'string', pattern: '^[0-9]{4}$' },
              every: { type: 'integer', minimum: 1, maximum: 1000000 },
              offset: { type: 'integer', minimum: 0 },
              by: { enum: ['ref', 'pan'] },
            },
          },
        },
      },
    },
  },
} as const;

const validate = new Ajv({ allErrors: true, strict: true }).compile<SimulatorRules>(SIMULATOR_RULES_SCHEMA);

/** Checks the schema cannot express; each names the field, never its value. */
function crossFieldProblems(doc: SimulatorRules): string[] {
  const problems: string[] = [];
  const answers: Array<[string, Answer]> = [['/default', doc.default], ...doc.rules.map((rule, i): [string, Answer] => [`/rules/${i}`, rule])];
  for (const [at, answer] of answers) {
    if (answer.addYears !== undefined && answer.outcome !== 'new_expiry' && answer.outcome !== 'new_account') {
      problems.push(`field ${at}/addYears: only new_expiry and new_account move the expiry`);
    }
  }
  doc.rules.forEach(({ match }, i) => {
    const at = `/rules/${i}/match`;
    if (match.every === undefined && (match.offset !== undefined || match.by !== undefined)) {
      problems.push(`field ${at}/every: required when offset or by is given`);
    }
    if (match.every !== undefined && match.offset !== undefined && match.offset >= match.every) {
      problems.push(`field ${at}/offset: must be less than every`);
    }
    if (match.binRange && (match.binRange.from.length !== match.binRange.to.length || match.binRange.from > match.binRange.to)) {
      problems.push(`field ${at}/binRange: from and to must have the same number of digits, from no greater than to`);
    }
  });
  return problems;
}

/** Validates an already parsed document; `source` names it in errors (a file path, or a label). */
export function parseSimulatorRules(doc: unknown, source = 'simulator rules'): SimulatorRules {
  if (!validate(doc)) {
    const problems = (validate.errors ?? []).map((e) => {
      const extra = e.keyword === 'additionalProperties' ? ` (${String(e.params.additionalProperty)})` : '';
      return `field ${e.instancePath || '/'}: ${e.message}${extra}`;
    });
    throw new SimulatorRulesError(`${source}: ${problems.join('; ')}`);
  }
  const problems = crossFieldProblems(doc);
  if (problems.length > 0) throw new SimulatorRulesError(`${source}: ${problems.join('; ')}`);
  return doc;
}

export function loadSimulatorRules(file = DEFAULT_RULES_FILE): SimulatorRules {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new SimulatorRulesError(`${file}: cannot read the rules file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const json = file.endsWith('.json');
  let doc: unknown;
  try {
    doc = json ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new SimulatorRulesError(`${file}: not valid ${json ? 'JSON' : 'YAML'} (${(err as Error).message.split('\n')[0]})`);
  }
  return parseSimulatorRules(doc, file);
}
