// A test-only stand-in for `helm template` (no Helm binary here): loads the chart, merges and schema-checks the
// values, and renders every template with the Helm and Sprig functions the chart uses, through go-template.ts.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Ajv, { type ValidateFunction } from 'ajv';
import YAML from 'yaml';
import { Executor, GoObject, parseTemplate, TemplateError, truthy, type Funcs, type Node } from './go-template';

export const CHART_DIR = path.resolve(__dirname, '..', '..', 'helm', 'cardvault');

export type Values = Record<string, unknown>;
export interface K8sObject { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [field: string]: unknown }

/** Kubernetes and Helm read YAML 1.1 (yes/no/on/off are booleans), so the tests do too. */
export function parseYaml(text: string): unknown {
  return YAML.parse(text, { version: '1.1' });
}

/** Helm's toYaml: the marshalled value without its final newline. */
export function toYaml(value: unknown): string {
  return YAML.stringify(value, { version: '1.1', lineWidth: 0, blockQuote: 'literal' }).replace(/\n$/, '');
}

export function defaultValues(): Values {
  return parseYaml(fs.readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8')) as Values;
}

export function valuesSchema(): object {
  return JSON.parse(fs.readFileSync(path.join(CHART_DIR, 'values.schema.json'), 'utf8')) as object;
}

let compiled: ValidateFunction | undefined;

/** Ajv's default export speaks draft-07, the draft Helm validates values.schema.json with; strict refuses sloppy schemas. */
export function compileValuesSchema(): ValidateFunction {
  compiled ??= new Ajv({ allErrors: true, strict: true }).compile(valuesSchema());
  return compiled;
}

/** Helm's coalescing: maps merge key by key, anything else replaces, null deletes. */
export function mergeValues(base: Values, override: Values): Values {
  const out: Values = { ...base };
  for (const [key, value] of Object.entries(override)) {
    const current = out[key];
    if (value === null) delete out[key];
    else if (isMap(value) && isMap(current)) out[key] = mergeValues(current, value);
    else out[key] = value;
  }
  return out;
}

function isMap(value: unknown): value is Values {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class ValuesError extends Error {
  override name = 'ValuesError';
}

export interface Rendered {
  /** Rendered text by template path (templates/…), NOTES.txt excluded. */
  files: Map<string, string>;
  notes: string;
  objects: K8sObject[];
}

export function renderChart(overrides: Values = {}, release = { name: 'vault', namespace: 'payments', isUpgrade: false }): Rendered {
  const values = mergeValues(defaultValues(), overrides);
  const validate = compileValuesSchema();
  if (!validate(values)) {
    throw new ValuesError((validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}`).join('; '));
  }
  const meta = parseYaml(fs.readFileSync(path.join(CHART_DIR, 'Chart.yaml'), 'utf8')) as Record<string, string>;
  const defines = new Map<string, Node[]>();
  const bodies = new Map<string, Node[]>();
  const templatesDir = path.join(CHART_DIR, 'templates');
  for (const name of fs.readdirSync(templatesDir).sort()) {
    const body = parseTemplate(fs.readFileSync(path.join(templatesDir, name), 'utf8'), `templates/${name}`, defines);
    if (!name.startsWith('_')) bodies.set(`templates/${name}`, body);
  }
  const executor: Executor = new Executor(defines, helmFunctions((name, data) => executor.include(name, data)));
  const root = {
    Values: values,
    Release: { Name: release.name, Namespace: release.namespace, Service: 'Helm', IsInstall: !release.isUpgrade, IsUpgrade: release.isUpgrade, Revision: 1 },
    Chart: { Name: meta.name, Version: meta.version, AppVersion: meta.appVersion, Description: meta.description, Type: meta.type },
    Files: chartFiles(CHART_DIR),
  };
  const files = new Map<string, string>();
  let notes = '';
  for (const [name, body] of bodies) {
    const text = executor.execute(body, root);
    if (name === 'templates/NOTES.txt') notes = text;
    else files.set(name, text);
  }
  const objects = [...files.values()].flatMap((text) =>
    YAML.parseAllDocuments(text, { version: '1.1' }).map((doc) => {
      if (doc.errors.length > 0) throw new TemplateError(`rendered YAML does not parse: ${doc.errors[0]!.message}\n${text}`);
      return doc.toJS() as K8sObject | null;
    }),
  );
  return { files, notes, objects: objects.filter((o): o is K8sObject => o !== null) };
}

function helmFunctions(include: (name: string, data: unknown) => string): Funcs {
  // Sprig's string conversion (fmt's %v). Helm holds YAML numbers as float64, which %v prints as 1e+06 from a
  // million up: the chart must pipe such values through int (an int64 here: a bigint) first.
  const text = (v: unknown): string => {
    if (typeof v === 'string') return v;
    if (typeof v === 'boolean' || typeof v === 'bigint') return String(v);
    if (typeof v === 'number' && Math.abs(v) < 1e6) return String(v);
    return fail(`cannot print ${JSON.stringify(v)} as Go would mean it${typeof v === 'number' ? ' (float64 from a million up prints as 1e+06: use int)' : ''}`);
  };
  const bothIntegers = (a: unknown, b: unknown) => typeof a === typeof b && (typeof a === 'bigint' || typeof a === 'string');
  const indent = (n: unknown, s: unknown) => ' '.repeat(n as number) + text(s).split('\n').join(`\n${' '.repeat(n as number)}`);
  return {
    include: (name, data) => include(text(name), data),
    toYaml: (v) => toYaml(v),
    indent,
    nindent: (n, s) => `\n${indent(n, s)}`,
    quote: (...args) => args.filter((a) => a !== undefined && a !== null).map((a) => JSON.stringify(text(a))).join(' '),
    default: (fallback, v) => (truthy(v) ? v : fallback),
    required: (message, v) => (v === undefined || v === null || v === '' ? fail(text(message)) : v),
    fail: (message) => fail(text(message)),
    printf: (format, ...args) => text(format).replace(/%[sdv]/g, () => text(args.shift())),
    trunc: (n, s) => text(s).slice(0, n as number),
    trimSuffix: (suffix, s) => (text(s).endsWith(text(suffix)) ? text(s).slice(0, -text(suffix).length) : text(s)),
    contains: (sub, s) => text(s).includes(text(sub)),
    replace: (from, to, s) => text(s).split(text(from)).join(text(to)),
    sha256sum: (s) => crypto.createHash('sha256').update(text(s)).digest('hex'),
    not: (v) => !truthy(v),
    and: (...args) => args.find((a) => !truthy(a)) ?? args[args.length - 1],
    or: (...args) => args.find((a) => truthy(a)) ?? args[args.length - 1],
    // Sprig's int (cast.ToInt): what Go compares and prints as an integer.
    int: (v) => (typeof v === 'bigint' ? v : typeof v === 'number' ? BigInt(Math.trunc(v)) : typeof v === 'string' && /^-?\d+$/.test(v) ? BigInt(v) : 0n),
    // Go's eq and gt refuse to compare an int64 (--set) with a float64 (values.yaml): the chart compares ints.
    eq: (a, b) => (bothIntegers(a, b) || typeof a === 'boolean' ? a === b : fail('eq: compare ints (pipe numbers through int) or strings')),
    gt: (a, b) => (typeof a === 'bigint' && typeof b === 'bigint' ? a > b : fail('gt: compare ints (pipe numbers through int)')),
  };
}

function fail(message: string): never {
  throw new TemplateError(message);
}

/** Helm's .Files: every chart file outside templates/ and the chart's own metadata, with Glob, Get and AsConfig. */
function chartFiles(dir: string): GoObject {
  const all = new Map<string, string>();
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const file = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (file !== 'templates' && file !== 'charts') walk(file);
      } else if (!['Chart.yaml', 'values.yaml', 'values.schema.json', '.helmignore'].includes(file)) {
        all.set(file, fs.readFileSync(path.join(dir, file), 'utf8'));
      }
    }
  };
  walk('');
  return fileSet(all);
}

function fileSet(files: Map<string, string>): GoObject {
  return new GoObject({
    Glob: (pattern) => {
      const re = new RegExp(`^${str(pattern).replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\0').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\0/g, '.*')}$`);
      return fileSet(new Map([...files].filter(([name]) => re.test(name))));
    },
    Get: (name) => files.get(str(name)) ?? '',
    AsConfig: () => (files.size === 0 ? '' : toYaml(Object.fromEntries([...files].map(([name, text]) => [path.posix.basename(name), text])))),
  });
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : fail(`not a string: ${JSON.stringify(v)}`);
}
