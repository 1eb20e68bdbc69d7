// The hosted form's browser files and the merchant SDK: read once at startup, each with its SRI hash.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** Beside the sources, found the same way from src/hosted (tests) and dist/hosted (npm start). */
const ASSET_DIR = path.resolve(__dirname, '..', '..', 'src', 'hosted', 'assets');

export interface Asset {
  body: Buffer;
  contentType: string;
  /** `sha384-…`, for the integrity attribute of whatever loads it. */
  integrity: string;
}

export interface HostedAssets {
  formScript: Asset;
  formStyle: Asset;
  sdk: Asset & { version: string };
  demoScript: Asset;
}

function readAsset(dir: string, name: string, contentType: string): Asset {
  const body = fs.readFileSync(path.join(dir, name));
  return { body, contentType, integrity: `sha384-${createHash('sha384').update(body).digest('base64')}` };
}

export function loadHostedAssets(dir = ASSET_DIR): HostedAssets {
  const js = 'text/javascript; charset=utf-8';
  const sdk = readAsset(dir, 'sdk.js', js);
  // The version a merchant pins is the one written in the file, so the URL and the bytes cannot disagree.
  const version = /SDK_VERSION = '([0-9]+\.[0-9]+\.[0-9]+)'/.exec(sdk.body.toString('utf8'))?.[1];
  if (!version) throw new Error('src/hosted/assets/sdk.js does not declare SDK_VERSION');
  return {
    formScript: readAsset(dir, 'form.js', js),
    formStyle: readAsset(dir, 'form.css', 'text/css; charset=utf-8'),
    sdk: { ...sdk, version },
    demoScript: readAsset(dir, 'demo.js', js),
  };
}
