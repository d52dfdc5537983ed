// Install step: put libhonker_ext next to the package (native/), so `npm pack` carries it.
// Order: already there (a packed tarball), HONKER_EXT / HONKER_EXT_PATH, or a cargo build in the
// surrounding honker repository. Without any of them the install succeeds with a warning, and
// open() later names every path it tried.
// It runs twice from a checkout: as part of `prepare` in the source folder (npm packs a folder
// there for `npm install --install-links <folder>`, and only the source folder can see the
// repository, so the packed copy must already carry native/), then as `install` in the copy,
// which keeps what it was given.
'use strict';
const { copyFileSync, existsSync, mkdirSync } = require('node:fs');
const { join, resolve, dirname } = require('node:path');
const { spawnSync } = require('node:child_process');

const LIB = process.platform === 'darwin' ? 'libhonker_ext.dylib' : 'libhonker_ext.so';
const pkg = resolve(__dirname, '..');
const dest = join(pkg, 'native', LIB);

function place(from, why) {
  mkdirSync(dirname(dest), { recursive: true });
  if (resolve(from) !== dest) copyFileSync(from, dest);
  console.error(`honker: using ${from} (${why})`);
}

function findRepo() {
  for (let dir = pkg; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'honker-ext', 'Cargo.toml'))) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}

function main() {
  const env = process.env.HONKER_EXT || process.env.HONKER_EXT_PATH;
  if (env) {
    if (!existsSync(env)) {
      console.error(`honker: HONKER_EXT is ${env}, which does not exist`);
      process.exit(1);
    }
    return place(env, 'HONKER_EXT');
  }
  const repo = findRepo();
  if (repo === undefined) {
    if (existsSync(dest)) return;
    console.error(`honker: warning: no libhonker_ext found; set HONKER_EXT to its path before open()`);
    return;
  }
  const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, 'honker-ext', 'target');
  const built = join(target, 'release', LIB);
  const cargo = spawnSync('cargo', ['--version'], { stdio: 'ignore' });
  if (cargo.status === 0) {
    console.error('honker: building the extension (cargo build --release --manifest-path honker-ext/Cargo.toml)');
    const r = spawnSync('cargo', ['build', '--release', '--manifest-path', join(repo, 'honker-ext', 'Cargo.toml')], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (r.status !== 0) {
      console.error('honker: cargo build of the extension failed');
      process.exit(1);
    }
    return place(built, 'built from the repository');
  }
  if (existsSync(built)) return place(built, 'found in the repository');
  if (existsSync(dest)) return;
  console.error('honker: warning: cargo not found and no built extension; set HONKER_EXT to its path before open()');
}

main();
