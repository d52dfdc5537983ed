// Build: ESM (with .d.ts) into dist/esm, CommonJS into dist/cjs, then the CommonJS `here`.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.cjs.json')], { stdio: 'inherit' });
mkdirSync(join(root, 'dist', 'cjs'), { recursive: true });
writeFileSync(join(root, 'dist', 'cjs', 'package.json'), '{ "type": "commonjs" }\n');
writeFileSync(
  join(root, 'dist', 'cjs', 'here.js'),
  '"use strict";\n// CommonJS build of src/here.ts (written by scripts/build.mjs).\nObject.defineProperty(exports, "__esModule", { value: true });\nexports.here = __dirname;\nexports.requireHere = require;\n',
);
