// The chart tests render through a JavaScript stand-in for `helm template` (render.ts, go-template.ts), because
// there is no Helm binary here. This suite renders the same values with Go's own text/template and Sprig (the
// engine Helm is built on, go-engine/main.go) and requires the same manifests, or the same refusal, from both:
// every assertion the other chart tests make about the stand-in's output then holds for Go's as well.
import YAML from 'yaml';
import { production } from './manifests';
import { buildGoRenderer, renderWithGo, type GoRendered } from './go-render';
import { defaultValues, mergeValues, renderChart, type Values } from './render';

type Release = { name: string; namespace: string; isUpgrade: boolean };
const RELEASE: Release = { name: 'vault', namespace: 'payments', isUpgrade: false };

/** Each document of each rendered file, parsed as Kubernetes reads it (YAML 1.1); empty documents dropped. */
function documents(files: Record<string, string>): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const [name, text] of Object.entries(files)) {
    if (name === 'templates/NOTES.txt') continue;
    out[name] = YAML.parseAllDocuments(text, { version: '1.1' })
      .map((doc) => {
        if (doc.errors.length > 0) throw new Error(`${name} does not parse: ${doc.errors[0]!.message}`);
        return doc.toJS() as unknown;
      })
      .filter((doc) => doc !== null);
  }
  return out;
}

describe('the chart rendered by Go text/template and Sprig', () => {
  let go: ReturnType<typeof buildGoRenderer>;
  beforeAll(() => {
    go = buildGoRenderer();
  }, 120_000);
  afterAll(() => go?.cleanup());

  /** Like renderChart, the user's values over the chart's values.yaml (Helm's coalescing is render.ts's). */
  const renderGo = (values: Values, release = RELEASE): GoRendered => renderWithGo(go.binary, mergeValues(defaultValues(), values), release);

  // The same value sets the chart and network policy tests render, each a path through different branches.
  const cases: [string, Values, Release?][] = [
    ['the example production values', {}],
    ['an upgrade', {}, { ...RELEASE, isUpgrade: true }],
    ['a release whose name already says cardvault, with a pinned image digest', { image: { digest: `sha256:${'ab'.repeat(32)}` } }, { ...RELEASE, name: 'cardvault' }],
    ['a fullnameOverride', { fullnameOverride: 'pci-vault' }],
    ['a body limit of a million bytes (Go prints a float64 that large as 1e+06)', { config: { bodyLimitBytes: 1048576 } }],
    ['metrics off', { metrics: { enabled: false } }],
    ['metrics on 8080 with the API on 9000', { api: { port: 9000 }, metrics: { port: 8080 } }],
    ['no KMS role annotation', { serviceAccount: { kmsRoleArn: '' } }],
    ['a fixed replica count', { api: { autoscaling: { enabled: false } } }],
    ['a chart-made drop volume claim', { worker: { dropDir: { existingClaim: '', persistentVolumeClaim: { create: true, storageClassName: 'efs-encrypted' } } } }],
    ['the in-memory drop folder (the notes warn)', { worker: { dropDir: { existingClaim: '' } } }],
    ['card network ports and no webhook addresses', { networkPolicy: { egress: { cardNetworks: { ipBlocks: [{ cidr: '198.51.100.0/24' }], ports: [22] }, webhooks: { ipBlocks: [] } } } }],
    ['Redis off', { redis: { enabled: false } }],
    ['network policies off', { networkPolicy: { enabled: false } }],
  ];

  it.each(cases)('gives the same manifests and notes as the stand-in for %s', (_name, overrides, release = RELEASE) => {
    const values = mergeValues(production, overrides);
    const expected = renderChart(values, release);
    const actual = renderGo(values, release);
    if ('error' in actual) throw new Error(`Go refused to render: ${actual.error}`);
    const expectedFiles = Object.fromEntries(expected.files);
    expect(Object.keys(actual.files).sort()).toEqual([...Object.keys(expectedFiles), 'templates/NOTES.txt'].sort());
    expect(documents(actual.files)).toEqual(documents(expectedFiles));
    expect(actual.files['templates/NOTES.txt']).toBe(expected.notes);
  });

  it('produces objects from every value set above: the comparison is not between two empty renders', () => {
    const actual = renderGo(mergeValues(production, {}));
    if ('error' in actual) throw new Error(actual.error);
    const kinds = Object.values(documents(actual.files)).flat().map((o) => (o as { kind: string }).kind);
    expect(kinds).toEqual(expect.arrayContaining(['Deployment', 'Job', 'NetworkPolicy', 'ConfigMap', 'HorizontalPodAutoscaler']));
  });

  // Values the schema accepts but the templates refuse: both engines must stop, for the same reason.
  const refusals: [string, Values, string][] = [
    ['an empty image repository', { image: { repository: '' } }, 'image.repository is required'],
    ['an empty KMS key id', { kms: { keyId: '' } }, 'kms.keyId'],
    ['a PostgreSQL egress rule with no address', { networkPolicy: { egress: { postgres: { ipBlocks: [] } } } }, 'networkPolicy.egress.postgres.ipBlocks'],
    ['the metrics port on the API port', { metrics: { port: 8080 } }, 'metrics.port must differ from api.port'],
    ['more minimum than maximum replicas', { api: { autoscaling: { minReplicas: 5, maxReplicas: 4 } } }, 'minReplicas'],
  ];

  it.each(refusals)('refuses %s, as the stand-in does', (_name, overrides, reason) => {
    const values = mergeValues(production, overrides);
    expect(() => renderChart(values)).toThrow(reason);
    const actual = renderGo(values);
    expect('error' in actual && actual.error).toContain(reason);
  });

  it('refuses the bare defaults, which name no image, key or audit origin, as the stand-in does', () => {
    expect(() => renderChart(defaultValues())).toThrow('is required');
    const actual = renderGo(defaultValues());
    expect('error' in actual && actual.error).toContain('is required');
  });
});
