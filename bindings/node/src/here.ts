// Where this module's compiled file lives, and a `require` that resolves from there.
// The CommonJS build replaces this file with `__dirname` / `require` (scripts/build.mjs), since
// `import.meta` cannot appear in CommonJS output.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

// @ts-ignore -- import.meta is valid in the ESM build, which is the one type-checked strictly.
const url: string = import.meta.url;

/** The directory of the compiled package files (dist/esm or dist/cjs). */
export const here: string = fileURLToPath(new URL('.', url));

/** `require`, resolving from this package (used for the runtime-picked driver). */
export const requireHere: NodeRequire = createRequire(url);
