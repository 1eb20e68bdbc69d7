// The account updater's vocabulary: networks, settings, runs and the versioned history of card changes.
import type { Brand } from '../domain/pan';

export const NETWORKS = ['visa', 'mastercard'] as const;
export type NetworkName = (typeof NETWORKS)[number];

/** The card brands each network's updater covers; other brands are never inquired. */
export const BRANDS_OF_NETWORK: Readonly<Record<NetworkName, readonly Brand[]>> = {
  visa: ['visa'],
  mastercard: ['mastercard', 'maestro'],
};

export function networkOfBrand(brand: string): NetworkName | undefined {
  return NETWORKS.find((network) => (BRANDS_OF_NETWORK[network] as readonly string[]).includes(brand));
}

/** Every (network, brand) pair the updaters cover, for queries that match cards to a tenant's networks. */
export const NETWORK_COVERAGE: ReadonlyArray<{ network: NetworkName; brand: string }> = NETWORKS.flatMap((network) =>
  BRANDS_OF_NETWORK[network].map((brand) => ({ network, brand })),
);

export function brandsOf(networks: readonly string[]): string[] {
  return networks.flatMap((network) => BRANDS_OF_NETWORK[network as NetworkName] ?? []);
}

export interface UpdaterSettings {
  enabled: boolean;
  /** The networks inquired, with the merchant's id at each (it goes in every inquiry record). */
  networks: Partial<Record<NetworkName, { merchant_id: string }>>;
  /** Each enrolled card is inquired at least this often (1–180 days). */
  cadenceDays: number;
  updatedAt: Date;
}

export type RunState = 'pending' | 'sending' | 'awaiting_response' | 'completed' | 'failed';
export type RunTrigger = 'schedule' | 'api' | 'cli';
/** `due`: cards not inquired within the cadence; `all`: every enrolled active card. */
export type RunScope = 'due' | 'all';

export interface RunError {
  batch: string;
  line: number;
  code: string;
}

export interface UpdaterRun {
  id: string;
  tenantId: string;
  state: RunState;
  trigger: RunTrigger;
  scope: RunScope;
  requestedBy: string;
  total: number;
  done: number;
  counts: Record<string, number>;
  errors: RunError[];
  failure: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
}

export type UpdateEvent = 'card.updated' | 'card.expiry_updated' | 'card.closed' | 'card.contact_cardholder' | 'card.merged' | 'card.updater_opted_out';
export type UpdateSource = 'batch' | 'real_time';

/** One version of a card: what changed, masked (BIN, last 4, expiry, status, never a number), and why. */
export interface CardUpdate {
  id: string;
  tenantId: string;
  token: string;
  version: number;
  event: UpdateEvent;
  network: NetworkName;
  networkCode: string;
  source: UpdateSource;
  runId: string | null;
  changes: Record<string, unknown>;
  createdAt: Date;
}

export type NewCardUpdate = Omit<CardUpdate, 'id' | 'createdAt'> & { batchId: string | null; ref: string | null };
