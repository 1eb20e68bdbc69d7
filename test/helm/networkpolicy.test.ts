// The NetworkPolicies: default deny both ways for every pod, then only the callers and destinations each
// workload needs; an empty destination list stops the render or drops the rule, never widens it.
import { find, podTemplate, render, rulesOf, workloads } from './manifests';

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
    expect(rulesOf(find(policies, 'NetworkPolicy', '-migrate'), 'ingress')).toEqual([]);
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
    expect(rulesOf(find(policies, 'NetworkPolicy', '-migrate'), 'egress')).toEqual([dns, postgres]);
  });

  it('leave Redis out when it is disabled, and can be turned off as a whole', () => {
    expect(rulesOf(find(render({ redis: { enabled: false } }), 'NetworkPolicy', '-api'), 'egress')).toEqual([dns, postgres, kms]);
    expect(render({ networkPolicy: { enabled: false } }).filter((o) => o.kind === 'NetworkPolicy')).toEqual([]);
  });
});
