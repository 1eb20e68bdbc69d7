// The chart's values: they validate against values.schema.json, bad ones are refused, every key is commented,
// and templates and values.yaml name the same settings (no typo'd path, no value nothing reads).
import fs from 'node:fs';
import path from 'node:path';
import YAML, { isMap, isScalar } from 'yaml';
import { CHART_DIR, compileValuesSchema, defaultValues, mergeValues, parseYaml, type Values } from './render';

const validate = compileValuesSchema();
const errorsOf = (values: unknown) => (validate(values) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`));

describe('values.schema.json', () => {
  it('accepts the shipped values.yaml', () => {
    expect(errorsOf(defaultValues())).toEqual([]);
  });

  it('accepts the example production values (ci/production-values.yaml) merged over the defaults', () => {
    const example = parseYaml(fs.readFileSync(path.join(CHART_DIR, 'ci', 'production-values.yaml'), 'utf8')) as Values;
    expect(errorsOf(mergeValues(defaultValues(), example))).toEqual([]);
  });

  it('declares JSON Schema draft-07, the draft Helm validates values with', () => {
    const schema = JSON.parse(fs.readFileSync(path.join(CHART_DIR, 'values.schema.json'), 'utf8')) as { $schema: string; additionalProperties: boolean };
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
    expect(schema.additionalProperties).toBe(false);
  });

  it.each<[string, Values]>([
    ['api.replicas -1', { api: { replicas: -1 } }],
    ['worker.replicas -1', { worker: { replicas: -1 } }],
    ['api.replicas "3" (a string)', { api: { replicas: '3' } }],
    ['networkPolicy.enabled "yes"', { networkPolicy: { enabled: 'yes' } }],
    ['an unknown top-level key', { extraEnv: [{ name: 'RATE_LIMITS', value: 'off' }] }],
    ['an unknown nested key (a typo)', { api: { replica: 3 } }],
    ['config.logLevel verbose', { config: { logLevel: 'verbose' } }],
    ['config.trustProxy true (would let a caller choose its address)', { config: { trustProxy: true } }],
    ['config.trustProxy 10', { config: { trustProxy: 10 } }],
    ['database.poolSize 0', { database: { poolSize: 0 } }],
    ['an empty Secret name', { database: { existingSecret: '' } }],
    ['a KMS endpoint over plain http', { kms: { endpoint: 'http://kms.local' } }],
    ['an image tag with a space', { image: { tag: 'latest please' } }],
    ['a malformed CIDR', { networkPolicy: { egress: { postgres: { ipBlocks: [{ cidr: '10.0.0.0' }] } } } }],
    ['an egress port 0', { networkPolicy: { egress: { webhooks: { ports: [0] } } } }],
    ['an empty client namespace selector (would admit every namespace)', { networkPolicy: { ingress: { clientNamespaceLabels: { 'cardvault-client': null } } } }],
    ['readOnlyRootFilesystem false', { containerSecurityContext: { readOnlyRootFilesystem: false } }],
    ['allowPrivilegeEscalation true', { containerSecurityContext: { allowPrivilegeEscalation: true } }],
    ['privileged true', { containerSecurityContext: { privileged: true } }],
    ['capabilities that keep some (drop without ALL)', { containerSecurityContext: { capabilities: { drop: ['NET_RAW'] } } }],
    ['added capabilities', { containerSecurityContext: { capabilities: { add: ['NET_ADMIN'] } } }],
    ['runAsNonRoot false', { podSecurityContext: { runAsNonRoot: false } }],
    ['runAsUser 0 (root)', { podSecurityContext: { runAsUser: 0 } }],
    ['an Unconfined seccomp profile', { podSecurityContext: { seccompProfile: { type: 'Unconfined' } } }],
    ['HPA target above 100%', { api: { autoscaling: { targetCPUUtilizationPercentage: 150 } } }],
  ])('refuses %s', (_name, bad) => {
    expect(errorsOf(mergeValues(defaultValues(), bad))).not.toEqual([]);
  });
});

describe('values.yaml comments', () => {
  it.each(['values.yaml', 'ci/production-values.yaml'])('%s has a comment line directly above every key', (file) => {
    const text = fs.readFileSync(path.join(CHART_DIR, file), 'utf8');
    const lines = text.split('\n');
    const lineOf = (offset: number) => text.slice(0, offset).split('\n').length - 1;
    const uncommented: string[] = [];
    const visit = (node: unknown, at: string) => {
      if (isMap(node)) {
        for (const pair of node.items) {
          const key = isScalar(pair.key) ? String(pair.key.value) : '?';
          const line = lineOf((pair.key as { range: [number] }).range[0]);
          if (!/^\s*#/.test(lines[line - 1] ?? '')) uncommented.push(`${at}${key} (line ${line + 1})`);
          visit(pair.value, `${at}${key}.`);
        }
      } else if (node && typeof node === 'object' && 'items' in node) {
        (node as { items: unknown[] }).items.forEach((item, i) => visit(item, `${at}${i}.`));
      }
    };
    visit(YAML.parseDocument(text).contents, '');
    expect(uncommented).toEqual([]);
  });
});

describe('values.yaml and the templates', () => {
  const templates = fs.readdirSync(path.join(CHART_DIR, 'templates')).map((name) => fs.readFileSync(path.join(CHART_DIR, 'templates', name), 'utf8'));
  const referenced = new Set<string>();
  for (const text of templates) {
    const aliases = new Map([...text.matchAll(/\{\{-?\s*(\$\w+)\s*:=\s*\.Values((?:\.\w+)+)/g)].map((m) => [m[1]!, m[2]!.slice(1)]));
    for (const m of text.matchAll(/\.Values((?:\.\w+)+)/g)) referenced.add(m[1]!.slice(1));
    for (const [alias, target] of aliases) {
      for (const m of text.matchAll(new RegExp(`\\${alias}((?:\\.\\w+)+)`, 'g'))) referenced.add(`${target}${m[1]}`);
    }
  }
  const has = (values: unknown, dotted: string) =>
    dotted.split('.').reduce<{ ok: boolean; at: unknown }>(
      (acc, key) => (acc.ok && acc.at && typeof acc.at === 'object' && key in acc.at ? { ok: true, at: (acc.at as Values)[key] } : { ok: false, at: undefined }),
      { ok: true, at: values },
    ).ok;

  it('every .Values path a template reads exists in values.yaml', () => {
    const values = defaultValues();
    expect([...referenced].filter((p) => !has(values, p))).toEqual([]);
  });

  it('every value in values.yaml is read by a template (no knob that does nothing)', () => {
    const leaves: string[] = [];
    const walk = (node: unknown, at: string) => {
      if (node && typeof node === 'object' && !Array.isArray(node) && Object.keys(node).length > 0) {
        for (const [key, value] of Object.entries(node)) walk(value, at ? `${at}.${key}` : key);
      } else leaves.push(at);
    };
    walk(defaultValues(), '');
    const read = [...referenced];
    expect(leaves.filter((leaf) => !read.some((p) => leaf === p || leaf.startsWith(`${p}.`)))).toEqual([]);
  });
});
