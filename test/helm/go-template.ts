// The slice of Go's text/template the chart uses — text, pipelines, if/else, range, with, define — and nothing more:
// anything else (an unknown function, printing a missing value, a map printed as text) throws.

export class TemplateError extends Error {
  override name = 'TemplateError';
}

/** An object whose fields are Go methods (Helm's .Files, .Files.Glob's result); plain objects are maps. */
export class GoObject {
  constructor(readonly methods: Record<string, (...args: unknown[]) => unknown>) {}
}

export type Funcs = Record<string, (...args: unknown[]) => unknown>;

type Term =
  | { kind: 'literal'; value: unknown }
  | { kind: 'field'; base: 'dot' | string; chain: string[] } // base: 'dot' or a variable name ('$' included)
  | { kind: 'func'; name: string }
  | { kind: 'group'; pipe: Pipe; chain: string[] };
type Command = Term[];
interface Pipe { decl: string[]; commands: Command[] }

export type Node =
  | { kind: 'text'; text: string }
  | { kind: 'output'; pipe: Pipe; where: string }
  | { kind: 'if'; branches: { cond: Pipe; body: Node[] }[]; otherwise: Node[]; where: string }
  | { kind: 'range' | 'with'; pipe: Pipe; body: Node[]; otherwise: Node[]; where: string };

interface Action { src: string; where: string }

/** Splits a template into text and actions, applying {{- and -}} trimming; comments disappear. */
function lex(source: string, file: string): (string | Action)[] {
  const parts: (string | Action)[] = [];
  let pos = 0;
  let trimNext = false;
  while (pos < source.length) {
    const open = source.indexOf('{{', pos);
    let text = source.slice(pos, open === -1 ? source.length : open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, '');
    if (open === -1) {
      parts.push(text);
      break;
    }
    let start = open + 2;
    if (/^- /.test(source.slice(start, start + 2)) || /^-[\t\r\n]/.test(source.slice(start, start + 2))) {
      text = text.replace(/[ \t\r\n]+$/, '');
      start += 1;
    }
    parts.push(text);
    let end = start;
    for (let quote = ''; end < source.length; end++) {
      const c = source[end]!;
      if (quote) {
        if (c === '\\' && quote === '"') end++;
        else if (c === quote) quote = '';
      } else if (c === '"' || c === '`') quote = c;
      else if (source.startsWith('}}', end)) break;
    }
    if (end >= source.length) throw new TemplateError(`${file}: unclosed action`);
    let src = source.slice(start, end);
    trimNext = /[ \t\r\n]-$/.test(src);
    if (trimNext) src = src.slice(0, -1);
    const where = `${file}:${source.slice(0, open).split('\n').length}`;
    if (!/^\s*\/\*[\s\S]*\*\/\s*$/.test(src)) parts.push({ src: src.trim(), where });
    pos = end + 2;
  }
  return parts;
}

interface Token { kind: 'str' | 'num' | 'field' | 'var' | 'ident' | 'punct'; text: string; spaced: boolean }

function tokenize(src: string, where: string): Token[] {
  const re = /\s*("(?:[^"\\]|\\.)*"|`[^`]*`|-?\d+(?:\.\d+)?|(?:\.[A-Za-z_]\w*)+|\.|\$[A-Za-z_0-9]*(?:\.[A-Za-z_]\w*)*|[A-Za-z_]\w*|:=|[()|,=])/y;
  const tokens: Token[] = [];
  let pos = 0;
  while (pos < src.length) {
    if (/^\s*$/.test(src.slice(pos))) break;
    re.lastIndex = pos;
    const m = re.exec(src);
    if (!m) throw new TemplateError(`${where}: cannot read "${src.slice(pos)}"`);
    const text = m[1]!;
    const spaced = m[0].length > text.length || pos === 0;
    const kind = /^["`]/.test(text) ? 'str' : /^-?\d/.test(text) ? 'num' : text.startsWith('.') ? 'field' : text.startsWith('$') ? 'var' : /^\w/.test(text) ? 'ident' : 'punct';
    tokens.push({ kind, text, spaced });
    pos = re.lastIndex;
  }
  return tokens;
}

