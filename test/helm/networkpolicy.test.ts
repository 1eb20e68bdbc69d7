// The NetworkPolicies: default deny both ways for every pod, then only the callers and destinations each
// workload needs; an empty destination list stops the render or drops the rule, never widens it. The migration
// Job's policy is a hook of its own, created before the Job, so that it governs the Job on a first install too.
import { find, podTemplate, render, rulesOf, workloads } from './manifests';
import type { K8sObject } from './render';

const hookEvents = (o: K8sObject) => (o.metadata.annotations?.['helm.sh/hook'] ?? '').split(',').filter(Boolean);
const hookWeight = (o: K8sObject) => Number(o.metadata.annotations?.['helm.sh/hook-weight'] ?? '0');
const selects = (policy: K8sObject, workload: K8sObject) => {
  const labels = podTemplate(workload).metadata.labels;
  return Object.entries((policy.spec as { podSelector: { matchLabels: Record<string, string> } }).podSelector.matchLabels).every(([k, v]) => labels[k] === v);
};

/**
 * What Helm 3 creates, in order, on a first install: the pre-install hooks by weight, then by name (helm/helm#12414:
 * not by kind, whatever the docs say), one after the other; then every object that is no hook.
 */
function installSequence(objects: K8sObject[]): string[] {
  const byName = (a: K8sObject, b: K8sObject) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0);
  const hooks = objects.filter((o) => hookEvents(o).includes('pre-install'));
  hooks.sort((a, b) => hookWeight(a) - hookWeight(b) || byName(a, b));
  return [...hooks, ...objects.filter((o) => hookEvents(o).length === 0)].map((o) => `${o.kind}/${o.metadata.name}`);
}

