// The rendered chart (test/helm/render.ts stands in for `helm template`): secure pods, secrets by reference only,
// the migration hook, probes, scaling, the policies ConfigMap, the drop volume, and an env that src/config.ts
// reads and accepts in production. The NetworkPolicies have their own file.
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import { containersOf, envOf, find, podTemplate, production, render, REPO, rulesOf, workloads } from './manifests';
import { CHART_DIR, mergeValues, renderChart, type Values } from './render';

describe('the rendered chart', () => {
  const objects = render();

  it('renders the expected objects for a production install', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'ConfigMap/vault-cardvault-policies',
      'Deployment/vault-cardvault-api',
      'Deployment/vault-cardvault-worker',
      'HorizontalPodAutoscaler/vault-cardvault-api',
      'Job/vault-cardvault-migrate',
      'NetworkPolicy/vault-cardvault-api',
      'NetworkPolicy/vault-cardvault-migrate-hook',
      'NetworkPolicy/vault-cardvault-worker',
      'PodDisruptionBudget/vault-cardvault-api',
      'PodDisruptionBudget/vault-cardvault-worker',
      'Service/vault-cardvault',
      'ServiceAccount/vault-cardvault',
    ]);
  });

  it.each(['image.repository', 'kms.keyId', 'kms.region', 'config.auditOrigin'])('stops the render, naming %s, when it is empty', (dotted) => {
    const [section, key] = dotted.split('.') as [string, string];
    expect(() => render({ [section]: { [key]: '' } })).toThrow(dotted);
  });

  it.each(['postgres', 'kms', 'redis'])('stops the render when networkPolicy.egress.%s lists no address', (name) => {
    expect(() => render({ networkPolicy: { egress: { [name]: { ipBlocks: [] } } } })).toThrow(`networkPolicy.egress.${name}.ipBlocks`);
  });

  it('refuses values that break the schema before rendering anything', () => {
    expect(() => render({ api: { replicas: -1 } })).toThrow('/api/replicas');
  });

  it('runs every pod as uid/gid 10001, non-root, RuntimeDefault seccomp, no host namespaces and no API token', () => {
    expect(workloads(objects)).toHaveLength(3);
    for (const workload of workloads(objects)) {
      const spec = podTemplate(workload).spec;
      expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, seccompProfile: { type: 'RuntimeDefault' } });
      expect(spec).toMatchObject({ hostNetwork: false, hostPID: false, hostIPC: false, automountServiceAccountToken: false });
      expect(spec.volumes.filter((v) => 'hostPath' in v)).toEqual([]);
    }
  });

  it('locks down every container: read-only root filesystem, no privilege escalation, every capability dropped', () => {
    for (const workload of workloads(objects)) {
      for (const container of containersOf(podTemplate(workload).spec)) {
        expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, privileged: false, runAsNonRoot: true });
        expect((container.securityContext.capabilities as { drop: string[]; add?: string[] }).drop).toContain('ALL');
        expect((container.securityContext.capabilities as { add?: string[] }).add).toBeUndefined();
        expect(container.resources).toMatchObject({ requests: { cpu: expect.anything(), memory: expect.anything() }, limits: { memory: expect.anything() } });
      }
    }
  });

  it('gives the read-only pods a writable in-memory /tmp, and mounts the policies read-only where POLICIES_DIR points', () => {
    for (const name of ['-api', '-worker']) {
      const spec = podTemplate(find(objects, 'Deployment', name)).spec;
      const [container] = spec.containers;
      expect(container!.volumeMounts).toEqual(expect.arrayContaining([{ name: 'policies', mountPath: '/app/policies', readOnly: true }, { name: 'tmp', mountPath: '/tmp' }]));
      expect(spec.volumes).toEqual(expect.arrayContaining([{ name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } }]));
      expect(spec.volumes).toEqual(expect.arrayContaining([{ name: 'policies', configMap: { name: 'vault-cardvault-policies', defaultMode: 0o444 } }]));
      expect(envOf(container!).get('POLICIES_DIR')?.value).toBe('/app/policies');
    }
  });

  it('takes DATABASE_URL and REDIS_URL only from Secrets, and holds no secret value anywhere', () => {
    expect(objects.filter((o) => o.kind === 'Secret')).toEqual([]);
    const api = envOf(podTemplate(find(objects, 'Deployment', '-api')).spec.containers[0]!);
    expect(api.get('DATABASE_URL')).toEqual({ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'cardvault-database', key: 'url' } } });
    expect(api.get('REDIS_URL')).toEqual({ name: 'REDIS_URL', valueFrom: { secretKeyRef: { name: 'cardvault-redis', key: 'url' } } });
    const migrate = envOf(podTemplate(find(objects, 'Job', '-migrate')).spec.containers[0]!);
    expect(migrate.get('DATABASE_URL')).toEqual({ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'cardvault-database-owner', key: 'url' } } });
    for (const workload of workloads(objects)) {
      for (const env of containersOf(podTemplate(workload).spec).flatMap((c) => c.env)) {
        if (/URL$|SECRET|PASSWORD|TOKEN|CREDENTIAL|ACCESS_KEY/.test(env.name) && env.name !== 'AWS_ENDPOINT_URL_KMS') {
          expect({ name: env.name, value: env.value, secretKeyRef: Boolean(env.valueFrom?.secretKeyRef) }).toEqual({ name: env.name, value: undefined, secretKeyRef: true });
        }
        expect(env.value ?? '').not.toMatch(/:\/\/[^/\s]*@/);
      }
    }
  });

  it('runs the API as `node dist/main.js` with the worker off, probed on /healthz and /readyz', () => {
    const api = podTemplate(find(objects, 'Deployment', '-api')).spec.containers[0]!;
    expect(api.command).toEqual(['node', 'dist/main.js']);
    const env = envOf(api);
    expect(env.get('UPDATER_WORKER')?.value).toBe('off');
    expect(env.get('PORT')?.value).toBe('8080');
    expect(env.get('METRICS_PORT')?.value).toBe('9464');
    expect(api.ports).toEqual(expect.arrayContaining([{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { name: 'metrics', containerPort: 9464, protocol: 'TCP' }]));
    expect(api.livenessProbe).toMatchObject({ httpGet: { path: '/healthz', port: 'http' } });
    expect(api.readinessProbe).toMatchObject({ httpGet: { path: '/readyz', port: 'http' } });
    expect(api.startupProbe).toMatchObject({ httpGet: { path: '/healthz', port: 'http' } });
  });

  it('keeps a stopping API pod serving while it leaves the endpoints, within its grace period', () => {
    const deployment = find(objects, 'Deployment', '-api');
    const pod = podTemplate(deployment).spec;
    const delay = Number(envOf(pod.containers[0]!).get('SHUTDOWN_DELAY_SECONDS')?.value);
    expect(delay).toBe(5);
    // The delay, then up to 10 s of draining and the last audit flush, all before SIGKILL.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(delay + 15);
  });

  it('runs two workers as `node dist/cli.js worker`, on the file-drop network, with the drop folder mounted', () => {
    const worker = find(objects, 'Deployment', '-worker');
    expect((worker.spec as { replicas: number }).replicas).toBe(2);
    const container = podTemplate(worker).spec.containers[0]!;
    expect(container.command).toEqual(['node', 'dist/cli.js', 'worker']);
    expect(envOf(container).get('UPDATER_NETWORK')?.value).toBe('file-drop');
    expect(envOf(container).get('UPDATER_DROP_DIR')?.value).toBe('/var/lib/cardvault/updater-drop');
    expect(container.volumeMounts).toContainEqual({ name: 'updater-drop', mountPath: '/var/lib/cardvault/updater-drop' });
    expect(podTemplate(worker).spec.volumes).toContainEqual({ name: 'updater-drop', persistentVolumeClaim: { claimName: 'cardvault-updater-drop' } });
  });

  it('sets only environment variables that src/config.ts reads, so chart and code cannot drift apart', () => {
    const source = fs.readFileSync(path.join(REPO, 'src', 'config.ts'), 'utf8');
    const known = new Set([...source.matchAll(/read\.\w+\('([A-Z0-9_]+)'/g)].map((m) => m[1]!));
    expect(known.size).toBeGreaterThan(20);
    const names = workloads(objects).flatMap((w) => containersOf(podTemplate(w).spec).flatMap((c) => c.env.map((e) => e.name)));
    expect(names.filter((n) => !known.has(n))).toEqual([]);
    for (const workload of workloads(objects)) {
      for (const container of containersOf(podTemplate(workload).spec)) {
        const list = container.env.map((e) => e.name);
        expect(list).toEqual([...new Set(list)]);
      }
    }
  });

  it.each([
    ['Deployment', '-api'],
    ['Deployment', '-worker'],
    ['Job', '-migrate'],
  ])('gives the %s …%s an environment that loadConfig accepts in production', (kind, name) => {
    const container = podTemplate(find(objects, kind, name)).spec.containers[0]!;
    const env = Object.fromEntries(container.env.map((e) => [e.name, e.value ?? (e.name === 'REDIS_URL' ? 'redis://redis:6379' : 'postgres://vault@db/cardvault')]));
    const config = loadConfig(env, '/app');
    expect(config).toMatchObject({ env: 'production', migrateOnStart: false, kms: { provider: 'aws', keyId: production.kms && (production.kms as Values).keyId } });
    expect(config.database.kind).toBe('postgres');
    if (kind === 'Deployment') {
      expect(config).toMatchObject({ policiesDir: '/app/policies', trustProxy: 1, redisUrl: 'redis://redis:6379', audit: { origin: 'cardvault-eu-west-1-prod' } });
      expect(config.metrics).toEqual({ host: '0.0.0.0', port: 9464 });
      expect(config.updater).toMatchObject({ worker: 'off', network: 'file-drop' });
    }
    if (name === '-worker') expect(config.updater.dropDir).toBe('/var/lib/cardvault/updater-drop');
  });

  it('prints large numbers as integers, as Go would after int (not 1.048576e+06)', () => {
    const api = podTemplate(find(render({ config: { bodyLimitBytes: 1048576 } }), 'Deployment', '-api')).spec.containers[0]!;
    expect(envOf(api).get('BODY_LIMIT_BYTES')?.value).toBe('1048576');
  });

  it('runs migrations as a pre-install/pre-upgrade hook Job, as the owner, without the KMS identity', () => {
    const job = find(objects, 'Job', '-migrate');
    expect(job.metadata.annotations).toMatchObject({
      'helm.sh/hook': 'pre-install,pre-upgrade',
      'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded',
    });
    expect((job.spec as { backoffLimit: number }).backoffLimit).toBe(2);
    const spec = podTemplate(job).spec;
    expect(spec.restartPolicy).toBe('Never');
    expect(spec.serviceAccountName).toBeUndefined();
    expect(spec.containers[0]!.command).toEqual(['node', 'dist/cli.js', 'migrate']);
  });

  it('exposes the API on 8080 and metrics on 9464 through a ClusterIP Service selecting the API pods', () => {
    const service = find(objects, 'Service', 'vault-cardvault');
    const spec = service.spec as { type: string; selector: Record<string, string>; ports: unknown[] };
    expect(spec.type).toBe('ClusterIP');
    expect(spec.ports).toEqual([
      { name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' },
      { name: 'metrics', port: 9464, targetPort: 'metrics', protocol: 'TCP' },
    ]);
    expect(podTemplate(find(objects, 'Deployment', '-api')).metadata.labels).toMatchObject(spec.selector);
    expect(spec.selector['app.kubernetes.io/component']).toBe('api');
  });

  it('turns the metrics listener off (METRICS_PORT=off) and closes its port everywhere when metrics.enabled is false', () => {
    const off = render({ metrics: { enabled: false } });
    for (const name of ['-api', '-worker']) {
      const container = podTemplate(find(off, 'Deployment', name)).spec.containers[0]!;
      expect(envOf(container).get('METRICS_PORT')?.value).toBe('off');
      expect((container.ports ?? []).map((p) => p.name)).not.toContain('metrics');
    }
    expect((find(off, 'Service', 'vault-cardvault').spec as { ports: { name: string }[] }).ports.map((p) => p.name)).toEqual(['http']);
    expect(rulesOf(find(off, 'NetworkPolicy', '-api'), 'ingress')).toHaveLength(1);
    expect(rulesOf(find(off, 'NetworkPolicy', '-worker'), 'ingress')).toEqual([]);
    expect(() => render({ metrics: { port: 8080 } })).toThrow('metrics.port must differ from api.port');
  });

  it('sets PORT on the worker to api.port, so metrics.port 8080 with api.port 9000 is accepted by the worker too', () => {
    const moved = render({ api: { port: 9000 }, metrics: { port: 8080 } });
    for (const name of ['-api', '-worker']) {
      const container = podTemplate(find(moved, 'Deployment', name)).spec.containers[0]!;
      expect(envOf(container).get('PORT')?.value).toBe('9000');
      expect(envOf(container).get('METRICS_PORT')?.value).toBe('8080');
      const env = Object.fromEntries(container.env.map((e) => [e.name, e.value ?? (e.name === 'REDIS_URL' ? 'redis://redis:6379' : 'postgres://vault@db/cardvault')]));
      expect(loadConfig(env, '/app').metrics).toEqual({ host: '0.0.0.0', port: 8080 });
    }
  });

  it('annotates the ServiceAccount with the KMS role from values and mounts no token; the pods use it', () => {
    const account = find(objects, 'ServiceAccount', 'vault-cardvault');
    expect(account.metadata.annotations).toEqual({ 'eks.amazonaws.com/role-arn': 'arn:aws:iam::123456789012:role/cardvault-kms' });
    expect(account.automountServiceAccountToken).toBe(false);
    for (const name of ['-api', '-worker']) expect(podTemplate(find(objects, 'Deployment', name)).spec.serviceAccountName).toBe('vault-cardvault');
    const without = find(render({ serviceAccount: { kmsRoleArn: '' } }), 'ServiceAccount', 'vault-cardvault');
    expect(without.metadata.annotations).toBeUndefined();
  });

  it('puts exactly the repository policy files, byte for byte, in the ConfigMap', () => {
    const data = find(objects, 'ConfigMap', '-policies').data as Record<string, string>;
    const shipped = fs.readdirSync(path.join(REPO, 'policies')).sort();
    expect(Object.keys(data).sort()).toEqual(shipped);
    for (const file of shipped) expect(data[file]).toBe(fs.readFileSync(path.join(REPO, 'policies', file), 'utf8'));
  });

  it('keeps helm/cardvault/files/policies a byte-identical copy of policies/', () => {
    const copies = fs.readdirSync(path.join(CHART_DIR, 'files', 'policies')).sort();
    expect(copies).toEqual(fs.readdirSync(path.join(REPO, 'policies')).sort());
    for (const file of copies) {
      expect(fs.readFileSync(path.join(CHART_DIR, 'files', 'policies', file)).equals(fs.readFileSync(path.join(REPO, 'policies', file)))).toBe(true);
    }
  });

  it('scales the API on CPU with an HPA (the Deployment then sets no replica count) and budgets disruptions of both workloads', () => {
    const hpa = find(objects, 'HorizontalPodAutoscaler', '-api').spec as Record<string, unknown>;
    expect(hpa).toMatchObject({
      scaleTargetRef: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'vault-cardvault-api' },
      minReplicas: 3,
      maxReplicas: 10,
      metrics: [{ type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } }],
    });
    expect(find(objects, 'Deployment', '-api').spec).not.toHaveProperty('replicas');
    for (const name of ['-api', '-worker']) {
      const pdb = find(objects, 'PodDisruptionBudget', name).spec as { maxUnavailable: number; selector: { matchLabels: Record<string, string> } };
      expect(pdb.maxUnavailable).toBe(1);
      expect(podTemplate(find(objects, 'Deployment', name)).metadata.labels).toEqual(pdb.selector.matchLabels);
    }
    const fixed = render({ api: { autoscaling: { enabled: false } } });
    expect(fixed.some((o) => o.kind === 'HorizontalPodAutoscaler')).toBe(false);
    expect((find(fixed, 'Deployment', '-api').spec as { replicas: number }).replicas).toBe(3);
    expect(() => render({ api: { autoscaling: { minReplicas: 5, maxReplicas: 4 } } })).toThrow('minReplicas');
  });

  it('spreads the API pods over zones and nodes', () => {
    const spread = podTemplate(find(objects, 'Deployment', '-api')).spec.topologySpreadConstraints as { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } }[];
    expect(spread.map((s) => s.topologyKey)).toEqual(['topology.kubernetes.io/zone', 'kubernetes.io/hostname']);
    for (const s of spread) expect(s.labelSelector.matchLabels['app.kubernetes.io/component']).toBe('api');
  });
});