function parsePipe(tokens: Token[], where: string): Pipe {
  let i = 0;
  const decl: string[] = [];
  const declEnd = tokens.findIndex((t) => t.text === ':=');
  if (declEnd !== -1) {
    for (; i < declEnd; i++) if (tokens[i]!.kind === 'var') decl.push(tokens[i]!.text);
    i = declEnd + 1;
  }
  const pipeUntil = (stop: (t: Token) => boolean): Pipe['commands'] => {
    const commands: Command[] = [[]];
    while (i < tokens.length && !stop(tokens[i]!)) {
      const t = tokens[i++]!;
      if (t.text === '|') commands.push([]);
      else commands[commands.length - 1]!.push(term(t));
    }
    return commands;
  };
  const term = (t: Token): Term => {
    if (t.kind === 'str') return { kind: 'literal', value: t.text.startsWith('`') ? t.text.slice(1, -1) : JSON.parse(t.text) };
    if (t.kind === 'num') return { kind: 'literal', value: Number(t.text) };
    if (t.kind === 'field') return { kind: 'field', base: 'dot', chain: t.text === '.' ? [] : t.text.slice(1).split('.') };
    if (t.kind === 'var') {
      const [name, ...chain] = t.text.split('.');
      return { kind: 'field', base: name!, chain };
    }
    if (t.kind === 'ident') {
      if (t.text === 'true' || t.text === 'false') return { kind: 'literal', value: t.text === 'true' };
      if (t.text === 'nil') return { kind: 'literal', value: undefined };
      return { kind: 'func', name: t.text };
    }
    if (t.text === '(') {
      const commands = pipeUntil((x) => x.text === ')');
      if (tokens[i++]?.text !== ')') throw new TemplateError(`${where}: unclosed (`);
      const next = tokens[i];
      const chain = next && next.kind === 'field' && !next.spaced && next.text !== '.' ? (i++, next.text.slice(1).split('.')) : [];
      return { kind: 'group', pipe: { decl: [], commands }, chain };
    }
    throw new TemplateError(`${where}: unexpected "${t.text}"`);
  };
  const commands = pipeUntil(() => false);
  if (commands.some((c) => c.length === 0)) throw new TemplateError(`${where}: empty command`);
  return { decl, commands };
}

type Defines = Map<string, Node[]>;

/** Parses one file, adding its {{ define }} blocks to defines; returns the file's own body. */
export function parseTemplate(source: string, file: string, defines: Defines): Node[] {
  const parts = lex(source, file);
  let i = 0;
  const block = (): { body: Node[]; stop: Action | undefined } => {
    const body: Node[] = [];
    while (i < parts.length) {
      const part = parts[i++]!;
      if (typeof part === 'string') {
        if (part) body.push({ kind: 'text', text: part });
        continue;
      }
      const [word] = part.src.split(/\s+/, 1);
      const rest = part.src.slice(word!.length).trim();
      if (word === 'end' || word === 'else') return { body, stop: part };
      if (word === 'if') {
        const branches = [{ cond: parsePipe(tokenize(rest, part.where), part.where), body: [] as Node[] }];
        let otherwise: Node[] = [];
        for (;;) {
          const inner = block();
          const stop = expectStop(inner.stop, part);
          branches[branches.length - 1]!.body = inner.body;
          if (stop.src === 'end') break;
          const elseIf = stop.src.match(/^else\s+if\s+([\s\S]+)$/);
          if (elseIf) {
            branches.push({ cond: parsePipe(tokenize(elseIf[1]!, stop.where), stop.where), body: [] });
            continue;
          }
          if (stop.src !== 'else') throw new TemplateError(`${stop.where}: unexpected ${stop.src}`);
          const last = block();
          if (expectStop(last.stop, part).src !== 'end') throw new TemplateError(`${stop.where}: else after else`);
          otherwise = last.body;
          break;
        }
        body.push({ kind: 'if', branches, otherwise, where: part.where });
      } else if (word === 'range' || word === 'with') {
        const pipe = parsePipe(tokenize(rest, part.where), part.where);
        const inner = block();
        let otherwise: Node[] = [];
        if (expectStop(inner.stop, part).src === 'else') {
          const last = block();
          if (expectStop(last.stop, part).src !== 'end') throw new TemplateError(`${part.where}: unclosed ${word}`);
          otherwise = last.body;
        }
        body.push({ kind: word, pipe, body: inner.body, otherwise, where: part.where });
      } else if (word === 'define') {
        const name = JSON.parse(rest) as string;
        const inner = block();
        if (expectStop(inner.stop, part).src !== 'end') throw new TemplateError(`${part.where}: else in define`);
        defines.set(name, inner.body);
      } else if (/^(template|block|break|continue)$/.test(word!)) {
        throw new TemplateError(`${part.where}: "${word}" is outside the subset this renderer supports`);
      } else {
        body.push({ kind: 'output', pipe: parsePipe(tokenize(part.src, part.where), part.where), where: part.where });
      }
    }
    return { body, stop: undefined };
  };
  const top = block();
  if (top.stop) throw new TemplateError(`${top.stop.where}: ${top.stop.src} without a block`);
  return top.body;
}

function expectStop(stop: Action | undefined, opener: Action): Action {
  if (!stop) throw new TemplateError(`${opener.where}: "${opener.src}" is never closed`);
  return stop;
}

export function truthy(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === 0n || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object' && !(value instanceof GoObject)) return Object.keys(value).length > 0;
  return true;
}

function printable(value: unknown, where: string): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  // Helm holds numbers as float64: from 1e6 up, Go prints them as 1e+06, so the chart must quote or avoid them.
  if (typeof value === 'number' && Math.abs(value) < 1e6) return String(value);
  throw new TemplateError(`${where}: cannot print ${value === undefined ? 'a missing value' : JSON.stringify(value)}`);
}

interface Scope { dot: unknown; vars: Map<string, unknown>; parent: Scope | undefined }

export class Executor {
  constructor(
    private readonly defines: Defines,
    private readonly funcs: Funcs,
  ) {}

