// The test-only template engine behind test/helm/render.ts: Go's trimming and scoping, and a loud failure for
// anything outside the subset, so a template the engine misreads fails the suite rather than passing it.
import { Executor, parseTemplate, TemplateError } from './go-template';

function run(source: string, data: unknown, funcs = {}): string {
  const defines = new Map();
  const body = parseTemplate(source, 't', defines);
  return new Executor(defines, funcs).execute(body, data);
}

describe('go-template', () => {
  it('trims whitespace on the marked side of {{- and -}} only', () => {
    expect(run('a  \n  {{- .x }}  \n b', { x: 1 })).toBe('a1  \n b');
    expect(run('a {{ .x -}}  \n b', { x: 'y' })).toBe('a yb');
  });

  it('chooses if / else if / else branches by Go truthiness (empty string, zero, empty list and map are false)', () => {
    const t = '{{ if .a }}A{{ else if .b }}B{{ else }}C{{ end }}';
    expect(run(t, { a: 'x', b: true })).toBe('A');
    expect(run(t, { a: '', b: [1] })).toBe('B');
    for (const empty of [0, '', [], {}, false, undefined]) expect(run(t, { a: empty, b: empty })).toBe('C');
  });

  it('ranges over lists and over maps in key order, with . and $ as Go sets them', () => {
    expect(run('{{ range .xs }}[{{ . }}{{ $.s }}]{{ end }}', { xs: ['a', 'b'], s: '!' })).toBe('[a!][b!]');
    expect(run('{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}', { m: { b: 2, a: 1 } })).toBe('a=1;b=2;');
    expect(run('{{ range .xs }}x{{ else }}none{{ end }}', { xs: [] })).toBe('none');
  });

  it('runs defines through include with the given data, and pipes values into functions as the last argument', () => {
    const funcs = { upper: (s: unknown) => String(s).toUpperCase(), wrap: (l: unknown, s: unknown) => `${l}${s}${l}` };
    const defines = new Map();
    parseTemplate('{{- define "n" -}}<{{ .v }}>{{- end }}', 'h', defines);
    const exec: Executor = new Executor(defines, { ...funcs, include: (n: unknown, d: unknown) => exec.include(String(n), d) });
    expect(exec.execute(parseTemplate('{{ include "n" .inner | upper | wrap "*" }}', 't', defines), { inner: { v: 'ok' } })).toBe('*<OK>*');
  });

  it('refuses what it does not implement, and printing a value that is not there', () => {
    expect(() => run('{{ tpl .x . }}', { x: 1 })).toThrow(TemplateError);
    expect(() => run('{{ template "x" . }}', {})).toThrow('outside the subset');
    expect(() => run('{{ .Values.missing }}', { Values: {} })).toThrow('missing value');
    expect(() => run('{{ .a.b.c }}', { a: {} })).toThrow('nil pointer');
    expect(() => run('{{ if .a }}x', { a: 1 })).toThrow('never closed');
  });
});
