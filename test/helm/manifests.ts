// Shared by the chart tests: the example production values, rendering over them, and typed views of the manifests.
import fs from 'node:fs';
import path from 'node:path';
import { CHART_DIR, mergeValues, parseYaml, renderChart, type K8sObject, type Values } from './render';

export interface EnvVar { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }
export interface Container { name: string; command: string[]; env: EnvVar[]; ports?: { name: string; containerPort: number }[]; securityContext: Record<string, unknown>; volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[]; [probe: string]: unknown }
export interface PodSpec { containers: Container[]; initContainers?: Container[]; volumes: Record<string, unknown>[]; securityContext: Record<string, unknown>; [field: string]: unknown }
export interface NetworkPolicyRule { from?: Record<string, unknown>[]; to?: Record<string, unknown>[]; ports?: { protocol: string; port: number }[] }

export const REPO = path.resolve(CHART_DIR, '..', '..');
export const production = parseYaml(fs.readFileSync(path.join(CHART_DIR, 'ci', 'production-values.yaml'), 'utf8')) as Values;
export const render = (overrides: Values = {}) => renderChart(mergeValues(production, overrides)).objects;

export const find = (objects: K8sObject[], kind: string, suffix: string) => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name.endsWith(suffix));
  if (!found) throw new Error(`no ${kind} named …${suffix}`);
  return found;
};
export const podTemplate = (o: K8sObject) => (o.spec as { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } }).template;
export const workloads = (objects: K8sObject[]) => objects.filter((o) => o.kind === 'Deployment' || o.kind === 'Job');
export const containersOf = (spec: PodSpec) => [...(spec.initContainers ?? []), ...spec.containers];
export const envOf = (c: Container) => new Map(c.env.map((e) => [e.name, e]));
export const rulesOf = (np: K8sObject, type: 'ingress' | 'egress') => ((np.spec as Record<string, NetworkPolicyRule[]>)[type] ?? []);

