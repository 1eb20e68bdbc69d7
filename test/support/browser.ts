// A vault and the demo merchant on two loopback origins, and Debian's Chromium driven by playwright-core.
import fs from 'node:fs';
import http, { type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { startDemo, type RunningDemo } from '../../src/hosted/demo';
import { closeNow } from '../../src/http/server';
import { assembleHosted } from '../../src/hosted/dependencies';
import { buildHarness, type Harness } from './harness';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

export interface HostedStack {
  h: Harness;
  /** http://127.0.0.1:P1 */
  vaultOrigin: string;
  demo: RunningDemo;
  tenant: Awaited<ReturnType<Harness['tenant']>>;
  close(): Promise<void>;
}

/** On a port the system picks, so parallel runs never collide. */
export function listen(handler: RequestListener, host = '127.0.0.1'): Promise<Server> {
  const server = http.createServer(handler);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve(server));
  });
}

export const originOf = (server: Server, host: string) => `http://${host}:${(server.address() as AddressInfo).port}`;

/** The vault as main.ts wires it (hosted form included) on 127.0.0.1, the demo merchant on localhost. */
export async function startHostedStack(): Promise<HostedStack> {
  const h = await buildHarness();
  const hostedPage = assembleHosted({ db: h.db, signer: h.parts.signer });
  const app = h.appWith({ hostedPage });
  const vault = await listen(app);
  const vaultOrigin = originOf(vault, '127.0.0.1');
  const tenant = await h.tenant(['merchant', 'payments']);
  const demo = await startDemo({
    vaultOrigin,
    merchantKey: async () => tenant.keys.merchant!,
    assets: hostedPage.assets,
    listenHost: '127.0.0.1',
    publicHost: 'localhost',
    port: 0,
    log: h.log,
  });
  return {
    h,
    vaultOrigin,
    demo,
    tenant,
    async close() {
      await demo.stop();
      await closeNow(vault);
      await h.close();
    },
  };
}
