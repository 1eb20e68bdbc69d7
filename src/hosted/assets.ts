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

export type SdkAsset = Asset & { version: string };

export interface HostedAssets {
  formScript: Asset;
  formStyle: Asset;
  /** The latest SDK: what /hosted/sdk.js and sdk.json give. */
  sdk: SdkAsset;
  /** Every released SDK by version, each served unchanged for good: merchants pin its hash. */
  sdks: ReadonlyMap<string, SdkAsset>;
  demoScript: Asset;
}

function readAsset(dir: string, name: string, contentType: string): Asset {
  const body = fs.readFileSync(path.join(dir, name));
  return { body, contentType, integrity: `sha384-${createHash('sha384').update(body).digest('base64')}` };
}

const JS = 'text/javascript; charset=utf-8';
const SDK_FILE = /^[0-9]+\.[0-9]+\.[0-9]+\.js$/;

/** src/hosted/assets/sdk/<version>.js, each declaring that version, so a URL and its bytes cannot disagree. */
function readSdks(dir: string): SdkAsset[] {
  const sdkDir = path.join(dir, 'sdk');
  const sdks = fs
    .readdirSync(sdkDir)
    .filter((name) => SDK_FILE.test(name))
    .map((name) => {
      const asset = readAsset(sdkDir, name, JS);
      const version = name.slice(0, -'.js'.length);
      const declared = /SDK_VERSION = '([0-9]+\.[0-9]+\.[0-9]+)'/.exec(asset.body.toString('utf8'))?.[1];
      if (declared !== version) throw new Error(`src/hosted/assets/sdk/${name} does not declare SDK_VERSION '${version}'`);
      return { ...asset, version };
    });
  if (sdks.length === 0) throw new Error('src/hosted/assets/sdk holds no SDK');
  // By version, each part as a number (1.10.0 after 1.9.0): the last is the latest.
  return sdks.sort((a, b) => a.version.localeCompare(b.version, 'en', { numeric: true }));
}

export function loadHostedAssets(dir = ASSET_DIR): HostedAssets {
  const sdks = readSdks(dir);
  return {
    formScript: readAsset(dir, 'form.js', JS),
    formStyle: readAsset(dir, 'form.css', 'text/css; charset=utf-8'),
    sdk: sdks[sdks.length - 1]!,
    sdks: new Map(sdks.map((sdk) => [sdk.version, sdk])),
    demoScript: readAsset(dir, 'demo.js', JS),
  };
}
