// Builds and runs go-engine/main.go: the chart rendered by Go's text/template and Sprig, Helm's own engine parts.
// Needs Go and Debian's Sprig and sigs.k8s.io/yaml sources (.ci/run installs them); there is no module download.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHART_DIR, type Values } from './render';

/** Where Debian's golang-*-dev packages put their sources (a GOPATH). */
const DEBIAN_GOPATH = '/usr/share/gocode';
export const GO_PACKAGES = 'golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev';

/**
 * Sprig and its semver import themselves as …/v3, a module path; Debian ships them as plain GOPATH sources.
 * A GOPATH of links named …/v3 lets GOPATH mode find them without a module proxy.
 */
function versionedLinks(root: string): string {
  for (const repo of ['github.com/Masterminds/sprig', 'github.com/Masterminds/semver']) {
    const source = path.join(DEBIAN_GOPATH, 'src', repo);
    if (!fs.existsSync(source)) throw new Error(`${source} is missing: apt-get install -y ${GO_PACKAGES} (.ci/run does)`);
    fs.mkdirSync(path.join(root, 'src', repo), { recursive: true });
    fs.symlinkSync(source, path.join(root, 'src', repo, 'v3'));
  }
  return root;
}

/** Compiles the renderer into a fresh directory; returns the binary's path and a cleanup. */
export function buildGoRenderer(): { binary: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cardvault-go-engine-'));
  try {
    const gopath = `${versionedLinks(path.join(dir, 'gopath'))}${path.delimiter}${DEBIAN_GOPATH}`;
    const binary = path.join(dir, 'helm-engine');
    try {
      execFileSync('go', ['build', '-o', binary, '.'], {
        cwd: path.join(__dirname, 'go-engine'),
        env: { ...process.env, GOPATH: gopath, GO111MODULE: 'off', GOFLAGS: '', GOPROXY: 'off', CGO_ENABLED: '0' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err) {
      const e = err as { code?: string; stderr?: Buffer };
      if (e.code === 'ENOENT') throw new Error(`go is missing: apt-get install -y ${GO_PACKAGES} (.ci/run does)`);
      throw new Error(`go build failed:\n${e.stderr?.toString() ?? String(err)}`);
    }
    return { binary, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

export type GoRendered = { files: Record<string, string> } | { error: string };

/** Renders with values already merged (numbers as JSON numbers: float64 in Go, as Helm reads values files). */
export function renderWithGo(binary: string, values: Values, release = { name: 'vault', namespace: 'payments', isUpgrade: false }): GoRendered {
  const out = execFileSync(binary, [], { input: JSON.stringify({ chartDir: CHART_DIR, values, release }) });
  return JSON.parse(out.toString('utf8')) as GoRendered;
}