describe('the updater drop volume', () => {
  it('is the chart-made claim when asked for one', () => {
    const objects = render({ worker: { dropDir: { existingClaim: '', persistentVolumeClaim: { create: true, storageClassName: 'efs-encrypted' } } } });
    const claim = find(objects, 'PersistentVolumeClaim', '-updater-drop');
    expect(claim.spec).toEqual({ accessModes: ['ReadWriteMany'], storageClassName: 'efs-encrypted', resources: { requests: { storage: '10Gi' } } });
    expect(podTemplate(find(objects, 'Deployment', '-worker')).spec.volumes).toContainEqual({ name: 'updater-drop', persistentVolumeClaim: { claimName: 'vault-cardvault-updater-drop' } });
  });

  it('shows operator commands in a worker pod with --operator: uid 10001 has no account name to audit', () => {
    // os.userInfo() throws for a uid with no passwd entry, so without --operator the audit names `unknown`.
    const example = renderChart(production).notes.split('\n').find((line) => line.includes('node dist/cli.js'));
    expect(example).toMatch(/node dist\/cli\.js tenants create acme --operator \S+/);
  });

  it('falls back to a per-pod in-memory folder, and the install notes warn that no relay can read it', () => {
    const rendered = renderChart(mergeValues(production, { worker: { dropDir: { existingClaim: '' } } }));
    expect(podTemplate(find(rendered.objects, 'Deployment', '-worker')).spec.volumes).toContainEqual({ name: 'updater-drop', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } });
    expect(rendered.objects.some((o) => o.kind === 'PersistentVolumeClaim')).toBe(false);
    expect(rendered.notes).toContain('WARNING: worker.dropDir has no volume claim');
    expect(renderChart(production).notes).not.toContain('WARNING');
  });
});
