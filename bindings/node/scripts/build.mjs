// Build: ESM (with .d.ts) into dist/esm, CommonJS into dist/cjs, then the CommonJS `here`.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const resolvable = (id) => {
  try {
    return require.resolve(id);
  } catch {
    return undefined;
  }
};
// typescript and @types/node, wherever npm put them (hoisted above the package, too).
let tsc = resolvable('typescript/bin/tsc');
const extra = [];
// `npm install ./bindings/node` runs this (prepare) where the package's devDependencies are
// never installed: fetch the compiler and Node's types into a scratch prefix, leaving the
// package's own node_modules to npm.
if (tsc === undefined || resolvable('@types/node/package.json') === undefined) {
  const scratch = mkdtempSync(join(tmpdir(), 'honker-build-'));
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  // Not the outer npm's settings (npm pack sets npm_config_dry_run, for one).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
  execFileSync(npm, ['install', '--prefix', scratch, '--no-save', '--no-package-lock', '--ignore-scripts', '--no-audit', '--no-fund', 'typescript@5', '@types/node@20'], { stdio: ['ignore', 'inherit', 'inherit'], env });
  tsc = join(scratch, 'node_modules', 'typescript', 'bin', 'tsc');
  extra.push('--typeRoots', join(scratch, 'node_modules', '@types'));
}
rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json'), ...extra], { stdio: 'inherit' });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.cjs.json'), ...extra], { stdio: 'inherit' });
mkdirSync(join(root, 'dist', 'cjs'), { recursive: true });
writeFileSync(join(root, 'dist', 'cjs', 'package.json'), '{ "type": "commonjs" }\n');
writeFileSync(
  join(root, 'dist', 'cjs', 'here.js'),
  '"use strict";\n// CommonJS build of src/here.ts (written by scripts/build.mjs).\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.here = __dirname;\nexports.requireHere = require;\n',
);
