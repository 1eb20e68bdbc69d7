// GET /hosted/card-form, its script and style, and the versioned merchant SDK with its published SRI hash.
import { Router, type Request, type Response } from 'express';
import { describeError, isVaultError, VaultError, type ErrorCode } from '../../errors';
import type { Logger } from '../../log';
import type { Asset, HostedAssets } from '../assets';
import { formPolicy, renderError, renderForm } from '../form-page';
import type { PageSessions } from '../page-session';
import { CHALLENGE, methodNotAllowed, sendProblem } from '../../http/problem';

export interface HostedPageDeps {
  pageSessions: PageSessions;
  assets: HostedAssets;
}

const IMMUTABLE = 'public, max-age=31536000, immutable';

function sendAsset(res: Response, asset: Asset, cacheControl: string, crossOrigin = false): void {
  res.setHeader('Content-Type', asset.contentType);
  // Set after the /hosted router's no-store: these files hold no secret.
  res.setHeader('Cache-Control', cacheControl);
  if (crossOrigin) {
    // Merchant pages load the SDK with crossorigin="anonymous", which SRI needs, so it must be readable by any origin.
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Cross-Origin-Resource-Policy', 'cross-origin');
  }
  res.end(asset.body);
}

function sendErrorPage(res: Response, code: ErrorCode): void {
  const { status, title } = describeError(code);
  // HTML or not, a 401 must name a scheme (RFC 9110 §15.5.2): the one the JSON 401s, /hosted/tokens' too, name.
  if (status === 401) res.setHeader('WWW-Authenticate', CHALLENGE);
  res.status(status).type('html').send(renderError(title));
}

export function hostedPageRoutes(deps: HostedPageDeps, log: Logger): Router {
  const router = Router();
  const { assets } = deps;
  const sdkPath = `/hosted/sdk/${assets.sdk.version}.js`;

  router.get('/card-form', async (req: Request, res: Response) => {
    const token = req.query.session;
    let session;
    try {
      session = await deps.pageSessions.check(token, req.query.origin);
    } catch (err) {
      if (!isVaultError(err)) log.error({ err }, 'hosted form session check failed');
      // The error page keeps the global frame-ancestors 'none': a page that is not the form has no reason to be framed.
      return sendErrorPage(res, isVaultError(err) ? err.code : 'internal_error');
    }
    res.setHeader('Content-Security-Policy', formPolicy(session.allowedOrigins));
    // X-Frame-Options cannot list origins; frame-ancestors supersedes it wherever CSP is supported.
    res.removeHeader('X-Frame-Options');
    res.type('html').send(renderForm(assets, session, token as string));
  });

  router.get('/form.js', (_req, res) => sendAsset(res, assets.formScript, 'no-cache'));
  router.get('/form.css', (_req, res) => sendAsset(res, assets.formStyle, 'no-cache'));
  router.get('/sdk.js', (_req, res) => sendAsset(res, assets.sdk, 'public, max-age=300', true));
  router.get(`/sdk/:file`, (req, res) => {
    // Another version is a file that is not there, not a method the path lacks: the 405 catch-all below is for other methods.
    const sdk = req.params.file.endsWith('.js') ? assets.sdks.get(req.params.file.slice(0, -'.js'.length)) : undefined;
    if (!sdk) return sendProblem(res, new VaultError('not_found'));
    sendAsset(res, sdk, IMMUTABLE, true);
  });
  router.get('/sdk.json', (_req, res) => {
    res.setHeader('Cache-Control', 'public, max-age=300');
    res.setHeader('Access-Control-Allow-Origin', '*');
    // A path, never an origin: shared caches keep this answer, so nothing in it may come from the request (Host).
    res.json({ version: assets.sdk.version, path: sdkPath, integrity: assets.sdk.integrity });
  });
  for (const path of ['/card-form', '/form.js', '/form.css', '/sdk.js', '/sdk/:file', '/sdk.json']) {
    router.all(path, methodNotAllowed('GET, HEAD'));
  }
  return router;
}