  /** Runs a named {{ define }} with `data` as both . and $: what Helm's include does. */
  include(name: string, data: unknown): string {
    const body = this.defines.get(name);
    if (!body) throw new TemplateError(`include: no template named "${name}"`);
    return this.execute(body, data);
  }

  execute(body: Node[], data: unknown): string {
    return this.run(body, { dot: data, vars: new Map([['$', data]]), parent: undefined });
  }

  private run(nodes: Node[], scope: Scope): string {
    let out = '';
    for (const node of nodes) {
      if (node.kind === 'text') out += node.text;
      else if (node.kind === 'output') {
        const value = this.pipe(node.pipe, scope, node.where);
        if (node.pipe.decl.length === 0) out += printable(value, node.where);
      } else if (node.kind === 'if') {
        const branch = node.branches.find((b) => truthy(this.pipe(b.cond, scope, node.where)));
        out += this.run(branch ? branch.body : node.otherwise, child(scope, scope.dot));
      } else if (node.kind === 'with') {
        const value = this.pipe(node.pipe, scope, node.where);
        out += truthy(value) ? this.run(node.body, child(scope, value)) : this.run(node.otherwise, child(scope, scope.dot));
      } else {
        const list = this.pipe({ ...node.pipe, decl: [] }, scope, node.where);
        const entries: [unknown, unknown][] = Array.isArray(list)
          ? list.map((v, k) => [k, v])
          : list && typeof list === 'object' && !(list instanceof GoObject)
            ? Object.keys(list).sort().map((k) => [k, (list as Record<string, unknown>)[k]])
            : list === undefined || list === null
              ? []
              : fail(`${node.where}: cannot range over ${JSON.stringify(list)}`);
        if (entries.length === 0) out += this.run(node.otherwise, child(scope, scope.dot));
        for (const [key, value] of entries) {
          const inner = child(scope, value);
          const [first, second] = node.pipe.decl;
          if (second) inner.vars.set(first!, key).set(second, value);
          else if (first) inner.vars.set(first, value);
          out += this.run(node.body, inner);
        }
      }
    }
    return out;
  }

  private pipe(pipe: Pipe, scope: Scope, where: string): unknown {
    let value: unknown;
    pipe.commands.forEach((command, index) => {
      value = this.command(command, scope, where, index === 0 ? [] : [value]);
    });
    for (const name of pipe.decl) declare(scope, name, value);
    return value;
  }

  private command(command: Command, scope: Scope, where: string, piped: unknown[]): unknown {
    const [head, ...rest] = command;
    const args = () => [...rest.map((t) => this.term(t, scope, where)), ...piped];
    if (head!.kind === 'func') {
      const fn = this.funcs[head.name];
      if (!fn) throw new TemplateError(`${where}: function "${head.name}" is outside the subset this renderer supports`);
      try {
        return fn(...args());
      } catch (err) {
        throw err instanceof TemplateError ? err : new TemplateError(`${where}: ${head.name}: ${(err as Error).message}`);
      }
    }
    if (head!.kind === 'field' && rest.length + piped.length > 0) {
      const method = this.term(head!, scope, where, true);
      if (typeof method !== 'function') throw new TemplateError(`${where}: arguments given to a value that is not a method`);
      return method(...args());
    }
    if (rest.length + piped.length > 0) throw new TemplateError(`${where}: arguments given to a value`);
    return this.term(head!, scope, where);
  }

  private term(term: Term, scope: Scope, where: string, wantMethod = false): unknown {
    if (term.kind === 'literal') return term.value;
    if (term.kind === 'func') {
      const fn = this.funcs[term.name];
      if (!fn) throw new TemplateError(`${where}: function "${term.name}" is outside the subset this renderer supports`);
      return fn();
    }
    const base = term.kind === 'group' ? this.pipe(term.pipe, scope, where) : term.base === 'dot' ? scope.dot : lookup(scope, term.base, where);
    return walk(base, term.chain, where, wantMethod);
  }
}

function walk(base: unknown, chain: string[], where: string, wantMethod: boolean): unknown {
  let value = base;
  chain.forEach((name, index) => {
    const last = index === chain.length - 1;
    if (value instanceof GoObject) {
      const method = value.methods[name];
      if (!method) throw new TemplateError(`${where}: no method ${name}`);
      value = last && wantMethod ? method : method();
    } else if (value && typeof value === 'object' && !Array.isArray(value)) {
      value = Object.prototype.hasOwnProperty.call(value, name) ? (value as Record<string, unknown>)[name] : undefined;
    } else {
      throw new TemplateError(`${where}: nil pointer evaluating .${chain.slice(0, index + 1).join('.')}`);
    }
  });
  return value;
}

function child(scope: Scope, dot: unknown): Scope {
  return { dot, vars: new Map(), parent: scope };
}

function declare(scope: Scope, name: string, value: unknown): void {
  scope.vars.set(name, value);
}

function lookup(scope: Scope | undefined, name: string, where: string): unknown {
  for (let s = scope; s; s = s.parent) if (s.vars.has(name)) return s.vars.get(name);
  throw new TemplateError(`${where}: undefined variable ${name}`);
}

function fail(message: string): never {
  throw new TemplateError(message);
}