describe('the NetworkPolicies', () => {
  const objects = render();
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy');
  const dns = { to: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } }, podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } } }], ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }] };
  const tcp = (cidr: string, port: number) => ({ to: [{ ipBlock: { cidr } }], ports: [{ protocol: 'TCP', port }] });
  const postgres = tcp('10.0.12.0/24', 5432);
  const redis = tcp('10.0.13.0/24', 6380);
  const kms = tcp('10.0.20.0/24', 443);

  it('are on by default and deny both directions for every pod the chart runs', () => {
    for (const workload of workloads(objects)) {
      const labels = podTemplate(workload).metadata.labels;
      const selecting = policies.filter((p) => Object.entries((p.spec as { podSelector: { matchLabels: Record<string, string> } }).podSelector.matchLabels).every(([k, v]) => labels[k] === v));
      expect(selecting).toHaveLength(1);
      expect((selecting[0]!.spec as { policyTypes: string[] }).policyTypes).toEqual(['Ingress', 'Egress']);
    }
  });

  it('never allow an egress rule without a destination or ports (which would mean everywhere)', () => {
    for (const policy of policies) {
      for (const rule of rulesOf(policy, 'egress')) {
        expect(rule.to?.length).toBeGreaterThan(0);
        expect(rule.ports?.length).toBeGreaterThan(0);
      }
    }
  });

  it('let callers from labelled namespaces reach the API port, and only the monitoring namespace reach metrics', () => {
    expect(rulesOf(find(policies, 'NetworkPolicy', '-api'), 'ingress')).toEqual([
      { from: [{ namespaceSelector: { matchLabels: { 'cardvault-client': 'true' } } }], ports: [{ protocol: 'TCP', port: 8080 }] },
      { from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], ports: [{ protocol: 'TCP', port: 9464 }] },
    ]);
    expect(rulesOf(find(policies, 'NetworkPolicy', '-worker'), 'ingress')).toEqual([
      { from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }], ports: [{ protocol: 'TCP', port: 9464 }] },
    ]);
    expect(rulesOf(find(policies, 'NetworkPolicy', '-migrate-hook'), 'ingress')).toEqual([]);
  });

  it('let the API reach only DNS, PostgreSQL, Redis and the KMS', () => {
    expect(rulesOf(find(policies, 'NetworkPolicy', '-api'), 'egress')).toEqual([dns, postgres, redis, kms]);
  });

  it('let the worker also reach webhook URLs on public addresses only, never private or link-local ones', () => {
    const egress = rulesOf(find(policies, 'NetworkPolicy', '-worker'), 'egress');
    expect(egress.slice(0, 4)).toEqual([dns, postgres, redis, kms]);
    expect(egress).toHaveLength(5);
    const [webhooks] = egress.slice(4);
    expect(webhooks!.ports).toEqual([{ protocol: 'TCP', port: 443 }]);
    const block = (webhooks!.to![0] as { ipBlock: { cidr: string; except: string[] } }).ipBlock;
    expect(block.cidr).toBe('0.0.0.0/0');
    expect(block.except).toEqual(expect.arrayContaining(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16', '127.0.0.0/8', '100.64.0.0/10']));
  });

  it('add the card-network endpoints to the worker when listed, and drop the webhook rule (not widen it) when emptied', () => {
    const egress = rulesOf(
      find(render({ networkPolicy: { egress: { cardNetworks: { ipBlocks: [{ cidr: '198.51.100.0/24' }], ports: [22] }, webhooks: { ipBlocks: [] } } } }), 'NetworkPolicy', '-worker'),
      'egress',
    );
    expect(egress).toEqual([dns, postgres, redis, kms, tcp('198.51.100.0/24', 22)]);
  });

  it('let the migration Job reach only DNS and PostgreSQL', () => {
    expect(rulesOf(find(policies, 'NetworkPolicy', '-migrate-hook'), 'egress')).toEqual([dns, postgres]);
  });

  it('exist before the migration Job on a first install: Helm creates the release\'s own objects only after it', () => {
    const sequence = installSequence(objects);
    expect(sequence.indexOf('NetworkPolicy/vault-cardvault-migrate-hook')).toBeGreaterThanOrEqual(0);
    expect(sequence.indexOf('NetworkPolicy/vault-cardvault-migrate-hook')).toBeLessThan(sequence.indexOf('Job/vault-cardvault-migrate'));
  });

  it('govern each hook Job by a hook of the same events, weighted before it, that lives as the Job does', () => {
    const jobs = workloads(objects).filter((o) => hookEvents(o).length > 0);
    expect(jobs.map((o) => o.metadata.name)).toEqual(['vault-cardvault-migrate']);
    for (const job of jobs) {
      const [policy, ...others] = policies.filter((p) => selects(p, job));
      expect(others).toEqual([]);
      expect(hookEvents(policy!)).toEqual(expect.arrayContaining(hookEvents(job)));
      // Lower, not equal: on a tie Helm 3 orders by name, and the Job's "-migrate" sorts before "-migrate-hook".
      expect(hookWeight(policy!)).toBeLessThan(hookWeight(job));
      // Replaced before each run (a rerun would otherwise fail on the name), removed after the Job, never before.
      expect(policy!.metadata.annotations?.['helm.sh/hook-delete-policy']).toBe(job.metadata.annotations?.['helm.sh/hook-delete-policy']);
      expect(policy!.metadata.annotations?.['helm.sh/hook-delete-policy']).toBe('before-hook-creation,hook-succeeded');
    }
  });

  it('govern each Deployment by a policy of the release, not a hook Helm would delete', () => {
    for (const deployment of workloads(objects).filter((o) => o.kind === 'Deployment')) {
      const governing = policies.filter((p) => selects(p, deployment));
      expect(governing.map(hookEvents)).toEqual([[]]);
    }
  });

  it('name the migration hook apart from the release object "-migrate" of earlier charts, so an upgrade has no clash', () => {
    // A hook created under the name of a release object would be deleted by before-hook-creation, then again by the
    // upgrade removing the release object it replaced: under its own name each is created and deleted once.
    expect(policies.map((p) => p.metadata.name)).not.toContain('vault-cardvault-migrate');
  });

  it('leave Redis out when it is disabled, and can be turned off as a whole', () => {
    expect(rulesOf(find(render({ redis: { enabled: false } }), 'NetworkPolicy', '-api'), 'egress')).toEqual([dns, postgres, kms]);
    expect(render({ networkPolicy: { enabled: false } }).filter((o) => o.kind === 'NetworkPolicy')).toEqual([]);
  });
});
