// The demo merchant checkout `npm start` serves on a second origin: its server opens a client session, its page embeds the form.
import fs from 'node:fs/promises';
import http, { type Server } from 'node:http';
import path from 'node:path';
import { DEMO_TENANT } from '../bootstrap';
import { closeNow } from '../http/server';
import type { Logger } from '../log';
import type { HostedAssets } from './assets';
import { escapeHtml } from './form-page';

/** The demo tenant's merchant key, from the development credentials the first start wrote; read per request, never logged. */
export async function demoMerchantKey(dataDir: string): Promise<string> {
  const file = path.join(dataDir, 'credentials.json');
  const credentials = JSON.parse(await fs.readFile(file, 'utf8')) as { tenant?: string; api_keys?: Record<string, string> };
  const key = credentials.tenant === DEMO_TENANT ? credentials.api_keys?.merchant : undefined;
  if (!key) throw new Error(`${file} holds no merchant key for tenant ${DEMO_TENANT}`);
  return key;
}

export interface DemoOptions {
  /** The vault as the shopper's browser reaches it: the SDK and the form come from here. */
  vaultOrigin: string;
  /** The vault as this server reaches it (defaults to vaultOrigin). */
  vaultApiOrigin?: string;
  merchantKey: () => Promise<string>;
  assets: Pick<HostedAssets, 'sdk' | 'demoScript'>;
  listenHost: string;
  /** The host name the shopper uses for the demo; it must differ from the vault's so the two are separate origins. */
  publicHost: string;
  port: number;
  log: Logger;
}

export interface RunningDemo {
  server: Server;
  origin: string;
  stop(): Promise<void>;
}

/** One new session per page view, for this page's origin only, as a merchant's backend would do. */
async function createSession(options: DemoOptions, origin: string): Promise<string> {
  const response = await fetch(`${options.vaultApiOrigin ?? options.vaultOrigin}/v1/client-sessions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${await options.merchantKey()}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ allowed_origins: [origin] }),
  });
  if (response.status !== 201) throw new Error(`the vault refused a client session (${response.status})`);
  return ((await response.json()) as { session: string }).session;
}

function page(options: DemoOptions, session: string): string {
  const sdk = options.assets.sdk;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Demo checkout — cardvault</title>
<script src="${escapeHtml(`${options.vaultOrigin}/hosted/sdk/${sdk.version}.js`)}" integrity="${sdk.integrity}" crossorigin="anonymous" defer></script>
<script src="/demo.js" integrity="${options.assets.demoScript.integrity}" defer></script>
</head>
<body>
<main>
<h1>Demo checkout</h1>
<p>Type the published test card 4242 4242 4242 4242, any future expiry and any 3-digit code. The card fields belong to the vault's page; this page only ever sees the token.</p>
<div id="card-frame" data-session="${escapeHtml(session)}"></div>
<button id="pay" type="button">Pay</button>
<pre id="result" aria-live="polite"></pre>
</main>
</body>
</html>
`;
}

export async function startDemo(options: DemoOptions): Promise<RunningDemo> {
  let origin = '';
  const policy = (vault: string) =>
    `default-src 'none'; script-src 'self' ${vault}; frame-src ${vault}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
  const server = http.createServer((req, res) => {
    res.setHeader('Content-Security-Policy', policy(options.vaultOrigin));
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (req.method === 'GET' && req.url === '/demo.js') {
      res.writeHead(200, { 'Content-Type': options.assets.demoScript.contentType }).end(options.assets.demoScript.body);
      return;
    }
    if (req.method !== 'GET' || (req.url !== '/' && !req.url?.startsWith('/?'))) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    createSession(options, origin).then(
      (session) => res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page(options, session)),
      (err: unknown) => {
        options.log.warn({ err }, 'demo checkout could not open a client session');
        res.writeHead(502, { 'Content-Type': 'text/plain' }).end('the vault did not open a client session; see the vault log\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.listenHost, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  origin = `http://${options.publicHost}:${port}`;
  return {
    server,
    origin,
    stop: () => closeNow(server),
  };
}
