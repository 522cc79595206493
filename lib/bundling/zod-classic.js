// Zod's classic API with `locales` and `core` replaced. `zod/v4/classic` and `zod/v4/core` are
// aliased to zod's own files (lib/bundling.ts), never back to these shims. A local export wins
// over the same name from `export *`.
import * as core from './zod-core.js';

export * from 'zod/v4/classic/external.js';
export const locales = {};
export { core };
