// Finding libhonker_ext.so: an explicit path, then HONKER_EXT, then the copy carried by the
// package (native/, filled by the install script), then a build in the surrounding repository.
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ExtensionError } from './errors.js';
import { here } from './here.js';

/** The oldest extension version this binding works with. */
export const MIN_EXTENSION_VERSION = '0.1.0';

const LIB = process.platform === 'darwin' ? 'libhonker_ext.dylib' : 'libhonker_ext.so';

/** The candidate paths, in the order they are tried. */
export function extensionCandidates(explicit?: string): string[] {
  if (explicit !== undefined) return [resolve(explicit)];
  const env = process.env['HONKER_EXT'] || process.env['HONKER_EXT_PATH'];
  if (env) return [resolve(env)];
  const pkg = resolve(here, '..', '..');
  return [join(pkg, 'native', LIB), resolve(pkg, '..', '..', 'honker-ext', 'target', 'release', LIB)];
}

/** The path of the extension to load; ExtensionError `ext.not_found` naming every path tried. */
export function findExtension(explicit?: string): string {
  const tried = extensionCandidates(explicit);
  // The package's own copy and a build in the surrounding repository: the newer wins, so a
  // rebuilt extension is picked up in a checkout without reinstalling.
  let best: string | undefined;
  let bestTime = -1;
  for (const p of tried) {
    if (!existsSync(p)) continue;
    const t = statSync(p).mtimeMs;
    if (t > bestTime) {
      best = p;
      bestTime = t;
    }
  }
  if (best !== undefined) return best;
  throw new ExtensionError(
    'ext.not_found',
    `libhonker_ext not found; tried ${tried.join(', ')} (set HONKER_EXT to its path, or reinstall honker with cargo on PATH)`,
  );
}

/** Compare dotted versions: negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  const pb = b.split(/[.-]/).map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
